//! Differential and known-answer tests of the real provider against
//! independent implementations: RustCrypto's `ml-kem` for ML-KEM-768 (FIPS
//! 203), snow for the Noise IKpsk2 transcript, RFC vectors for the rest.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use crypto::RealCrypto;
use ml_kem::kem::Decapsulate;
use ml_kem::EncapsulateDeterministic;
use ml_kem::{EncodedSizeUser, KemCore, MlKem768};
use proto::cert::{create_ca, NodeCertParams, OverlayAddr, TrustedCa};
use proto::handshake::{self, Identity, ReplayGuard};
use proto::provider::{Crypto, KEM_CT_LEN, KEM_EK_LEN};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const C: &RealCrypto = &RealCrypto;

#[test]
fn ml_kem_768_matches_rustcrypto_ml_kem() {
    let mut rng = ChaCha20Rng::seed_from_u64(203);
    for _ in 0..64 {
        let mut seed = [0u8; 64];
        rng.fill_bytes(&mut seed);
        let mut m = [0u8; 32];
        rng.fill_bytes(&mut m);

        let ours = C.kem_keypair(&seed);
        let d = ml_kem::B32::try_from(&seed[..32]).unwrap();
        let z = ml_kem::B32::try_from(&seed[32..]).unwrap();
        let (dk, ek) = MlKem768::generate_deterministic(&d, &z);
        assert_eq!(
            &ours.encapsulation_key[..],
            ek.as_bytes().as_slice(),
            "encapsulation key"
        );
        assert_eq!(
            &ours.decapsulation_key[..],
            dk.as_bytes().as_slice(),
            "decapsulation key"
        );

        let (ct, ss) = C.kem_encapsulate(&ours.encapsulation_key, &m).unwrap();
        let (ct2, ss2) = ek
            .encapsulate_deterministic(&ml_kem::B32::try_from(&m[..]).unwrap())
            .unwrap();
        assert_eq!(&ct[..], ct2.as_slice(), "ciphertext");
        assert_eq!(&ss[..], ss2.as_slice(), "shared secret");
        assert_eq!(C.kem_decapsulate(&ours.decapsulation_key, &ct), ss);

        // Implicit rejection: a corrupted ciphertext decapsulates to the same
        // pseudorandom value in both implementations, never to `ss`.
        let mut bad: [u8; KEM_CT_LEN] = *ct;
        bad[17] ^= 4;
        let ours_bad = C.kem_decapsulate(&ours.decapsulation_key, &bad);
        let theirs_bad = dk
            .decapsulate(&ml_kem::Ciphertext::<MlKem768>::try_from(&bad[..]).unwrap())
            .unwrap();
        assert_eq!(&ours_bad[..], theirs_bad.as_slice());
        assert_ne!(ours_bad, ss);
    }
}

#[test]
fn ml_kem_rejects_an_encapsulation_key_failing_the_modulus_check() {
    let kp = C.kem_keypair(&[5; 64]);
    let mut ek: [u8; KEM_EK_LEN] = *kp.encapsulation_key;
    // Set the first 12-bit coefficient to 4095 >= q = 3329.
    ek[0] = 0xff;
    ek[1] |= 0x0f;
    assert!(C.kem_encapsulate(&ek, &[1; 32]).is_err());
}

