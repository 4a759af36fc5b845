//! Deterministic handshake test vectors (`tests/vectors/handshake.json`).
//!
//! Everything random in a handshake (static keys, ephemerals, ML-KEM seeds,
//! indices) comes from a ChaCha20 RNG with a fixed seed, so the transcript is
//! reproducible. This test recomputes it and compares byte for byte; run with
//! `MESHD_REGENERATE_VECTORS=1` to rewrite the file after an intended change.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;

use crypto::RealCrypto;
use proto::cert::{create_ca, NodeCertParams, OverlayAddr, TrustedCa};
use proto::fragment::fragment;
use proto::handshake::{self, Identity, ReplayGuard};
use proto::provider::Crypto;
use proto::session::{Session, SessionKeys};
use proto::wire::MessageKind;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};

const C: &RealCrypto = &RealCrypto;
const SEED: u64 = 0x6d65_7368_6420_7631; // "meshd v1"
const NOW: u64 = 1_800_000_000;

fn bytes<const N: usize>(r: &mut ChaCha20Rng) -> [u8; N] {
    let mut b = [0u8; N];
    r.fill_bytes(&mut b);
    b
}

fn compute() -> Value {
    let mut r = ChaCha20Rng::seed_from_u64(SEED);
    let ca_seed: [u8; 32] = bytes(&mut r);
    let ca_cert = create_ca(C, "vector-ca", &ca_seed, NOW - 86_400, NOW + 86_400).unwrap();
    let ca = TrustedCa::new(C, ca_cert.clone(), NOW).unwrap();
    let mut node = |name: &str, ip: [u8; 4]| {
        let s: [u8; 32] = bytes(&mut r);
        let cert = ca
            .issue(
                C,
                &ca_seed,
                NodeCertParams {
                    name: name.into(),
                    addresses: vec![OverlayAddr::V4(ip, 10)],
                    segments: vec!["vectors".into()],
                    static_public_key: C.x25519_public_key(&s),
                    advert_key: proto::cert::advert_public_key(C, &s),
                    not_before: NOW - 3600,
                    not_after: NOW + 3600,
                },
            )
            .unwrap();
        let mut id = Identity::new(C, cert, s).unwrap();
        // Vectors must not depend on the machine's AES hardware: the
        // both offer ChaCha20-Poly1305 only (the AES packet below is sealed
        // with the same keys).
        id.set_aes(C, false);
        (s, id)
    };
    let (i_secret, initiator) = node("initiator", [100, 64, 0, 1]);
    let initiator_suites = initiator.suites();
    let (r_secret, responder) = node("responder", [100, 64, 0, 2]);
    let unix_nanos = NOW * 1_000_000_000 + 123_456_789;
    // What each side draws, in order (read from a copy of the generator, so
    // the handshake below draws the very same bytes).
    let mut peek = r.clone();
    let i_ephemeral: [u8; 32] = bytes(&mut peek);
    let i_kem_seed: [u8; 64] = bytes(&mut peek);
    let r_kem_m: [u8; 32] = bytes(&mut peek);
    let r_ephemeral: [u8; 32] = bytes(&mut peek);
    let (hs, m1) = handshake::initiate(
        C,
        &initiator,
        responder.static_public(),
        None,
        0x0102_0304,
        unix_nanos,
        &mut r,
    )
    .unwrap();
    let mut m1b = m1.clone();
    let (m2, r_out) = handshake::Responder {
        crypto: C,
        ca: &ca,
        identity: &responder,
    }
    .respond(
        &mut ReplayGuard::default(),
        &mut m1b,
        (0x0102_0304, 0x0a0b_0c0d),
        unix_nanos,
        &mut r,
    )
    .unwrap();
    let mut m2b = m2.clone();
    let i_out = hs
        .read_response(C, &ca, &initiator, &mut m2b, 0x0a0b_0c0d, NOW)
        .unwrap();
    let mac1_r = proto::cookie::mac1_key(C, responder.static_public());
    let mac1_i = proto::cookie::mac1_key(C, initiator.static_public());
    let f1 = fragment(
        C,
        MessageKind::Initiation,
        0x0102_0304,
        0,
        &m1,
        &mac1_r,
        None,
    );
    let f2 = fragment(
        C,
        MessageKind::Response,
        0x0a0b_0c0d,
        0x0102_0304,
        &m2,
        &mac1_i,
        None,
    );
    assert_eq!(i_out.suite, proto::provider::Suite::ChaCha20Poly1305);
    let payload = b"meshd transport vector";
    let seal = |suite| {
        let mut s = Session::new(
            C,
            &SessionKeys {
                local_index: 0x0102_0304,
                remote_index: 0x0a0b_0c0d,
                send: i_out.send_key,
                recv: i_out.recv_key,
                suite,
            },
            std::time::Instant::now(),
            true,
        );
        let mut pkt = vec![0u8; 16 + payload.len() + 16];
        pkt[16..16 + payload.len()].copy_from_slice(payload);
        let n = s.seal(&mut pkt, payload.len()).unwrap();
        pkt.truncate(n);
        pkt
    };
    let pkt = seal(proto::provider::Suite::ChaCha20Poly1305);
    let pkt_aes = seal(proto::provider::Suite::Aes256Gcm);
    // The KEM exchange's intermediate values, recomputed from the draws.
    let ek = C.kem_keypair(&i_kem_seed).encapsulation_key.clone();
    let (ct, ss) = C.kem_encapsulate(&ek, &r_kem_m).unwrap();
    assert_eq!(&m2[..ct.len()], &ct[..], "message 2 starts with ct");
    assert_eq!(
        &m1[..32],
        &C.x25519_public_key(&i_ephemeral),
        "message 1 starts with e"
    );
    let psk = handshake::kem_psk(C, &ss, &ct, &ek);
    let aes = aes_negotiated(&mut r, &ca, initiator.clone(), responder.clone());
    let h = |b: &[u8]| hex::encode(b);
    json!({
        "description": "meshd handshake v1 vectors: Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s + ML-KEM-768. All randomness from ChaCha20Rng::seed_from_u64(rng_seed), drawn in this order: CA Ed25519 seed (32), initiator X25519 static (32), responder X25519 static (32), initiator ephemeral (32), initiator ML-KEM d||z (64), responder ML-KEM m (32), responder ephemeral (32).",
        "rng_seed": SEED,
        "unix_time_nanos": unix_nanos,
        "ca_certificate": h(ca_cert.as_bytes()),
        "ca_fingerprint": h(ca.fingerprint()),
        "initiator_static_secret": h(&i_secret),
        "responder_static_secret": h(&r_secret),
        "initiator_certificate": h(initiator.certificate().as_bytes()),
        "responder_certificate": h(responder.certificate().as_bytes()),
        "initiator_index": 0x0102_0304u32,
        "responder_index": 0x0a0b_0c0du32,
        "message1": h(&m1),
        "message2": h(&m2),
        "message1_fragments": f1.iter().map(|f| h(f)).collect::<Vec<_>>(),
        "message2_fragments": f2.iter().map(|f| h(f)).collect::<Vec<_>>(),
        "initiator_send_key": h(&i_out.send_key),
        "initiator_recv_key": h(&i_out.recv_key),
        "responder_send_key": h(&r_out.send_key),
        "handshake_hash": h(&i_out.handshake_hash),
        "transport_plaintext": h(payload),
        "transport_packet_counter_0": h(&pkt),
        "transport_packet_counter_0_aes_256_gcm": h(&pkt_aes),
        "ca_ed25519_seed": h(&ca_seed),
        "initiator_ephemeral_secret": h(&i_ephemeral),
        "initiator_mlkem_keygen_seed_d_z": h(&i_kem_seed),
        "responder_mlkem_encaps_m": h(&r_kem_m),
        "responder_ephemeral_secret": h(&r_ephemeral),
        "mlkem_encapsulation_key": h(&ek[..]),
        "mlkem_ciphertext": h(&ct[..]),
        "mlkem_shared_secret": h(&ss),
        "psk": h(&psk),
        "initiator_suites_offered": initiator_suites,
        "responder_suite_chosen": 1,
        "aes_negotiated": aes,
    })
}

