//! The cryptographic primitives `proto` needs, as a trait.
//!
//! `proto` never names a cryptography crate. The agent and tools pass a
//! [`Crypto`] implementation from `meshd-crypto` (ring, x25519-dalek,
//! ed25519-dalek, BLAKE2s, libcrux ML-KEM); fuzzers pass that crate's
//! insecure provider so that inputs reach the parsers behind the MACs.
//!
//! Every method is deterministic: randomness is always an argument.

use core::fmt;

/// Length of an X25519 key or shared secret.
pub const X25519_LEN: usize = 32;
/// Length of an AEAD tag (Poly1305).
pub const TAG_LEN: usize = 16;
/// Length of a BLAKE2s-256 digest.
pub const HASH_LEN: usize = 32;
/// Length of a keyed BLAKE2s-128 MAC.
pub const MAC_LEN: usize = 16;
/// Length of an XChaCha20-Poly1305 nonce.
pub const XNONCE_LEN: usize = 24;
/// FIPS 203 ML-KEM-768 encapsulation key length.
pub const KEM_EK_LEN: usize = 1184;
/// FIPS 203 ML-KEM-768 decapsulation key length.
pub const KEM_DK_LEN: usize = 2400;
/// FIPS 203 ML-KEM-768 ciphertext length.
pub const KEM_CT_LEN: usize = 1088;
/// ML-KEM shared secret length.
pub const KEM_SS_LEN: usize = 32;
/// Randomness consumed by ML-KEM key generation (`d || z`).
pub const KEM_KEYGEN_SEED_LEN: usize = 64;
/// Randomness consumed by ML-KEM encapsulation (`m`).
pub const KEM_ENCAPS_SEED_LEN: usize = 32;
/// Ed25519 public key length.
pub const ED25519_PUBLIC_LEN: usize = 32;
/// Ed25519 signature length.
pub const ED25519_SIGNATURE_LEN: usize = 64;

/// A failure inside a primitive. Deliberately coarse: callers map it to the
/// protocol step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// An AEAD tag did not verify.
    Decrypt,
    /// X25519 produced the all-zero output (a low-order peer point).
    LowOrderPoint,
    /// An ML-KEM encapsulation key failed the FIPS 203 modulus check.
    InvalidKemKey,
    /// An Ed25519 public key or signature is malformed or does not verify.
    BadSignature,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Decrypt => "authentication tag did not verify",
            Self::LowOrderPoint => "X25519 with a low-order point",
            Self::InvalidKemKey => "ML-KEM encapsulation key fails the FIPS 203 check",
            Self::BadSignature => "Ed25519 signature does not verify",
        })
    }
}

impl std::error::Error for CryptoError {}

/// The AEAD of a session's transport packets, chosen in the handshake
/// (handshake messages themselves always use ChaCha20-Poly1305, as the Noise
/// protocol name says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// ChaCha20-Poly1305: every node supports it; fastest without AES hardware.
    ChaCha20Poly1305,
    /// AES-256-GCM: chosen when both ends have AES hardware (3× faster here).
    Aes256Gcm,
}

/// Bit of [`Suite::ChaCha20Poly1305`] in a handshake's suite set.
pub const SUITE_CHACHA: u8 = 1;
/// Bit of [`Suite::Aes256Gcm`] in a handshake's suite set.
pub const SUITE_AES: u8 = 2;

impl Suite {
    /// Its bit in a suite set, and its code in message 2.
    pub fn bit(self) -> u8 {
        match self {
            Self::ChaCha20Poly1305 => SUITE_CHACHA,
            Self::Aes256Gcm => SUITE_AES,
        }
    }

    /// From its code.
    pub fn from_bit(b: u8) -> Option<Self> {
        match b {
            SUITE_CHACHA => Some(Self::ChaCha20Poly1305),
            SUITE_AES => Some(Self::Aes256Gcm),
            _ => None,
        }
    }

    /// `"chacha20-poly1305"` or `"aes-256-gcm"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
            Self::Aes256Gcm => "aes-256-gcm",
        }
    }
}

