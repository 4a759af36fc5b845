//! A provider with **no security whatsoever**, for fuzzing only.
//!
//! MACs are all zero, AEAD is the identity with an all-zero tag, signatures
//! always verify, X25519 is XOR and ML-KEM sends its secret in the clear.
//! It lets a fuzzer's inputs reach the parsers that sit behind MACs and
//! signatures. It is compiled only with the `insecure-fuzzing` feature.

use blake2::digest::{FixedOutput, Update};
use blake2::Blake2s256;
use proto::provider::{
    Aead, Crypto, CryptoError, KemKeyPair, Suite, ED25519_PUBLIC_LEN, ED25519_SIGNATURE_LEN,
    HASH_LEN, KEM_CT_LEN, KEM_DK_LEN, KEM_EK_LEN, KEM_ENCAPS_SEED_LEN, KEM_KEYGEN_SEED_LEN,
    KEM_SS_LEN, MAC_LEN, TAG_LEN, X25519_LEN, XNONCE_LEN,
};

/// The insecure provider. See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct InsecureCrypto;

struct NullAead;

impl Aead for NullAead {
    fn seal_in_place(&self, _: u64, _: &[u8], _: &mut [u8]) -> [u8; TAG_LEN] {
        [0; TAG_LEN]
    }
    fn open_in_place(
        &self,
        _: u64,
        _: &[u8],
        _: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        if tag == &[0; TAG_LEN] {
            Ok(())
        } else {
            Err(CryptoError::Decrypt)
        }
    }
}

impl Crypto for InsecureCrypto {
    fn x25519_public_key(&self, secret: &[u8; X25519_LEN]) -> [u8; X25519_LEN] {
        *secret
    }
    fn x25519(
        &self,
        secret: &[u8; X25519_LEN],
        public: &[u8; X25519_LEN],
    ) -> Result<[u8; X25519_LEN], CryptoError> {
        let mut out = [0u8; 32];
        for i in 0..32 {
            out[i] = secret[i] ^ public[i];
        }
        if out == [0; 32] {
            return Err(CryptoError::LowOrderPoint);
        }
        Ok(out)
    }
    fn hash(&self, parts: &[&[u8]]) -> [u8; HASH_LEN] {
        let mut h = Blake2s256::default();
        for p in parts {
            h.update(p);
        }
        h.finalize_fixed().into()
    }
    fn mac(&self, _: &[u8], _: &[&[u8]]) -> [u8; MAC_LEN] {
        [0; MAC_LEN]
    }
    fn aead(&self, _: &[u8; 32]) -> Box<dyn Aead> {
        Box::new(NullAead)
    }
    fn transport_aead(&self, _: Suite, _: &[u8; 32]) -> Box<dyn Aead> {
        Box::new(NullAead)
    }
    fn aes_hardware(&self) -> bool {
        false
    }
    fn xaead_seal(
        &self,
        _: &[u8; 32],
        _: &[u8; XNONCE_LEN],
        _: &[u8],
        _: &mut [u8],
    ) -> [u8; TAG_LEN] {
        [0; TAG_LEN]
    }
    fn xaead_open(
        &self,
        _: &[u8; 32],
        _: &[u8; XNONCE_LEN],
        _: &[u8],
        _: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        NullAead.open_in_place(0, &[], &mut [], tag)
    }
    fn kem_keypair(&self, seed: &[u8; KEM_KEYGEN_SEED_LEN]) -> KemKeyPair {
        let mut ek = Box::new([0u8; KEM_EK_LEN]);
        ek[..64].copy_from_slice(seed);
        let mut dk = Box::new([0u8; KEM_DK_LEN]);
        dk[..64].copy_from_slice(seed);
        KemKeyPair {
            encapsulation_key: ek,
            decapsulation_key: dk,
        }
    }
    fn kem_encapsulate(
        &self,
        _: &[u8; KEM_EK_LEN],
        seed: &[u8; KEM_ENCAPS_SEED_LEN],
    ) -> Result<(Box<[u8; KEM_CT_LEN]>, [u8; KEM_SS_LEN]), CryptoError> {
        let mut ct = Box::new([0u8; KEM_CT_LEN]);
        ct[..32].copy_from_slice(seed);
        Ok((ct, *seed))
    }
    fn kem_decapsulate(&self, _: &[u8; KEM_DK_LEN], ct: &[u8; KEM_CT_LEN]) -> [u8; KEM_SS_LEN] {
        let mut ss = [0u8; 32];
        ss.copy_from_slice(&ct[..32]);
        ss
    }
    fn ed25519_public_key(&self, seed: &[u8; 32]) -> [u8; ED25519_PUBLIC_LEN] {
        *seed
    }
    fn ed25519_sign(&self, _: &[u8; 32], _: &[u8]) -> [u8; ED25519_SIGNATURE_LEN] {
        [0; ED25519_SIGNATURE_LEN]
    }
    fn ed25519_verify(
        &self,
        _: &[u8; ED25519_PUBLIC_LEN],
        _: &[u8],
        _: &[u8; ED25519_SIGNATURE_LEN],
    ) -> Result<(), CryptoError> {
        Ok(())
    }
}

