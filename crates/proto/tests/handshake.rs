//! The hybrid handshake: success, sizes, and one test per attack.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use crypto::insecure::FreeKem;
use crypto::RealCrypto;
use proto::cert::{CertError, TrustedCa};
use proto::handshake::{
    self, dangerous, HandshakeError, HandshakeOutput, Identity, InitiatorHandshake, ReplayGuard,
};
use proto::wire::MAX_HANDSHAKE_DATAGRAM;
use rand_chacha::ChaCha20Rng;

const C: &RealCrypto = &RealCrypto;

/// Message 1 from `from` to `to`, with sender index 1, at `NOW`.
fn msg1(from: &Identity, to: &Identity, r: &mut ChaCha20Rng) -> (InitiatorHandshake, Vec<u8>) {
    handshake::initiate(C, from, to.static_public(), None, 1, NOW_NANOS, r).unwrap()
}

/// `to` answers message 1 (header index 1, its own index 2) with a fresh
/// replay guard, trusting `ca`.
fn answer(
    ca: &TrustedCa,
    to: &Identity,
    m1: &mut [u8],
    r: &mut ChaCha20Rng,
) -> Result<(Vec<u8>, HandshakeOutput), HandshakeError> {
    handshake::Responder {
        crypto: C,
        ca,
        identity: to,
    }
    .respond(&mut ReplayGuard::default(), m1, (1, 2), NOW_NANOS, r)
}

fn run(
    mesh: &Mesh,
    seed: u64,
) -> (
    Vec<u8>,
    Vec<u8>,
    handshake::HandshakeOutput,
    handshake::HandshakeOutput,
) {
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let mut r = rng(seed);
    let (hs, m1) =
        handshake::initiate(C, &alice, bob.static_public(), None, 100, NOW_NANOS, &mut r).unwrap();
    let mut m1b = m1.clone();
    let mut guard = ReplayGuard::default();
    let (m2, bob_out) = handshake::Responder {
        crypto: C,
        ca: &mesh.ca,
        identity: &bob,
    }
    .respond(&mut guard, &mut m1b, (100, 200), NOW_NANOS, &mut r)
    .unwrap();
    let mut m2b = m2.clone();
    let alice_out = hs
        .read_response(C, &mesh.ca, &alice, &mut m2b, 200, NOW)
        .unwrap();
    (m1, m2, alice_out, bob_out)
}

#[test]
fn hybrid_handshake_derives_matching_keys() {
    let mesh = Mesh::new(1);
    let (_, _, a, b) = run(&mesh, 2);
    assert_eq!(a.send_key, b.recv_key);
    assert_eq!(a.recv_key, b.send_key);
    assert_ne!(a.send_key, a.recv_key);
    assert_eq!(a.handshake_hash, b.handshake_hash);
    assert_eq!(a.peer_cert.name(), "bob");
    assert_eq!(b.peer_cert.name(), "alice");
    assert_eq!(a.peer_index, 200);
    assert_eq!(b.peer_index, 100);
}

#[test]
fn message_sizes_match_the_spec_and_need_fragmenting() {
    let mesh = Mesh::new(1);
    let (m1, m2, _, _) = run(&mesh, 2);
    let cert_len = mesh.node("alice", 1).certificate().as_bytes().len();
    assert_eq!(m1.len(), handshake::message1_len(cert_len));
    assert!(
        (1400..1700).contains(&m1.len()),
        "message 1 is {} bytes",
        m1.len()
    );
    assert!(
        (1250..1600).contains(&m2.len()),
        "message 2 is {} bytes",
        m2.len()
    );
    assert!(m1.len() > MAX_HANDSHAKE_DATAGRAM && m2.len() > MAX_HANDSHAKE_DATAGRAM);
}