/// A second handshake between the same nodes, both offering AES-256-GCM
/// (suites byte 3), continuing from the same generator: the responder
/// chooses AES-256-GCM (suite byte 2) and the first transport packet is
/// sealed with it.
fn aes_negotiated(
    r: &mut ChaCha20Rng,
    ca: &TrustedCa,
    mut i: Identity,
    mut resp: Identity,
) -> Value {
    handshake::dangerous::set_suites(&mut i, 3);
    handshake::dangerous::set_suites(&mut resp, 3);
    let unix_nanos = NOW * 1_000_000_000 + 987_654_321;
    let mut peek = r.clone();
    let draws: [u8; 160] = bytes(&mut peek);
    let (hs, m1) = handshake::initiate(
        C,
        &i,
        resp.static_public(),
        None,
        0x1111_2222,
        unix_nanos,
        r,
    )
    .unwrap();
    let mut m1b = m1.clone();
    let (m2, _) = handshake::Responder {
        crypto: C,
        ca,
        identity: &resp,
    }
    .respond(
        &mut ReplayGuard::default(),
        &mut m1b,
        (0x1111_2222, 0x3333_4444),
        unix_nanos,
        r,
    )
    .unwrap();
    let mut m2b = m2.clone();
    let out = hs
        .read_response(C, ca, &i, &mut m2b, 0x3333_4444, NOW)
        .unwrap();
    assert_eq!(out.suite, proto::provider::Suite::Aes256Gcm);
    let payload = b"meshd transport vector";
    let mut s = Session::new(
        C,
        &out.session_keys(0x1111_2222),
        std::time::Instant::now(),
        true,
    );
    let mut pkt = vec![0u8; 16 + payload.len() + 16];
    pkt[16..16 + payload.len()].copy_from_slice(payload);
    let n = s.seal(&mut pkt, payload.len()).unwrap();
    pkt.truncate(n);
    let h = |b: &[u8]| hex::encode(b);
    json!({
        "description": "both nodes offer suites 3 (ChaCha20-Poly1305 and AES-256-GCM); draws continue from the generator above in the same order (initiator ephemeral 32, ML-KEM d||z 64, responder m 32, responder ephemeral 32)",
        "unix_time_nanos": unix_nanos,
        "randomness_drawn": h(&draws),
        "initiator_index": 0x1111_2222u32,
        "responder_index": 0x3333_4444u32,
        "message1": h(&m1),
        "message2": h(&m2),
        "initiator_send_key": h(&out.send_key),
        "initiator_recv_key": h(&out.recv_key),
        "transport_plaintext": h(payload),
        "transport_packet_counter_0": h(&pkt),
    })
}

#[test]
fn handshake_vectors_reproduce() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/handshake.json");
    let computed = compute();
    if std::env::var_os("MESHD_REGENERATE_VECTORS").is_some() {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&computed).unwrap() + "\n",
        )
        .unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with MESHD_REGENERATE_VECTORS=1",
            path.display()
        )
    });
    let committed: Value = serde_json::from_str(&text).unwrap();
    for (k, v) in computed.as_object().unwrap() {
        assert_eq!(
            &committed[k], v,
            "vector field '{k}' differs from tests/vectors/handshake.json"
        );
    }
    // The responder's send key is the initiator's receive key.
    assert_eq!(
        committed["responder_send_key"],
        committed["initiator_recv_key"]
    );
}
