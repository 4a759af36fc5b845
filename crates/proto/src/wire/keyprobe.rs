//! Key probes (type 6): how a node that knows only a bootstrap member's
//! underlay address learns the static key it needs to start Noise IK with
//! it (`docs/protocol.md` §1.5).
//!
//! ```text
//! request: 6, 0, 0, 0, nonce (16), zeros (44)          = 64 bytes
//! reply:   6, 1, 0, 0, nonce (16), static key (32)     = 52 bytes
//! ```
//!
//! A reply is smaller than the request it answers (no amplification), and
//! carries nothing but the key: the member's certificate arrives only
//! inside the handshake, encrypted, and is checked against the CA there.

use super::{WireError, TYPE_KEY_PROBE};

/// Length of a key request (the padding makes it larger than its reply).
pub const KEY_REQUEST_LEN: usize = 64;
/// Length of a key reply.
pub const KEY_REPLY_LEN: usize = 52;
/// Bytes of the nonce a reply echoes.
pub const KEY_PROBE_NONCE_LEN: usize = 16;

/// Byte 1 of a request.
const REQUEST: u8 = 0;
/// Byte 1 of a reply.
const REPLY: u8 = 1;

/// Whether a type-6 datagram is a request (`true`) or a reply, from byte 1
/// and the length; reserved bytes and a request's padding must be zero.
pub(super) fn check(bytes: &[u8]) -> Result<bool, WireError> {
    if bytes[2..4] != [0, 0] {
        return Err(WireError::ReservedNonZero);
    }
    match (bytes[1], bytes.len()) {
        (REQUEST, KEY_REQUEST_LEN) if bytes[4 + KEY_PROBE_NONCE_LEN..].iter().all(|&b| b == 0) => {
            Ok(true)
        }
        (REQUEST, KEY_REQUEST_LEN) => Err(WireError::ReservedNonZero),
        (REPLY, KEY_REPLY_LEN) => Ok(false),
        (REQUEST | REPLY, len) => Err(WireError::BadLength {
            kind: TYPE_KEY_PROBE,
            len,
        }),
        _ => Err(WireError::UnknownType(TYPE_KEY_PROBE)),
    }
}

/// A checked key request.
#[derive(Debug, Clone, Copy)]
pub struct KeyRequestView<'a> {
    bytes: &'a [u8],
}

impl<'a> KeyRequestView<'a> {
    /// Wraps bytes [`super::Datagram::parse`] checked.
    pub(super) fn new_unchecked(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The nonce the reply must echo.
    pub fn nonce(&self) -> [u8; KEY_PROBE_NONCE_LEN] {
        let mut n = [0u8; KEY_PROBE_NONCE_LEN];
        n.copy_from_slice(&self.bytes[4..4 + KEY_PROBE_NONCE_LEN]);
        n
    }
}

/// A checked key reply.
#[derive(Debug, Clone, Copy)]
pub struct KeyReplyView<'a> {
    bytes: &'a [u8],
}

impl<'a> KeyReplyView<'a> {
    /// Wraps bytes [`super::Datagram::parse`] checked.
    pub(super) fn new_unchecked(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The nonce of the request this answers.
    pub fn nonce(&self) -> [u8; KEY_PROBE_NONCE_LEN] {
        let mut n = [0u8; KEY_PROBE_NONCE_LEN];
        n.copy_from_slice(&self.bytes[4..4 + KEY_PROBE_NONCE_LEN]);
        n
    }

    /// The answering node's X25519 static public key.
    pub fn static_public(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(&self.bytes[4 + KEY_PROBE_NONCE_LEN..KEY_REPLY_LEN]);
        k
    }
}

/// A key request with `nonce`.
pub fn key_request(nonce: [u8; KEY_PROBE_NONCE_LEN]) -> [u8; KEY_REQUEST_LEN] {
    let mut b = [0u8; KEY_REQUEST_LEN];
    b[0] = TYPE_KEY_PROBE;
    b[1] = REQUEST;
    b[4..4 + KEY_PROBE_NONCE_LEN].copy_from_slice(&nonce);
    b
}

/// The reply to a request with `nonce`, carrying `static_public`.
pub fn key_reply(
    nonce: [u8; KEY_PROBE_NONCE_LEN],
    static_public: &[u8; 32],
) -> [u8; KEY_REPLY_LEN] {
    let mut b = [0u8; KEY_REPLY_LEN];
    b[0] = TYPE_KEY_PROBE;
    b[1] = REPLY;
    b[4..4 + KEY_PROBE_NONCE_LEN].copy_from_slice(&nonce);
    b[4 + KEY_PROBE_NONCE_LEN..].copy_from_slice(static_public);
    b
}

#[cfg(test)]
mod tests {
    use super::super::{Datagram, HandshakeDatagram};
    use super::*;

    #[test]
    fn requests_and_replies_round_trip_and_a_reply_is_smaller() {
        const { assert!(KEY_REPLY_LEN < KEY_REQUEST_LEN) };
        let req = key_request([7; 16]);
        let Ok(Datagram::Handshake(HandshakeDatagram::KeyRequest(v))) = Datagram::parse(&req)
        else {
            panic!("request not parsed");
        };
        assert_eq!(v.nonce(), [7; 16]);
        let rep = key_reply([7; 16], &[9; 32]);
        let Ok(Datagram::Handshake(HandshakeDatagram::KeyReply(v))) = Datagram::parse(&rep) else {
            panic!("reply not parsed");
        };
        assert_eq!((v.nonce(), v.static_public()), ([7; 16], [9; 32]));
    }

    #[test]
    fn bad_lengths_subtypes_reserved_bytes_and_padding_are_refused() {
        let req = key_request([1; 16]);
        assert!(Datagram::parse(&req[..63]).is_err(), "short");
        let mut long = req.to_vec();
        long.push(0);
        assert!(Datagram::parse(&long).is_err(), "long");
        for i in [1usize, 2, 3, 40] {
            let mut b = req;
            b[i] = 5;
            assert!(Datagram::parse(&b).is_err(), "byte {i}");
        }
        let rep = key_reply([1; 16], &[2; 32]);
        assert!(Datagram::parse(&rep[..51]).is_err());
    }
}