#[test]
fn fresh_randomness_gives_fresh_keys() {
    let mesh = Mesh::new(1);
    let (_, _, a1, _) = run(&mesh, 2);
    let (_, _, a2, _) = run(&mesh, 3);
    assert_ne!(a1.send_key, a2.send_key);
    // Same seed, same transcript: the handshake is a pure function.
    let (m1, _, a3, _) = run(&mesh, 2);
    let (m1b, _, _, _) = run(&mesh, 2);
    assert_eq!(m1, m1b);
    assert_eq!(a1.send_key, a3.send_key);
}

#[test]
fn session_keys_depend_on_the_kem_secret() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let (_, _, real, _) = run(&mesh, 9);
    let mut r = rng(9);
    let (hs, m1) = handshake::initiate(
        &FreeKem,
        &alice,
        bob.static_public(),
        None,
        100,
        NOW_NANOS,
        &mut r,
    )
    .unwrap();
    let mut m1b = m1.clone();
    let (mut m2, _) = handshake::Responder {
        crypto: &FreeKem,
        ca: &mesh.ca,
        identity: &bob,
    }
    .respond(
        &mut ReplayGuard::default(),
        &mut m1b,
        (100, 200),
        NOW_NANOS,
        &mut r,
    )
    .unwrap();
    let zero = hs
        .read_response(&FreeKem, &mesh.ca, &alice, &mut m2, 200, NOW)
        .unwrap();
    // Same X25519 ephemerals and statics (same seed), different KEM secret:
    assert_ne!(real.send_key, zero.send_key);
    assert_ne!(real.recv_key, zero.recv_key);
}

#[test]
fn tampered_kem_ciphertext_breaks_the_handshake() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let mut r = rng(4);
    let (hs, mut m1) = msg1(&alice, &bob, &mut r);
    let (mut m2, _) = answer(&mesh.ca, &bob, &mut m1, &mut r).unwrap();
    m2[500] ^= 0x01; // inside the ML-KEM ciphertext (bytes 0..1088)
    let e = hs
        .read_response(C, &mesh.ca, &alice, &mut m2, 2, NOW)
        .unwrap_err();
    assert_eq!(e, HandshakeError::ResponseAuthFailed);
}

#[test]
fn tampered_encapsulation_key_breaks_the_handshake() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let mut r = rng(5);
    let (_, mut m1) = msg1(&alice, &bob, &mut r);
    // The encapsulation key sits at payload offset 16, i.e. message offset 96..1280.
    m1[700] ^= 0x80;
    let e = answer(&mesh.ca, &bob, &mut m1, &mut r).unwrap_err();
    assert_eq!(e, HandshakeError::InitiationAuthFailed);
}

#[test]
fn replayed_message1_is_rejected() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let mut r = rng(6);
    let mut guard = ReplayGuard::default();
    let (_, m1) = msg1(&alice, &bob, &mut r);
    let mut first = m1.clone();
    handshake::Responder {
        crypto: C,
        ca: &mesh.ca,
        identity: &bob,
    }
    .respond(&mut guard, &mut first, (1, 2), NOW_NANOS, &mut r)
    .unwrap();
    // Replayed a minute later: well past the flood limit, still a replay.
    let mut again = m1.clone();
    let e = handshake::Responder {
        crypto: C,
        ca: &mesh.ca,
        identity: &bob,
    }
    .respond(
        &mut guard,
        &mut again,
        (1, 3),
        NOW_NANOS + 60_000_000_000,
        &mut r,
    )
    .unwrap_err();
    assert_eq!(e, HandshakeError::ReplayedInitiation);
    // An older initiation is a replay too; a newer one is accepted.
    let (_, mut older) = handshake::initiate(
        C,
        &alice,
        bob.static_public(),
        None,
        4,
        NOW_NANOS - 1,
        &mut r,
    )
    .unwrap();
    let e = handshake::Responder {
        crypto: C,
        ca: &mesh.ca,
        identity: &bob,
    }
    .respond(
        &mut guard,
        &mut older,
        (4, 5),
        NOW_NANOS + 61_000_000_000,
        &mut r,
    )
    .unwrap_err();
    assert_eq!(e, HandshakeError::ReplayedInitiation);
    let (_, mut newer) = handshake::initiate(
        C,
        &alice,
        bob.static_public(),
        None,
        6,
        NOW_NANOS + 62_000_000_000,
        &mut r,
    )
    .unwrap();
    handshake::Responder {
        crypto: C,
        ca: &mesh.ca,
        identity: &bob,
    }
    .respond(
        &mut guard,
        &mut newer,
        (6, 7),
        NOW_NANOS + 62_000_000_000,
        &mut r,
    )
    .unwrap();
}

