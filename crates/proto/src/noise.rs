//! The Noise symmetric state (Noise spec rev. 34, section 5.2) for
//! `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`, over a [`Crypto`] provider.
//!
//! Only what the IKpsk2 pattern uses is here. Byte-for-byte agreement with
//! snow is checked by a differential test in `meshd-crypto`.

use crate::provider::{hkdf2, hkdf3, Crypto, CryptoError, HASH_LEN, TAG_LEN};

/// The Noise protocol name; its BLAKE2s hash is the initial `h` and `ck`.
pub const PROTOCOL_NAME: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";

/// Noise `SymmetricState` with an optional cipher key.
pub(crate) struct SymmetricState {
    ck: [u8; HASH_LEN],
    h: [u8; HASH_LEN],
    k: Option<[u8; 32]>,
    n: u64,
}

impl SymmetricState {
    /// `InitializeSymmetric(protocol_name)` then `MixHash(prologue)`.
    pub(crate) fn new(crypto: &dyn Crypto, prologue: &[u8]) -> Self {
        // The name is longer than HASHLEN, so h = HASH(name).
        let h = crypto.hash(&[PROTOCOL_NAME]);
        let mut s = Self {
            ck: h,
            h,
            k: None,
            n: 0,
        };
        s.mix_hash(crypto, prologue);
        s
    }

    pub(crate) fn mix_hash(&mut self, crypto: &dyn Crypto, data: &[u8]) {
        self.h = crypto.hash(&[&self.h, data]);
    }

    pub(crate) fn mix_key(&mut self, crypto: &dyn Crypto, ikm: &[u8]) {
        let [ck, k] = hkdf2(crypto, &self.ck, ikm);
        self.ck = ck;
        self.k = Some(k);
        self.n = 0;
    }

    pub(crate) fn mix_key_and_hash(&mut self, crypto: &dyn Crypto, ikm: &[u8]) {
        let [ck, h, k] = hkdf3(crypto, &self.ck, ikm);
        self.ck = ck;
        self.mix_hash(crypto, &h);
        self.k = Some(k);
        self.n = 0;
    }

    /// `EncryptAndHash`: `buf[..len]` is the plaintext, `buf` must have
    /// `TAG_LEN` spare bytes after it when a key is set. Returns the output length.
    pub(crate) fn encrypt_and_hash(
        &mut self,
        crypto: &dyn Crypto,
        buf: &mut [u8],
        len: usize,
    ) -> usize {
        let out_len = match &self.k {
            Some(k) => {
                let aead = crypto.aead(k);
                let tag = aead.seal_in_place(self.n, &self.h, &mut buf[..len]);
                buf[len..len + TAG_LEN].copy_from_slice(&tag);
                self.n += 1;
                len + TAG_LEN
            }
            None => len,
        };
        self.mix_hash_of(crypto, buf, out_len);
        out_len
    }

    /// `DecryptAndHash` in place; returns the plaintext length.
    pub(crate) fn decrypt_and_hash(
        &mut self,
        crypto: &dyn Crypto,
        buf: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let Some(k) = self.k else {
            self.mix_hash(crypto, buf);
            return Ok(buf.len());
        };
        if buf.len() < TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let new_h = crypto.hash(&[&self.h, buf]);
        let pt_len = buf.len() - TAG_LEN;
        let (ct, tag) = buf.split_at_mut(pt_len);
        let mut tag_arr = [0u8; TAG_LEN];
        tag_arr.copy_from_slice(tag);
        let aead = crypto.aead(&k);
        aead.open_in_place(self.n, &self.h, ct, &tag_arr)?;
        self.n += 1;
        self.h = new_h;
        Ok(pt_len)
    }

    fn mix_hash_of(&mut self, crypto: &dyn Crypto, buf: &[u8], len: usize) {
        self.h = crypto.hash(&[&self.h, &buf[..len]]);
    }

    /// The handshake hash `h` (channel binding).
    pub(crate) fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.h
    }

    /// `Split()`: the initiator-to-responder and responder-to-initiator keys.
    pub(crate) fn split(&self, crypto: &dyn Crypto) -> ([u8; 32], [u8; 32]) {
        let [k1, k2] = hkdf2(crypto, &self.ck, &[]);
        (k1, k2)
    }
}

impl Drop for SymmetricState {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.ck.zeroize();
        self.h.zeroize();
        if let Some(k) = self.k.as_mut() {
            k.zeroize();
        }
    }
}
