//! Handshake fragments (types 1 and 2): `type, index, count, reserved,
//! sender index (LE32), receiver index (LE32), message length (LE16),
//! 2 reserved`, a slice of the handshake message, then `mac1 || mac2`
//! (`docs/protocol.md` §1.1). Splitting and reassembly are in
//! [`crate::fragment`].

use super::{classify, u32_le, MessageKind, WireError, TYPE_INITIATION, TYPE_RESPONSE};
use crate::provider::MAC_LEN;

/// Largest UDP payload meshd sends in a handshake datagram: IPv6 minimum MTU
/// (1280) minus IPv6 (40) and UDP (8) headers.
pub const MAX_HANDSHAKE_DATAGRAM: usize = 1232;
/// Handshake fragment header length.
pub const FRAGMENT_HEADER_LEN: usize = 16;
/// mac1 and mac2 after each fragment's payload.
pub const FRAGMENT_TRAILER_LEN: usize = 2 * MAC_LEN;
/// Largest payload in one fragment.
pub const MAX_FRAGMENT_PAYLOAD: usize =
    MAX_HANDSHAKE_DATAGRAM - FRAGMENT_HEADER_LEN - FRAGMENT_TRAILER_LEN;
/// Most fragments in one handshake message.
pub const MAX_FRAGMENTS: usize = 4;
/// Largest reassembled handshake message.
pub const MAX_MESSAGE_LEN: usize = MAX_FRAGMENTS * MAX_FRAGMENT_PAYLOAD;

/// A checked view over one fragment datagram. All header fields are
/// consistent once [`FragmentView::new_checked`] returns.
#[derive(Debug, Clone, Copy)]
pub struct FragmentView<'a> {
    bytes: &'a [u8],
    kind: MessageKind,
    index: u8,
    count: u8,
    sender_index: u32,
    receiver_index: u32,
    message_len: usize,
}

impl<'a> FragmentView<'a> {
    /// Validates the header of a handshake fragment datagram.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        let kind = classify(bytes)?;
        if !matches!(kind, MessageKind::Initiation | MessageKind::Response) {
            return Err(WireError::UnknownType(bytes[0]));
        }
        let index = bytes[1];
        let count = bytes[2];
        if bytes[3] != 0 || bytes[14] != 0 || bytes[15] != 0 {
            return Err(WireError::ReservedNonZero);
        }
        let sender_index = u32_le(bytes, 4);
        let receiver_index = u32_le(bytes, 8);
        let message_len = usize::from(u16::from_le_bytes([bytes[12], bytes[13]]));
        let payload_len = bytes.len() - FRAGMENT_HEADER_LEN - FRAGMENT_TRAILER_LEN;
        let expected_count = message_len.div_ceil(MAX_FRAGMENT_PAYLOAD);
        let ok = message_len > 0
            && message_len <= MAX_MESSAGE_LEN
            && usize::from(count) == expected_count
            && index < count
            && (kind == MessageKind::Response || receiver_index == 0)
            && payload_len
                == if usize::from(index) + 1 == usize::from(count) {
                    message_len - usize::from(index) * MAX_FRAGMENT_PAYLOAD
                } else {
                    MAX_FRAGMENT_PAYLOAD
                };
        if !ok {
            return Err(WireError::BadFragmentHeader);
        }
        Ok(Self {
            bytes,
            kind,
            index,
            count,
            sender_index,
            receiver_index,
            message_len,
        })
    }

    /// Initiation or response.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The sender's handshake index.
    pub fn sender_index(&self) -> u32 {
        self.sender_index
    }

    /// The receiver's index (0 in an initiation).
    pub fn receiver_index(&self) -> u32 {
        self.receiver_index
    }

    /// This fragment's position.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Fragments in the message.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// Length of the whole message.
    pub fn message_len(&self) -> usize {
        self.message_len
    }

    /// The whole datagram.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The fragment's slice of the message.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[FRAGMENT_HEADER_LEN..self.bytes.len() - FRAGMENT_TRAILER_LEN]
    }
}

/// Writes a fragment header into `out[..FRAGMENT_HEADER_LEN]`. `kind` is
/// [`MessageKind::Initiation`] or [`MessageKind::Response`].
pub fn write_header(
    out: &mut [u8],
    kind: MessageKind,
    (index, count): (u8, u8),
    (sender_index, receiver_index): (u32, u32),
    message_len: usize,
) {
    out[0] = match kind {
        MessageKind::Initiation => TYPE_INITIATION,
        _ => TYPE_RESPONSE,
    };
    out[1] = index;
    out[2] = count;
    out[3] = 0;
    out[4..8].copy_from_slice(&sender_index.to_le_bytes());
    out[8..12].copy_from_slice(&receiver_index.to_le_bytes());
    out[12..14].copy_from_slice(&(message_len as u16).to_le_bytes());
    out[14..16].fill(0);
}