#[test]
fn initiation_flood_from_one_peer_is_limited() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let mut r = rng(6);
    let mut guard = ReplayGuard::default();
    let (_, mut a) = msg1(&alice, &bob, &mut r);
    handshake::Responder {
        crypto: C,
        ca: &mesh.ca,
        identity: &bob,
    }
    .respond(&mut guard, &mut a, (1, 2), NOW_NANOS, &mut r)
    .unwrap();
    let (_, mut b) = handshake::initiate(
        C,
        &alice,
        bob.static_public(),
        None,
        3,
        NOW_NANOS + 10_000_000,
        &mut r,
    )
    .unwrap();
    let e = handshake::Responder {
        crypto: C,
        ca: &mesh.ca,
        identity: &bob,
    }
    .respond(&mut guard, &mut b, (3, 4), NOW_NANOS + 10_000_000, &mut r)
    .unwrap_err();
    assert_eq!(e, HandshakeError::InitiationTooFrequent);
}

#[test]
fn certificate_from_another_ca_is_rejected() {
    let mesh = Mesh::new(1);
    let other = Mesh::new(99);
    let mallory = other.node("mallory", 7);
    let bob = mesh.node("bob", 2);
    let mut r = rng(7);
    let (_, mut m1) = msg1(&mallory, &bob, &mut r);
    let e = answer(&mesh.ca, &bob, &mut m1, &mut r).unwrap_err();
    assert!(
        matches!(e, HandshakeError::Certificate(CertError::WrongCa { .. })),
        "{e:?}"
    );
    // And the initiator rejects a responder from another CA.
    let alice = mesh.node("alice", 1);
    let carol = other.node("carol", 8);
    let (hs, mut m1) = msg1(&alice, &carol, &mut r);
    // carol trusts alice's CA for this test, so only alice's check can fail.
    let (mut m2, _) = answer(&mesh.ca, &carol, &mut m1, &mut r).unwrap();
    let e = hs
        .read_response(C, &mesh.ca, &alice, &mut m2, 2, NOW)
        .unwrap_err();
    assert!(
        matches!(e, HandshakeError::Certificate(CertError::WrongCa { .. })),
        "{e:?}"
    );
}

#[test]
fn expired_certificate_is_rejected() {
    let mesh = Mesh::new(1);
    let secret = [9u8; 32];
    let cert = mesh.cert("old", [100, 64, 0, 9], secret, NOW - 7200, NOW - 3600);
    let old = proto::handshake::Identity::new(C, cert, secret).unwrap();
    let bob = mesh.node("bob", 2);
    let mut r = rng(8);
    let (_, mut m1) = msg1(&old, &bob, &mut r);
    let e = answer(&mesh.ca, &bob, &mut m1, &mut r).unwrap_err();
    assert!(
        matches!(e, HandshakeError::Certificate(CertError::Expired { .. })),
        "{e:?}"
    );
}

