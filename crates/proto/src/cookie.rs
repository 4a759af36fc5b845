//! mac1/mac2 and cookie replies (WireGuard §5.4.4 and §5.4.7), per fragment.
//!
//! Every handshake fragment ends in `mac1 || mac2`. mac1 is keyed by the
//! receiver's static public key, so checking it costs one BLAKE2s and proves
//! the sender at least knows whom it is talking to; it is checked before a
//! fragment takes any memory. When a node is under handshake load it also
//! requires mac2, keyed by a cookie bound to the sender's address, and answers
//! fragments without a valid mac2 with a [cookie reply](CookieChecker::cookie_reply)
//! instead of processing them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;

use crate::provider::{Crypto, MAC_LEN, TAG_LEN, XNONCE_LEN};
use crate::wire::{COOKIE_REPLY_LEN, TYPE_COOKIE_REPLY};

/// Label of the mac1 key derivation.
pub const LABEL_MAC1: &[u8] = b"mac1----";
/// Label of the cookie encryption key derivation.
pub const LABEL_COOKIE: &[u8] = b"cookie--";
/// How long a cookie secret lives (WireGuard's `CookieRefreshTime`).
pub const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(120);
/// An initiator uses a received cookie for this long.
pub const COOKIE_VALIDITY: Duration = Duration::from_secs(120 - 5);

/// `HASH(LABEL_MAC1 || static_public)`: the key of mac1 for messages to that node.
pub fn mac1_key(crypto: &dyn Crypto, static_public: &[u8; 32]) -> [u8; 32] {
    crypto.hash(&[LABEL_MAC1, static_public])
}

/// `HASH(LABEL_COOKIE || static_public)`: the key cookie replies from that node are sealed with.
pub fn cookie_key(crypto: &dyn Crypto, static_public: &[u8; 32]) -> [u8; 32] {
    crypto.hash(&[LABEL_COOKIE, static_public])
}

/// Writes mac1 and mac2 into the last 32 bytes of `datagram`.
pub fn write_macs(
    crypto: &dyn Crypto,
    datagram: &mut [u8],
    mac1_key: &[u8; 32],
    cookie: Option<&[u8; MAC_LEN]>,
) {
    let n = datagram.len();
    let mac1 = crypto.mac(mac1_key, &[&datagram[..n - 2 * MAC_LEN]]);
    datagram[n - 2 * MAC_LEN..n - MAC_LEN].copy_from_slice(&mac1);
    let mac2 = match cookie {
        Some(c) => crypto.mac(c, &[&datagram[..n - MAC_LEN]]),
        None => [0; MAC_LEN],
    };
    datagram[n - MAC_LEN..].copy_from_slice(&mac2);
}

/// The mac1 field of a fragment (its last 32..16 bytes).
pub fn mac1_of(datagram: &[u8]) -> [u8; MAC_LEN] {
    let n = datagram.len();
    let mut m = [0u8; MAC_LEN];
    m.copy_from_slice(&datagram[n - 2 * MAC_LEN..n - MAC_LEN]);
    m
}

/// Whether a fragment must carry mac2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mac2 {
    /// Not under load: mac1 alone.
    NotRequired,
    /// Under load.
    Required {
        /// A fragment without mac2 would get a cookie reply (it is the
        /// first of an initiation).
        may_reply: bool,
    },
}

/// Verdict on a fragment's MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacVerdict {
    /// mac1 (and mac2 if required) verify: process the fragment.
    Valid,
    /// mac1 does not verify: drop silently.
    InvalidMac1,
    /// Under load and mac2 is missing or wrong: answer with a cookie reply.
    CookieRequired,
}

fn address_bytes(addr: &SocketAddr) -> ([u8; 18], usize) {
    let mut out = [0u8; 18];
    match addr {
        SocketAddr::V4(a) => {
            out[..4].copy_from_slice(&a.ip().octets());
            out[4..6].copy_from_slice(&a.port().to_le_bytes());
            (out, 6)
        }
        SocketAddr::V6(a) => {
            out[..16].copy_from_slice(&a.ip().octets());
            out[16..18].copy_from_slice(&a.port().to_le_bytes());
            (out, 18)
        }
    }
}

/// The responder side of the cookie mechanism for one node.
pub struct CookieChecker {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    secret: [u8; 32],
    secret_born: Option<Instant>,
}

impl core::fmt::Debug for CookieChecker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieChecker").finish_non_exhaustive()
    }
}

impl CookieChecker {
    /// A checker for the node whose static public key is `static_public`.
    pub fn new(crypto: &dyn Crypto, static_public: &[u8; 32]) -> Self {
        Self {
            mac1_key: mac1_key(crypto, static_public),
            cookie_key: cookie_key(crypto, static_public),
            secret: [0; 32],
            secret_born: None,
        }
    }