/// An AEAD key prepared once per session direction (ChaCha20-Poly1305 or
/// AES-256-GCM).
///
/// The nonce is the Noise nonce: four zero bytes then the 64-bit counter,
/// little-endian.
pub trait Aead: Send + Sync {
    /// Encrypts `buf` in place and returns the tag.
    fn seal_in_place(&self, counter: u64, ad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN];
    /// Decrypts `buf` in place if `tag` verifies; on error `buf` is garbage.
    fn open_in_place(
        &self,
        counter: u64,
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError>;
}

/// An ML-KEM-768 key pair generated for one handshake. The decapsulation
/// key is erased on drop.
pub struct KemKeyPair {
    /// The encapsulation (public) key.
    pub encapsulation_key: Box<[u8; KEM_EK_LEN]>,
    /// The decapsulation (private) key.
    pub decapsulation_key: Box<[u8; KEM_DK_LEN]>,
}

/// The primitives of the meshd protocol.
pub trait Crypto: Send + Sync {
    /// X25519 public key of `secret`.
    fn x25519_public_key(&self, secret: &[u8; X25519_LEN]) -> [u8; X25519_LEN];
    /// X25519 Diffie-Hellman; rejects an all-zero result.
    fn x25519(
        &self,
        secret: &[u8; X25519_LEN],
        public: &[u8; X25519_LEN],
    ) -> Result<[u8; X25519_LEN], CryptoError>;
    /// BLAKE2s-256 over the concatenation of `parts`.
    fn hash(&self, parts: &[&[u8]]) -> [u8; HASH_LEN];
    /// Keyed BLAKE2s with 16 bytes of output (WireGuard's `MAC`); `key` is at most 32 bytes.
    fn mac(&self, key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN];
    /// A ChaCha20-Poly1305 key.
    fn aead(&self, key: &[u8; 32]) -> Box<dyn Aead>;
    /// A transport key for `suite` (same nonce layout for both suites).
    fn transport_aead(&self, suite: Suite, key: &[u8; 32]) -> Box<dyn Aead>;
    /// Whether this machine has AES hardware (so AES-256-GCM is worth
    /// offering).
    fn aes_hardware(&self) -> bool;
    /// XChaCha20-Poly1305 seal in place (cookie replies).
    fn xaead_seal(
        &self,
        key: &[u8; 32],
        nonce: &[u8; XNONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN];
    /// XChaCha20-Poly1305 open in place (cookie replies).
    fn xaead_open(
        &self,
        key: &[u8; 32],
        nonce: &[u8; XNONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError>;
    /// ML-KEM-768 key generation from `d || z` (FIPS 203 `ML-KEM.KeyGen_internal`).
    fn kem_keypair(&self, seed: &[u8; KEM_KEYGEN_SEED_LEN]) -> KemKeyPair;
    /// ML-KEM-768 encapsulation with randomness `m`; checks the key first.
    fn kem_encapsulate(
        &self,
        encapsulation_key: &[u8; KEM_EK_LEN],
        seed: &[u8; KEM_ENCAPS_SEED_LEN],
    ) -> Result<(Box<[u8; KEM_CT_LEN]>, [u8; KEM_SS_LEN]), CryptoError>;
    /// ML-KEM-768 decapsulation (implicit rejection: a bad ciphertext gives a
    /// pseudorandom secret, never an error).
    fn kem_decapsulate(
        &self,
        decapsulation_key: &[u8; KEM_DK_LEN],
        ciphertext: &[u8; KEM_CT_LEN],
    ) -> [u8; KEM_SS_LEN];
    /// Ed25519 public key of a 32-byte seed.
    fn ed25519_public_key(&self, seed: &[u8; 32]) -> [u8; ED25519_PUBLIC_LEN];
    /// Ed25519 signature.
    fn ed25519_sign(&self, seed: &[u8; 32], message: &[u8]) -> [u8; ED25519_SIGNATURE_LEN];
    /// Strict Ed25519 verification (rejects non-canonical and small-order keys).
    fn ed25519_verify(
        &self,
        public: &[u8; ED25519_PUBLIC_LEN],
        message: &[u8],
        signature: &[u8; ED25519_SIGNATURE_LEN],
    ) -> Result<(), CryptoError>;
}

/// HMAC-BLAKE2s (RFC 2104 with a 64-byte block), as Noise's `HMAC-HASH`.
pub fn hmac(crypto: &dyn Crypto, key: &[u8; HASH_LEN], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    const BLOCK: usize = 64;
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner_parts: [&[u8]; 5] = [&ipad, &[], &[], &[], &[]];
    assert!(
        parts.len() <= 4,
        "hmac takes at most four parts (caller bug)"
    );
    inner_parts[1..=parts.len()].copy_from_slice(parts);
    let inner = crypto.hash(&inner_parts[..=parts.len()]);
    crypto.hash(&[&opad, &inner])
}

/// Noise's `HKDF(chaining_key, input_key_material, 2)`.
pub fn hkdf2(crypto: &dyn Crypto, ck: &[u8; HASH_LEN], ikm: &[u8]) -> [[u8; HASH_LEN]; 2] {
    let temp = hmac(crypto, ck, &[ikm]);
    let out1 = hmac(crypto, &temp, &[&[1]]);
    let out2 = hmac(crypto, &temp, &[&out1, &[2]]);
    [out1, out2]
}

/// Noise's `HKDF(chaining_key, input_key_material, 3)`.
pub fn hkdf3(crypto: &dyn Crypto, ck: &[u8; HASH_LEN], ikm: &[u8]) -> [[u8; HASH_LEN]; 3] {
    let temp = hmac(crypto, ck, &[ikm]);
    let out1 = hmac(crypto, &temp, &[&[1]]);
    let out2 = hmac(crypto, &temp, &[&out1, &[2]]);
    let out3 = hmac(crypto, &temp, &[&out2, &[3]]);
    [out1, out2, out3]
}

impl Drop for KemKeyPair {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.decapsulation_key[..]);
    }
}
