//! Cryptographic providers for `meshd-proto`.
//!
//! [`RealCrypto`] implements [`proto::provider::Crypto`] with maintained
//! crates: ring (ChaCha20-Poly1305), x25519-dalek (X25519), ed25519-dalek
//! (strict Ed25519), blake2 (BLAKE2s), chacha20poly1305 (XChaCha20-Poly1305
//! for cookie replies) and libcrux-ml-kem (formally verified ML-KEM-768).
//!
//! This crate also owns the OS-facing side of key material: the system
//! random number generator ([`os_rng`]) and reading and writing armoured key
//! files with safe permissions ([`files`]).
//!
//! With the `insecure-fuzzing` feature it also exposes
//! [`insecure::InsecureCrypto`], which has **no security at all**, and the
//! fuzz-target bodies ([`fuzzing`]). Nothing in a shipped binary enables it.

pub mod files;
#[cfg(feature = "insecure-fuzzing")]
pub mod fuzzing;
#[cfg(feature = "insecure-fuzzing")]
pub mod insecure;

use blake2::digest::{FixedOutput, Mac, Update};
use blake2::{Blake2s256, Blake2sMac};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use proto::provider::{
    Aead, Crypto, CryptoError, KemKeyPair, Suite, ED25519_PUBLIC_LEN, ED25519_SIGNATURE_LEN,
    HASH_LEN, KEM_CT_LEN, KEM_DK_LEN, KEM_EK_LEN, KEM_ENCAPS_SEED_LEN, KEM_KEYGEN_SEED_LEN,
    KEM_SS_LEN, MAC_LEN, TAG_LEN, X25519_LEN, XNONCE_LEN,
};
use rand_core::{CryptoRngCore, OsRng};
use ring::aead::{LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

/// The production provider.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealCrypto;

/// The operating system's CSPRNG (getrandom).
pub fn os_rng() -> impl CryptoRngCore {
    OsRng
}

struct RingAead(LessSafeKey);

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

impl Aead for RingAead {
    fn seal_in_place(&self, counter: u64, ad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        // ring only fails for inputs longer than ChaCha20's 256 GiB limit.
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce(counter), ring::aead::Aad::from(ad), buf)
            .expect("ChaCha20-Poly1305 input within limits");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn open_in_place(
        &self,
        counter: u64,
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        self.0
            .open_in_place_separate_tag(
                nonce(counter),
                ring::aead::Aad::from(ad),
                ring::aead::Tag::from(*tag),
                buf,
                0..,
            )
            .map(|_| ())
            .map_err(|_| CryptoError::Decrypt)
    }
}

impl Crypto for RealCrypto {
    fn x25519_public_key(&self, secret: &[u8; X25519_LEN]) -> [u8; X25519_LEN] {
        let s = x25519_dalek::StaticSecret::from(*secret);
        x25519_dalek::PublicKey::from(&s).to_bytes()
    }

    fn x25519(
        &self,
        secret: &[u8; X25519_LEN],
        public: &[u8; X25519_LEN],
    ) -> Result<[u8; X25519_LEN], CryptoError> {
        let s = x25519_dalek::StaticSecret::from(*secret);
        let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
        if !shared.was_contributory() {
            return Err(CryptoError::LowOrderPoint);
        }
        Ok(shared.to_bytes())
    }

    fn hash(&self, parts: &[&[u8]]) -> [u8; HASH_LEN] {
        let mut h = Blake2s256::default();
        for p in parts {
            Update::update(&mut h, p);
        }
        h.finalize_fixed().into()
    }

    fn mac(&self, key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
        // Keys are 16 or 32 bytes, always within BLAKE2s's 32-byte limit.
        let mut m = <Blake2sMac<blake2::digest::consts::U16> as Mac>::new_from_slice(key)
            .expect("BLAKE2s MAC key of at most 32 bytes");
        for p in parts {
            Mac::update(&mut m, p);
        }
        m.finalize().into_bytes().into()
    }

    fn aead(&self, key: &[u8; 32]) -> Box<dyn Aead> {
        // A 32-byte key is always valid for ChaCha20-Poly1305.
        let k = UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte ChaCha20 key");
        Box::new(RingAead(LessSafeKey::new(k)))
    }

    fn transport_aead(&self, suite: Suite, key: &[u8; 32]) -> Box<dyn Aead> {
        match suite {
            Suite::ChaCha20Poly1305 => self.aead(key),
            Suite::Aes256Gcm => {
                // A 32-byte key is always valid for AES-256-GCM.
                let k = UnboundKey::new(&ring::aead::AES_256_GCM, key).expect("32-byte AES key");
                Box::new(RingAead(LessSafeKey::new(k)))
            }
        }
    }

    fn aes_hardware(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("aes")
                && std::arch::is_aarch64_feature_detected!("pmull")
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    }

    fn xaead_seal(
        &self,
        key: &[u8; 32],
        nonce: &[u8; XNONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let c = XChaCha20Poly1305::new(key.into());
        let tag = c
            .encrypt_in_place_detached(nonce.into(), ad, buf)
            .expect("XChaCha20-Poly1305 input within limits");
        tag.into()
    }

    fn xaead_open(
        &self,
        key: &[u8; 32],
        nonce: &[u8; XNONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        let c = XChaCha20Poly1305::new(key.into());
        c.decrypt_in_place_detached(nonce.into(), ad, buf, tag.into())
            .map_err(|_| CryptoError::Decrypt)
    }

    fn kem_keypair(&self, seed: &[u8; KEM_KEYGEN_SEED_LEN]) -> KemKeyPair {
        let kp = libcrux_ml_kem::mlkem768::generate_key_pair(*seed);
        KemKeyPair {
            encapsulation_key: Box::new(*kp.pk()),
            decapsulation_key: Box::new(*kp.sk()),
        }
    }

    fn kem_encapsulate(
        &self,
        encapsulation_key: &[u8; KEM_EK_LEN],
        seed: &[u8; KEM_ENCAPS_SEED_LEN],
    ) -> Result<(Box<[u8; KEM_CT_LEN]>, [u8; KEM_SS_LEN]), CryptoError> {
        let pk = libcrux_ml_kem::mlkem768::MlKem768PublicKey::from(encapsulation_key);
        if !libcrux_ml_kem::mlkem768::validate_public_key(&pk) {
            return Err(CryptoError::InvalidKemKey);
        }
        let (ct, ss) = libcrux_ml_kem::mlkem768::encapsulate(&pk, *seed);
        Ok((Box::new(*ct.as_slice()), ss))
    }

    fn kem_decapsulate(
        &self,
        decapsulation_key: &[u8; KEM_DK_LEN],
        ciphertext: &[u8; KEM_CT_LEN],
    ) -> [u8; KEM_SS_LEN] {
        let sk = libcrux_ml_kem::mlkem768::MlKem768PrivateKey::from(decapsulation_key);
        let ct = libcrux_ml_kem::mlkem768::MlKem768Ciphertext::from(ciphertext);
        libcrux_ml_kem::mlkem768::decapsulate(&sk, &ct)
    }

    fn ed25519_public_key(&self, seed: &[u8; 32]) -> [u8; ED25519_PUBLIC_LEN] {
        SigningKey::from_bytes(seed).verifying_key().to_bytes()
    }

    fn ed25519_sign(&self, seed: &[u8; 32], message: &[u8]) -> [u8; ED25519_SIGNATURE_LEN] {
        SigningKey::from_bytes(seed).sign(message).to_bytes()
    }

    fn ed25519_verify(
        &self,
        public: &[u8; ED25519_PUBLIC_LEN],
        message: &[u8],
        signature: &[u8; ED25519_SIGNATURE_LEN],
    ) -> Result<(), CryptoError> {
        let vk = VerifyingKey::from_bytes(public).map_err(|_| CryptoError::BadSignature)?;
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        vk.verify_strict(message, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}