    fn cookie_for(
        &mut self,
        crypto: &dyn Crypto,
        now: Instant,
        rng: &mut dyn CryptoRngCore,
        src: &SocketAddr,
    ) -> [u8; MAC_LEN] {
        let stale = self
            .secret_born
            .is_none_or(|born| now.saturating_duration_since(born) >= COOKIE_SECRET_LIFETIME);
        if stale {
            rng.fill_bytes(&mut self.secret);
            self.secret_born = Some(now);
        }
        let (a, n) = address_bytes(src);
        crypto.mac(&self.secret, &[&a[..n]])
    }

    /// Checks a fragment's MACs, mac2 as `mac2` says.
    ///
    /// Under load mac2 is checked first (a zero mac2, a sender without a
    /// cookie, costs no hashing at all): a fragment without a valid one is
    /// only worth its mac1 (a pass over the fragment) when it may earn a
    /// cookie reply; any other is `CookieRequired` whatever its mac1, so a
    /// flood without cookies costs hashing only within the reply budget.
    pub fn check(
        &mut self,
        crypto: &dyn Crypto,
        now: Instant,
        rng: &mut dyn CryptoRngCore,
        src: &SocketAddr,
        datagram: &[u8],
        mac2: Mac2,
    ) -> MacVerdict {
        let n = datagram.len();
        if n < 2 * MAC_LEN {
            return MacVerdict::InvalidMac1;
        }
        let mac1_valid = |key: &[u8; 32]| {
            let mac1 = crypto.mac(key, &[&datagram[..n - 2 * MAC_LEN]]);
            constant_time_eq(&mac1, &datagram[n - 2 * MAC_LEN..n - MAC_LEN])
        };
        let Mac2::Required { may_reply } = mac2 else {
            return if mac1_valid(&self.mac1_key) {
                MacVerdict::Valid
            } else {
                MacVerdict::InvalidMac1
            };
        };
        // A sender without a cookie leaves mac2 zero: no hashing for that.
        let mac2_field = &datagram[n - MAC_LEN..];
        let mac2_valid = mac2_field.iter().any(|&b| b != 0) && {
            let cookie = self.cookie_for(crypto, now, rng, src);
            let expected = crypto.mac(&cookie, &[&datagram[..n - MAC_LEN]]);
            constant_time_eq(&expected, mac2_field)
        };
        if !mac2_valid && !may_reply {
            return MacVerdict::CookieRequired;
        }
        match (mac1_valid(&self.mac1_key), mac2_valid) {
            (false, _) => MacVerdict::InvalidMac1,
            (true, true) => MacVerdict::Valid,
            (true, false) => MacVerdict::CookieRequired,
        }
    }

    /// Builds the cookie reply to a fragment from `src` whose sender index is
    /// `sender_index`.
    pub fn cookie_reply(
        &mut self,
        crypto: &dyn Crypto,
        now: Instant,
        rng: &mut dyn CryptoRngCore,
        src: &SocketAddr,
        datagram: &[u8],
        sender_index: u32,
    ) -> [u8; COOKIE_REPLY_LEN] {
        let cookie = self.cookie_for(crypto, now, rng, src);
        let mut out = [0u8; COOKIE_REPLY_LEN];
        out[0] = TYPE_COOKIE_REPLY;
        out[4..8].copy_from_slice(&sender_index.to_le_bytes());
        let mut nonce = [0u8; XNONCE_LEN];
        rng.fill_bytes(&mut nonce);
        out[8..8 + XNONCE_LEN].copy_from_slice(&nonce);
        let body = &mut out[8 + XNONCE_LEN..8 + XNONCE_LEN + MAC_LEN];
        body.copy_from_slice(&cookie);
        let tag = crypto.xaead_seal(&self.cookie_key, &nonce, &mac1_of(datagram), body);
        out[8 + XNONCE_LEN + MAC_LEN..].copy_from_slice(&tag);
        out
    }
}

/// Opens a cookie reply from the node whose static key gave `cookie_key`;
/// `sent_mac1` is the mac1 of the fragment it answers.
pub fn open_cookie_reply(
    crypto: &dyn Crypto,
    cookie_key: &[u8; 32],
    sent_mac1: &[u8; MAC_LEN],
    reply: &[u8; COOKIE_REPLY_LEN],
) -> Option<[u8; MAC_LEN]> {
    let mut nonce = [0u8; XNONCE_LEN];
    nonce.copy_from_slice(&reply[8..8 + XNONCE_LEN]);
    let mut cookie = [0u8; MAC_LEN];
    cookie.copy_from_slice(&reply[8 + XNONCE_LEN..8 + XNONCE_LEN + MAC_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&reply[8 + XNONCE_LEN + MAC_LEN..]);
    crypto
        .xaead_open(cookie_key, &nonce, sent_mac1, &mut cookie, &tag)
        .ok()
        .map(|()| cookie)
}

/// Constant-time equality of two byte strings of equal length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
