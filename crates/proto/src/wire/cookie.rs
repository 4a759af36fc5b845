//! Cookie replies (type 3): `type, 3 reserved, receiver index (LE32),
//! nonce (24), encrypted cookie (16), tag (16)` (`docs/protocol.md` §1.2).

use super::{classify, u32_le, MessageKind, WireError};
use crate::provider::{MAC_LEN, TAG_LEN, XNONCE_LEN};

/// Cookie reply: type, 3 reserved, receiver index, nonce, encrypted cookie, tag.
pub const COOKIE_REPLY_LEN: usize = 8 + XNONCE_LEN + MAC_LEN + TAG_LEN;

/// A checked cookie reply.
#[derive(Debug, Clone, Copy)]
pub struct CookieReplyView<'a> {
    bytes: &'a [u8; COOKIE_REPLY_LEN],
}

impl<'a> CookieReplyView<'a> {
    /// Checks type, reserved bytes and the exact length.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        if classify(bytes)? != MessageKind::CookieReply {
            return Err(WireError::UnknownType(bytes[0]));
        }
        let bytes = bytes.try_into().map_err(|_| WireError::BadLength {
            kind: bytes[0],
            len: bytes.len(),
        })?;
        Ok(Self { bytes })
    }

    /// The index of the handshake this reply answers (the initiator's).
    pub fn receiver_index(&self) -> u32 {
        u32_le(self.bytes, 4)
    }

    /// The whole datagram.
    pub fn bytes(&self) -> &'a [u8; COOKIE_REPLY_LEN] {
        self.bytes
    }
}