/// RFC 7748 §6.1 Diffie-Hellman vector.
#[test]
fn x25519_rfc7748_vector() {
    let a =
        hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap();
    let b_pub =
        hex::decode("de9edb7bc7b0ff98e2cd7e3b90f0d0c7b9d4d76b9c8a2af2eba6b4d2cd1f1b9b").unwrap();
    let a: [u8; 32] = a.try_into().unwrap();
    assert_eq!(
        hex::encode(C.x25519_public_key(&a)),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
    let _ = b_pub;
    let b: [u8; 32] =
        hex::decode("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
            .unwrap()
            .try_into()
            .unwrap();
    let shared = C.x25519(&a, &C.x25519_public_key(&b)).unwrap();
    assert_eq!(
        hex::encode(shared),
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    );
    assert!(
        C.x25519(&a, &[0; 32]).is_err(),
        "low-order point must be rejected"
    );
}

/// RFC 7693 Appendix B: BLAKE2s-256("abc").
#[test]
fn blake2s_rfc7693_vector() {
    assert_eq!(
        hex::encode(C.hash(&[b"a", b"bc"])),
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
    );
}

/// ring's ChaCha20-Poly1305 with the Noise nonce layout (4 zero bytes ||
/// 64-bit little-endian counter) against RustCrypto's independent implementation.
#[test]
fn chacha20_poly1305_matches_rustcrypto() {
    use chacha20poly1305::aead::AeadInPlace;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
    let key: [u8; 32] =
        hex::decode("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
            .unwrap()
            .try_into()
            .unwrap();
    let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
    let counter = 0x4746_4544_4342_4140u64;
    let msg = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let mut ours = msg.to_vec();
    let tag = C.aead(&key).seal_in_place(counter, &aad, &mut ours);
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    let mut theirs = msg.to_vec();
    let tag2 = ChaCha20Poly1305::new((&key).into())
        .encrypt_in_place_detached((&nonce).into(), &aad, &mut theirs)
        .unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(&tag[..], tag2.as_slice());
    let aead = C.aead(&key);
    let mut back = ours.clone();
    aead.open_in_place(counter, &aad, &mut back, &tag).unwrap();
    assert_eq!(&back[..], &msg[..]);
    let mut t = tag;
    t[0] ^= 1;
    assert!(aead
        .open_in_place(counter, &aad, &mut ours.clone(), &t)
        .is_err());
    assert!(aead
        .open_in_place(counter + 1, &aad, &mut ours.clone(), &tag)
        .is_err());
}

/// RFC 8032 §7.1 test 1 (empty message).
#[test]
fn ed25519_rfc8032_vector() {
    let seed: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    assert_eq!(
        hex::encode(C.ed25519_public_key(&seed)),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    let sig = C.ed25519_sign(&seed, b"");
    assert_eq!(hex::encode(sig), "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    assert!(C
        .ed25519_verify(&C.ed25519_public_key(&seed), b"", &sig)
        .is_ok());
    assert!(C
        .ed25519_verify(&C.ed25519_public_key(&seed), b"x", &sig)
        .is_err());
}

/// An RNG that yields fixed bytes first, then zeros: lets us know which
/// ephemeral key and KEM randomness a handshake will draw.
struct Script(Vec<u8>, usize);
impl RngCore for Script {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            *d = self.0.get(self.1).copied().unwrap_or(0);
            self.1 += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_chacha::rand_core::CryptoRng for Script {}

/// Our Noise layer must produce exactly the bytes snow produces for
/// `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s` with the same keys, prologue,
/// payloads and PSK.
#[test]
fn noise_transcript_matches_snow() {
    let now = 1_800_000_000u64;
    let ca_cert = create_ca(C, "ca", &[1; 32], now - 10, now + 1000).unwrap();
    let ca = TrustedCa::new(C, ca_cert, now).unwrap();
    let mk = |name: &str, s: [u8; 32]| {
        let cert = ca
            .issue(
                C,
                &[1; 32],
                NodeCertParams {
                    name: name.into(),
                    addresses: vec![OverlayAddr::V4([100, 64, 0, s[0]], 10)],
                    segments: vec![],
                    static_public_key: C.x25519_public_key(&s),
                    advert_key: proto::cert::advert_public_key(C, &s),
                    not_before: now - 5,
                    not_after: now + 500,
                },
            )
            .unwrap();
        Identity::new(C, cert, s).unwrap()
    };
    let (is, rs) = ([0x11u8; 32], [0x22u8; 32]);
    let alice = mk("alice", is);
    let bob = mk("bob", rs);
    let e_i = [0x33u8; 32];
    let kem_seed = [0x44u8; 64];
    let e_r = [0x55u8; 32];
    let encaps = [0x66u8; 32];

    let mut irng = Script([&e_i[..], &kem_seed[..]].concat(), 0);
    let (hs, m1) = handshake::initiate(
        C,
        &alice,
        bob.static_public(),
        None,
        7,
        now * 1_000_000_000,
        &mut irng,
    )
    .unwrap();
    let mut rrng = Script([&encaps[..], &e_r[..]].concat(), 0);
    let mut m1c = m1.clone();
    let (m2, bob_out) = handshake::Responder {
        crypto: C,
        ca: &ca,
        identity: &bob,
    }
    .respond(
        &mut ReplayGuard::default(),
        &mut m1c,
        (7, 9),
        now * 1_000_000_000,
        &mut rrng,
    )
    .unwrap();

    let params: snow::params::NoiseParams =
        "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
    let mut si = snow::Builder::new(params.clone())
        .local_private_key(&is)
        .unwrap()
        .remote_public_key(bob.static_public())
        .unwrap()
        .prologue(handshake::PROLOGUE)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&e_i)
        .build_initiator()
        .unwrap();
    let mut sr = snow::Builder::new(params)
        .local_private_key(&rs)
        .unwrap()
        .prologue(handshake::PROLOGUE)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&e_r)
        .build_responder()
        .unwrap();

    // Message 1: the plaintext payload is what the responder decrypted in place.
    let payload1 = &m1c[80..m1c.len() - 16];
    let mut out = vec![0u8; 4096];
    let n = si.write_message(payload1, &mut out).unwrap();
    assert_eq!(&out[..n], &m1[..], "message 1 differs from snow's");
    let mut p = vec![0u8; 4096];
    let pn = sr.read_message(&m1, &mut p).unwrap();
    assert_eq!(&p[..pn], payload1);

    // Message 2: ML-KEM ciphertext in clear, then the Noise message with the PSK.
    let kp = C.kem_keypair(&kem_seed);
    let (ct, ss) = C.kem_encapsulate(&kp.encapsulation_key, &encaps).unwrap();
    assert_eq!(&m2[..KEM_CT_LEN], &ct[..]);
    let psk = handshake::kem_psk(C, &ss, &ct, &kp.encapsulation_key);
    sr.set_psk(2, &psk).unwrap();
    si.set_psk(2, &psk).unwrap();
    let mut m2c = m2.clone();
    let alice_out = hs.read_response(C, &ca, &alice, &mut m2c, 9, now).unwrap();
    let payload2 = &m2c[KEM_CT_LEN + 32..m2c.len() - 16];
    let n = sr.write_message(payload2, &mut out).unwrap();
    assert_eq!(
        &out[..n],
        &m2[KEM_CT_LEN..],
        "message 2 differs from snow's"
    );
    si.read_message(&m2[KEM_CT_LEN..], &mut p).unwrap();
    assert_eq!(si.get_handshake_hash(), &alice_out.handshake_hash[..]);
    assert_eq!(sr.get_handshake_hash(), &bob_out.handshake_hash[..]);

    // Transport keys: what snow encrypts with, we decrypt.
    let mut st = si.into_transport_mode().unwrap();
    let mut ct_buf = vec![0u8; 64];
    let n = st.write_message(b"hello", &mut ct_buf).unwrap();
    let mut body = ct_buf[..n - 16].to_vec();
    let tag: [u8; 16] = ct_buf[n - 16..n].try_into().unwrap();
    C.aead(&bob_out.recv_key)
        .open_in_place(0, &[], &mut body, &tag)
        .unwrap();
    assert_eq!(body, b"hello");
}
