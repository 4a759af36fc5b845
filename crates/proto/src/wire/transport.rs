//! Transport packets (type 4): `type, 3 reserved, receiver index (LE32),
//! counter (LE64)`, then the sealed payload and its 16-byte tag
//! (`docs/protocol.md` §1.3).

use super::{classify, u32_le, u64_le, MessageKind, WireError, TYPE_TRANSPORT};
use crate::provider::TAG_LEN;

/// Transport header: type, 3 reserved, receiver index, counter.
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Transport overhead: header plus tag.
pub const TRANSPORT_OVERHEAD: usize = TRANSPORT_HEADER_LEN + TAG_LEN;

/// The fields of a transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportHeader {
    /// The receiver's session index.
    pub receiver_index: u32,
    /// The packet counter (the AEAD nonce).
    pub counter: u64,
}

impl TransportHeader {
    /// Parses a transport datagram's header (checks type, reserved bytes, length).
    pub fn parse(datagram: &[u8]) -> Result<Self, WireError> {
        if classify(datagram)? != MessageKind::Transport {
            return Err(WireError::UnknownType(datagram[0]));
        }
        Ok(Self {
            receiver_index: u32_le(datagram, 4),
            counter: u64_le(datagram, 8),
        })
    }

    /// Writes the header into `out[..16]`.
    pub fn write(&self, out: &mut [u8]) {
        out[0] = TYPE_TRANSPORT;
        out[1..4].fill(0);
        out[4..8].copy_from_slice(&self.receiver_index.to_le_bytes());
        out[8..16].copy_from_slice(&self.counter.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_header_round_trip() {
        let h = TransportHeader {
            receiver_index: 0xdead_beef,
            counter: 0x0102_0304_0506_0708,
        };
        let mut buf = [0u8; 32];
        h.write(&mut buf);
        assert_eq!(TransportHeader::parse(&buf), Ok(h));
        buf[0] = 3;
        assert!(TransportHeader::parse(&buf).is_err());
    }
}
