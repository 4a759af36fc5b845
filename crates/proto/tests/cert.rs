//! Certificates: encoding, armour, and one test per way a certificate is bad.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use crypto::RealCrypto;
use proto::cert::{
    create_ca, CertError, CertKind, Certificate, NodeCertParams, OverlayAddr, TrustedCa,
};
use proto::provider::Crypto;

const C: &RealCrypto = &RealCrypto;

fn sample(mesh: &Mesh) -> Certificate {
    mesh.node("web-1", 5).certificate().clone()
}

#[test]
fn node_certificate_round_trips_and_verifies() {
    let mesh = Mesh::new(1);
    let cert = sample(&mesh);
    assert_eq!(cert.kind(), CertKind::Node);
    assert_eq!(cert.name(), "web-1");
    assert_eq!(cert.body().segments, vec!["test".to_string()]);
    assert!(cert.has_address("100.64.0.5".parse().unwrap()));
    assert!(!cert.has_address("100.64.0.6".parse().unwrap()));
    let again = Certificate::from_bytes(cert.as_bytes()).unwrap();
    assert_eq!(again, cert);
    let armored = cert.to_armor();
    assert!(armored.starts_with("-----BEGIN MESHD NODE CERTIFICATE-----\n"));
    assert_eq!(Certificate::from_armor(&armored).unwrap(), cert);
    mesh.ca.verify_node(C, &cert, NOW).unwrap();
    assert!(
        cert.as_bytes().len() < 300,
        "{} bytes",
        cert.as_bytes().len()
    );
}

#[test]
fn ipv6_overlay_addresses_are_carried() {
    let mesh = Mesh::new(1);
    let cert = mesh
        .ca
        .issue(
            C,
            &mesh.ca_seed,
            NodeCertParams {
                name: "v6".into(),
                addresses: vec![
                    "100.64.0.7/10".parse().unwrap(),
                    "fd00::7/64".parse().unwrap(),
                ],
                segments: vec!["a".into(), "b".into()],
                static_public_key: [9; 32],
                advert_key: [7; 32],
                not_before: NOW - 1,
                not_after: NOW + 1,
            },
        )
        .unwrap();
    let back = Certificate::from_bytes(cert.as_bytes()).unwrap();
    assert!(back.has_address("fd00::7".parse().unwrap()));
    assert_eq!(back.body().addresses[1].to_string(), "fd00::7/64");
}

#[test]
fn truncated_certificate() {
    let cert = sample(&Mesh::new(1));
    for n in [0, 1, 3, 4, 20, cert.as_bytes().len() - 1] {
        let e = Certificate::from_bytes(&cert.as_bytes()[..n]).unwrap_err();
        assert!(
            matches!(e, CertError::Truncated | CertError::Malformed),
            "{n}: {e:?}"
        );
    }
    assert_eq!(
        Certificate::from_bytes(&cert.as_bytes()[..100]).unwrap_err(),
        CertError::Truncated
    );
}

#[test]
fn trailing_bytes_after_signature() {
    let cert = sample(&Mesh::new(1));
    let mut b = cert.as_bytes().to_vec();
    b.push(0);
    assert_eq!(
        Certificate::from_bytes(&b).unwrap_err(),
        CertError::TrailingBytes
    );
}

#[test]
fn tampered_certificate_fails_signature() {
    let mesh = Mesh::new(1);
    let cert = sample(&mesh);
    // Change the last address octet inside the body: still parses, no longer verifies.
    let mut b = cert.as_bytes().to_vec();
    let pos = b.windows(4).position(|w| w == [100, 64, 0, 5]).unwrap();
    b[pos + 3] = 6;
    let forged = Certificate::from_bytes(&b).unwrap();
    assert!(forged.has_address("100.64.0.6".parse().unwrap()));
    assert_eq!(
        mesh.ca.verify_node(C, &forged, NOW).unwrap_err(),
        CertError::BadSignature
    );
    // A flipped signature bit too.
    let mut b = cert.as_bytes().to_vec();
    let n = b.len();
    b[n - 1] ^= 1;
    let forged = Certificate::from_bytes(&b).unwrap();
    assert_eq!(
        mesh.ca.verify_node(C, &forged, NOW).unwrap_err(),
        CertError::BadSignature
    );
}

