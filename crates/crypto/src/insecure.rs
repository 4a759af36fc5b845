//! A provider with **no security whatsoever**, for fuzzing only.
//!
//! MACs are all zero, AEAD is the identity with an all-zero tag, signatures
//! always verify, X25519 is XOR and ML-KEM sends its secret in the clear.
//! It lets a fuzzer's inputs reach the parsers that sit behind MACs and
//! signatures. It is compiled only with the `insecure-fuzzing` feature.

use blake2::digest::{FixedOutput, Update};
use blake2::Blake2s256;
use proto::provider::{
    Aead, Crypto, CryptoError, KemKeyPair, ED25519_PUBLIC_LEN, ED25519_SIGNATURE_LEN, HASH_LEN,
    KEM_CT_LEN, KEM_DK_LEN, KEM_EK_LEN, KEM_ENCAPS_SEED_LEN, KEM_KEYGEN_SEED_LEN, KEM_SS_LEN,
    MAC_LEN, TAG_LEN, X25519_LEN, XNONCE_LEN,
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