#[test]
fn not_yet_valid_certificate_is_rejected() {
    let mesh = Mesh::new(1);
    let secret = [9u8; 32];
    let cert = mesh.cert("future", [100, 64, 0, 9], secret, NOW + 3600, NOW + 7200);
    let future = proto::handshake::Identity::new(C, cert, secret).unwrap();
    let bob = mesh.node("bob", 2);
    let mut r = rng(8);
    let (_, mut m1) = msg1(&future, &bob, &mut r);
    let e = answer(&mesh.ca, &bob, &mut m1, &mut r).unwrap_err();
    assert!(
        matches!(
            e,
            HandshakeError::Certificate(CertError::NotYetValid { .. })
        ),
        "{e:?}"
    );
}

#[test]
fn static_key_that_does_not_match_the_certificate_is_rejected() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    // Mallory presents alice's (public) certificate with her own static key.
    let mallory = dangerous::identity_unchecked(C, alice.certificate().clone(), [7u8; 32]);
    let mut r = rng(10);
    let (_, mut m1) = msg1(&mallory, &bob, &mut r);
    let e = answer(&mesh.ca, &bob, &mut m1, &mut r).unwrap_err();
    assert_eq!(e, HandshakeError::StaticKeyMismatch);
    // Identity::new refuses the same pairing up front.
    assert_eq!(
        proto::handshake::Identity::new(C, alice.certificate().clone(), [7u8; 32]).unwrap_err(),
        HandshakeError::StaticKeyMismatch
    );
}

#[test]
fn message1_for_another_node_fails_to_authenticate() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let carol = mesh.node("carol", 3);
    let mut r = rng(11);
    let (_, mut m1) = msg1(&alice, &bob, &mut r);
    let e = answer(&mesh.ca, &carol, &mut m1, &mut r).unwrap_err();
    assert_eq!(e, HandshakeError::InitiationAuthFailed);
}

#[test]
fn responder_without_the_expected_static_key_fails() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let mut r = rng(12);
    let (hs, mut m1) = msg1(&alice, &bob, &mut r);
    let (mut m2, _) = answer(&mesh.ca, &bob, &mut m1, &mut r).unwrap();
    // An impostor re-encrypting bob's response needs bob's key; flipping any
    // byte of the encrypted payload is caught.
    let n = m2.len();
    m2[n - 20] ^= 1;
    assert_eq!(
        hs.read_response(C, &mesh.ca, &alice, &mut m2, 2, NOW)
            .unwrap_err(),
        HandshakeError::ResponseAuthFailed
    );
}

#[test]
fn truncated_and_oversized_messages_are_rejected_by_length() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let mut r = rng(13);
    let (_, m1) = msg1(&alice, &bob, &mut r);
    let mut short = m1[..100].to_vec();
    assert!(matches!(
        answer(&mesh.ca, &bob, &mut short, &mut r),
        Err(HandshakeError::BadLength(100))
    ));
    let mut long = vec![0u8; 5000];
    assert!(matches!(
        answer(&mesh.ca, &bob, &mut long, &mut r),
        Err(HandshakeError::BadLength(5000))
    ));
    let mut cut = m1[..m1.len() - 1].to_vec();
    assert_eq!(
        answer(&mesh.ca, &bob, &mut cut, &mut r).unwrap_err(),
        HandshakeError::InitiationAuthFailed
    );
}

#[test]
fn header_index_must_match_the_authenticated_index() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let mut r = rng(14);
    let (_, mut m1) = msg1(&alice, &bob, &mut r);
    let e = handshake::Responder {
        crypto: C,
        ca: &mesh.ca,
        identity: &bob,
    }
    .respond(
        &mut ReplayGuard::default(),
        &mut m1,
        (999, 2),
        NOW_NANOS,
        &mut r,
    )
    .unwrap_err();
    assert_eq!(e, HandshakeError::IndexMismatch);
}

#[test]
fn ca_itself_must_be_valid() {
    let mesh = Mesh::new(1);
    let cert = mesh.ca.certificate().clone();
    assert!(matches!(
        TrustedCa::new(C, cert, NOW + 400 * 86_400),
        Err(CertError::Expired { .. })
    ));
}