/// The real provider with ML-KEM replaced by free no-ops (all-zero keys,
/// ciphertext and shared secret; the bytes still travel). For benchmarks
/// that isolate the KEM's cost and tests that show the session keys depend
/// on the KEM secret. No post-quantum security.
#[derive(Debug, Default, Clone, Copy)]
pub struct FreeKem;

const REAL: crate::RealCrypto = crate::RealCrypto;

impl Crypto for FreeKem {
    fn x25519_public_key(&self, s: &[u8; X25519_LEN]) -> [u8; X25519_LEN] {
        REAL.x25519_public_key(s)
    }
    fn x25519(
        &self,
        s: &[u8; X25519_LEN],
        p: &[u8; X25519_LEN],
    ) -> Result<[u8; X25519_LEN], CryptoError> {
        REAL.x25519(s, p)
    }
    fn hash(&self, parts: &[&[u8]]) -> [u8; HASH_LEN] {
        REAL.hash(parts)
    }
    fn mac(&self, key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
        REAL.mac(key, parts)
    }
    fn aead(&self, key: &[u8; 32]) -> Box<dyn Aead> {
        REAL.aead(key)
    }
    fn transport_aead(&self, suite: Suite, key: &[u8; 32]) -> Box<dyn Aead> {
        REAL.transport_aead(suite, key)
    }
    fn aes_hardware(&self) -> bool {
        REAL.aes_hardware()
    }
    fn xaead_seal(
        &self,
        k: &[u8; 32],
        n: &[u8; XNONCE_LEN],
        ad: &[u8],
        b: &mut [u8],
    ) -> [u8; TAG_LEN] {
        REAL.xaead_seal(k, n, ad, b)
    }
    fn xaead_open(
        &self,
        k: &[u8; 32],
        n: &[u8; XNONCE_LEN],
        ad: &[u8],
        b: &mut [u8],
        t: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        REAL.xaead_open(k, n, ad, b, t)
    }
    fn kem_keypair(&self, _: &[u8; KEM_KEYGEN_SEED_LEN]) -> KemKeyPair {
        KemKeyPair {
            encapsulation_key: Box::new([0; KEM_EK_LEN]),
            decapsulation_key: Box::new([0; KEM_DK_LEN]),
        }
    }
    fn kem_encapsulate(
        &self,
        _: &[u8; KEM_EK_LEN],
        _: &[u8; KEM_ENCAPS_SEED_LEN],
    ) -> Result<(Box<[u8; KEM_CT_LEN]>, [u8; KEM_SS_LEN]), CryptoError> {
        Ok((Box::new([0; KEM_CT_LEN]), [0; KEM_SS_LEN]))
    }
    fn kem_decapsulate(&self, _: &[u8; KEM_DK_LEN], _: &[u8; KEM_CT_LEN]) -> [u8; KEM_SS_LEN] {
        [0; KEM_SS_LEN]
    }
    fn ed25519_public_key(&self, s: &[u8; 32]) -> [u8; ED25519_PUBLIC_LEN] {
        REAL.ed25519_public_key(s)
    }
    fn ed25519_sign(&self, s: &[u8; 32], m: &[u8]) -> [u8; ED25519_SIGNATURE_LEN] {
        REAL.ed25519_sign(s, m)
    }
    fn ed25519_verify(
        &self,
        p: &[u8; ED25519_PUBLIC_LEN],
        m: &[u8],
        sig: &[u8; ED25519_SIGNATURE_LEN],
    ) -> Result<(), CryptoError> {
        REAL.ed25519_verify(p, m, sig)
    }
}