#[test]
fn expired_certificate() {
    let mesh = Mesh::new(1);
    let cert = sample(&mesh);
    let e = mesh.ca.verify_node(C, &cert, NOW + 86_400).unwrap_err();
    assert!(matches!(e, CertError::Expired { .. }));
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn not_yet_valid_certificate() {
    let mesh = Mesh::new(1);
    let cert = sample(&mesh);
    let e = mesh.ca.verify_node(C, &cert, NOW - 7200).unwrap_err();
    assert!(matches!(e, CertError::NotYetValid { .. }));
}

#[test]
fn certificate_from_wrong_ca() {
    let mesh = Mesh::new(1);
    let other = Mesh::new(2);
    let cert = sample(&other);
    let e = mesh.ca.verify_node(C, &cert, NOW).unwrap_err();
    assert!(matches!(e, CertError::WrongCa { .. }));
    assert!(e.to_string().contains("trusts CA"));
}

#[test]
fn wrong_ca_with_forged_issuer_fingerprint() {
    // Another CA signs a certificate naming *our* CA's fingerprint.
    let mesh = Mesh::new(1);
    let mut seed = [0u8; 32];
    seed[0] = 77;
    let other_cert = create_ca(C, "test-ca", &seed, NOW - 86_400, NOW + 365 * 86_400).unwrap();
    let other = TrustedCa::new(C, other_cert, NOW).unwrap();
    let cert = other
        .issue(
            C,
            &seed,
            NodeCertParams {
                name: "evil".into(),
                addresses: vec![OverlayAddr::V4([100, 64, 0, 66], 10)],
                segments: vec![],
                static_public_key: [1; 32],
                advert_key: [7; 32],
                not_before: NOW - 1,
                not_after: NOW + 100,
            },
        )
        .unwrap();
    let mut b = cert.as_bytes().to_vec();
    let pos = b
        .windows(32)
        .position(|w| w == other.fingerprint())
        .unwrap();
    b[pos..pos + 32].copy_from_slice(mesh.ca.fingerprint());
    let forged = Certificate::from_bytes(&b).unwrap();
    assert_eq!(
        mesh.ca.verify_node(C, &forged, NOW).unwrap_err(),
        CertError::BadSignature
    );
}

#[test]
fn unknown_version() {
    let cert = sample(&Mesh::new(1));
    let mut b = cert.as_bytes().to_vec();
    b[0] = 3;
    assert_eq!(
        Certificate::from_bytes(&b).unwrap_err(),
        CertError::UnknownVersion(3)
    );
    assert!(CertError::UnknownVersion(3).to_string().contains("upgrade"));
    // A version-1 certificate (before advert keys) names the fix.
    b[0] = 1;
    let e = Certificate::from_bytes(&b).unwrap_err();
    assert_eq!(e, CertError::UnknownVersion(1));
    assert!(e.to_string().contains("reissue"), "{e}");
}

#[test]
fn unknown_kind() {
    let cert = sample(&Mesh::new(1));
    let mut b = cert.as_bytes().to_vec();
    b[1] = 9;
    assert_eq!(
        Certificate::from_bytes(&b).unwrap_err(),
        CertError::UnknownKind(9)
    );
}

#[test]
fn not_a_certificate() {
    assert!(matches!(
        Certificate::from_armor("hello world\n"),
        Err(CertError::NotACertificate(_))
    ));
    let key = proto::armor::encode(proto::armor::LABEL_NODE_KEY, &[1; 32]);
    let e = Certificate::from_armor(&key).unwrap_err();
    assert!(matches!(e, CertError::NotACertificate(_)));
    assert!(e.to_string().contains("MESHD NODE PRIVATE KEY"), "{e}");
}

#[test]
fn ca_certificate_where_node_expected_and_back() {
    let mesh = Mesh::new(1);
    let ca_as_node = proto::armor::encode(
        proto::armor::LABEL_NODE_CERTIFICATE,
        mesh.ca.certificate().as_bytes(),
    );
    assert_eq!(
        Certificate::from_armor(&ca_as_node).unwrap_err(),
        CertError::WrongKind {
            expected: CertKind::Node
        }
    );
    assert!(matches!(
        mesh.ca.verify_node(C, mesh.ca.certificate(), NOW),
        Err(CertError::WrongKind { .. })
    ));
    assert!(matches!(
        TrustedCa::new(C, sample(&mesh), NOW),
        Err(CertError::WrongKind {
            expected: CertKind::Ca
        })
    ));
}

#[test]
fn non_canonical_encoding_is_rejected() {
    let cert = sample(&Mesh::new(1));
    // Re-encode the not_before varint with a redundant continuation byte.
    let b = cert.as_bytes();
    let body_len = u16::from_le_bytes([b[2], b[3]]) as usize;
    let body = &b[4..4 + body_len];
    // Find the varint of not_before: it precedes not_after; both are 5-byte varints for ~1.8e9.
    let nb = NOW - 3600;
    let mut enc = vec![];
    let mut v = nb;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            enc.push(byte);
            break;
        }
        enc.push(byte | 0x80);
    }
    let pos = body.windows(enc.len()).position(|w| w == enc).unwrap();
    let mut padded = enc.clone();
    *padded.last_mut().unwrap() |= 0x80;
    padded.push(0);
    let mut new_body = body[..pos].to_vec();
    new_body.extend_from_slice(&padded);
    new_body.extend_from_slice(&body[pos + enc.len()..]);
    let mut out = vec![b[0], b[1]];
    out.extend_from_slice(&(new_body.len() as u16).to_le_bytes());
    out.extend_from_slice(&new_body);
    out.extend_from_slice(&b[4 + body_len..]);
    let e = Certificate::from_bytes(&out).unwrap_err();
    assert!(
        matches!(e, CertError::NonCanonical | CertError::Malformed),
        "{e:?}"
    );
}