#[test]
fn precomputed_static_static_is_used_and_must_be_right() {
    let mesh = Mesh::new(1);
    let alice = mesh.node("alice", 1);
    let bob = mesh.node("bob", 2);
    let mut r = rng(15);
    let ss = handshake::static_static(C, &alice, bob.static_public()).unwrap();
    let (_, mut good) = handshake::initiate(
        C,
        &alice,
        bob.static_public(),
        Some(&ss),
        1,
        NOW_NANOS,
        &mut r,
    )
    .unwrap();
    answer(&mesh.ca, &bob, &mut good, &mut r).unwrap();
    let (_, mut bad) = handshake::initiate(
        C,
        &alice,
        bob.static_public(),
        Some(&[1; 32]),
        1,
        NOW_NANOS,
        &mut r,
    )
    .unwrap();
    let e = answer(&mesh.ca, &bob, &mut bad, &mut r).unwrap_err();
    assert_eq!(e, HandshakeError::InitiationAuthFailed);
}

#[test]
fn aes_256_gcm_is_chosen_only_when_both_ends_offer_it_and_sessions_interoperate() {
    use proto::provider::{Suite, SUITE_AES, SUITE_CHACHA};
    use proto::session::{Session, SessionKeys};
    let mesh = Mesh::new(3);
    let both = SUITE_CHACHA | SUITE_AES;
    for (a_suites, b_suites, want) in [
        (both, both, Suite::Aes256Gcm),
        (SUITE_CHACHA, both, Suite::ChaCha20Poly1305),
        (both, SUITE_CHACHA, Suite::ChaCha20Poly1305),
        (SUITE_CHACHA, SUITE_CHACHA, Suite::ChaCha20Poly1305),
    ] {
        let mut alice = mesh.node("alice", 1);
        let mut bob = mesh.node("bob", 2);
        dangerous::set_suites(&mut alice, a_suites);
        dangerous::set_suites(&mut bob, b_suites);
        let mut r = rng(9);
        let (hs, mut m1) = msg1(&alice, &bob, &mut r);
        let (mut m2, bob_out) = answer(&mesh.ca, &bob, &mut m1, &mut r).unwrap();
        let alice_out = hs
            .read_response(C, &mesh.ca, &alice, &mut m2, 2, NOW)
            .unwrap();
        assert_eq!((alice_out.suite, bob_out.suite), (want, want));
        let now = std::time::Instant::now();
        let mut tx = Session::new(
            C,
            &SessionKeys {
                local_index: 1,
                remote_index: 2,
                send: alice_out.send_key,
                recv: alice_out.recv_key,
                suite: alice_out.suite,
            },
            now,
            true,
        );
        let mut rx = Session::new(
            C,
            &SessionKeys {
                local_index: 2,
                remote_index: 1,
                send: bob_out.send_key,
                recv: bob_out.recv_key,
                suite: bob_out.suite,
            },
            now,
            false,
        );
        let mut pkt = vec![0u8; 16 + 5 + 16];
        pkt[16..21].copy_from_slice(b"hello");
        let n = tx.seal(&mut pkt, 5).unwrap();
        assert_eq!(rx.open(&mut pkt[..n]).unwrap(), 5);
        assert_eq!(&pkt[16..21], b"hello");
    }
}

#[test]
fn an_initiation_that_does_not_offer_chacha20_poly1305_is_refused() {
    use proto::provider::SUITE_AES;
    let mesh = Mesh::new(3);
    let mut alice = mesh.node("alice", 1);
    dangerous::set_suites(&mut alice, SUITE_AES);
    let bob = mesh.node("bob", 2);
    let mut r = rng(9);
    let (_, mut m1) = msg1(&alice, &bob, &mut r);
    let e = answer(&mesh.ca, &bob, &mut m1, &mut r).unwrap_err();
    assert_eq!(e, HandshakeError::MalformedPayload);
}