#[test]
fn invalid_fields_are_refused_at_issue() {
    let mesh = Mesh::new(1);
    let base = NodeCertParams {
        name: "ok".into(),
        addresses: vec![OverlayAddr::V4([100, 64, 0, 1], 10)],
        segments: vec![],
        static_public_key: [1; 32],
        advert_key: [7; 32],
        not_before: NOW,
        not_after: NOW + 10,
    };
    let bad_name = NodeCertParams {
        name: "no spaces".into(),
        ..base.clone()
    };
    assert!(matches!(
        mesh.ca.issue(C, &mesh.ca_seed, bad_name),
        Err(CertError::InvalidField("name", _))
    ));
    let no_ip = NodeCertParams {
        addresses: vec![],
        ..base.clone()
    };
    assert!(matches!(
        mesh.ca.issue(C, &mesh.ca_seed, no_ip),
        Err(CertError::InvalidField("addresses", _))
    ));
    let outside = NodeCertParams {
        not_after: NOW + 400 * 86_400,
        ..base.clone()
    };
    assert_eq!(
        mesh.ca.issue(C, &mesh.ca_seed, outside).unwrap_err(),
        CertError::OutsideCaValidity
    );
    let wrong_key = mesh.ca.issue(C, &[3; 32], base).unwrap_err();
    assert!(matches!(wrong_key, CertError::InvalidField("ca-key", _)));
}

#[test]
fn ca_fingerprint_is_stable_and_distinct() {
    let a = Mesh::new(1);
    let b = Mesh::new(2);
    assert_eq!(a.ca.fingerprint(), &a.ca.certificate().fingerprint(C));
    assert_ne!(a.ca.fingerprint(), b.ca.fingerprint());
    let _ = C.hash(&[]);
}
