//! Outer datagram formats and dispatch on (type, length) before any crypto.
//!
//! Every datagram starts with a type byte; in cookie replies and transport
//! packets three reserved zero bytes follow (fragments use them for index and
//! count).
//! [`classify`] checks exactly that and the length the type allows; once it
//! returns `Ok`, the fixed-offset reads of the matching view cannot panic.
//! Layouts are specified in `docs/protocol.md`.

use core::fmt;

use crate::provider::{MAC_LEN, TAG_LEN, XNONCE_LEN};

/// Type byte of a handshake initiation (message 1) fragment.
pub const TYPE_INITIATION: u8 = 1;
/// Type byte of a handshake response (message 2) fragment.
pub const TYPE_RESPONSE: u8 = 2;
/// Type byte of a cookie reply.
pub const TYPE_COOKIE_REPLY: u8 = 3;
/// Type byte of a transport (data) packet.
pub const TYPE_TRANSPORT: u8 = 4;
/// Type byte of a relayed datagram: a relay header, then a whole datagram of
/// type 1–4 between two other nodes.
pub const TYPE_RELAY: u8 = 5;

/// Relay header: type, TTL, 2 reserved, destination node id, origin node id.
pub const RELAY_HEADER_LEN: usize = 20;
/// Largest TTL a relayed datagram may start with.
pub const MAX_RELAY_TTL: u8 = 8;

/// Transport header: type, 3 reserved, receiver index, counter.
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Transport overhead: header plus tag.
pub const TRANSPORT_OVERHEAD: usize = TRANSPORT_HEADER_LEN + TAG_LEN;
/// Cookie reply: type, 3 reserved, receiver index, nonce, encrypted cookie, tag.
pub const COOKIE_REPLY_LEN: usize = 8 + XNONCE_LEN + MAC_LEN + TAG_LEN;
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

/// What a datagram claims to be, after the (type, length) check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A fragment of message 1.
    Initiation,
    /// A fragment of message 2.
    Response,
    /// A cookie reply.
    CookieReply,
    /// A transport packet.
    Transport,
    /// A relayed datagram (header checked; the inner datagram is not).
    Relay,
}

/// Why a datagram was dropped before any cryptography.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than the 4-byte common header.
    TooShort,
    /// A type byte meshd does not know.
    UnknownType(u8),
    /// A reserved byte is not zero.
    ReservedNonZero,
    /// The length is impossible for the type.
    BadLength {
        /// The type byte.
        kind: u8,
        /// The datagram length.
        len: usize,
    },
    /// A fragment header field is inconsistent (index, count, message length).
    BadFragmentHeader,
    /// A relay header's TTL is 0 or above [`MAX_RELAY_TTL`].
    BadTtl(u8),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => f.write_str("datagram shorter than 4 bytes"),
            Self::UnknownType(t) => write!(f, "unknown message type {t}"),
            Self::ReservedNonZero => f.write_str("reserved header bytes are not zero"),
            Self::BadLength { kind, len } => write!(f, "length {len} impossible for type {kind}"),
            Self::BadFragmentHeader => f.write_str("inconsistent handshake fragment header"),
            Self::BadTtl(t) => write!(f, "relay TTL {t} outside 1..={MAX_RELAY_TTL}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Dispatch on (type, length). Cheap; no allocation, no crypto.
pub fn classify(datagram: &[u8]) -> Result<MessageKind, WireError> {
    if datagram.len() < 4 {
        return Err(WireError::TooShort);
    }
    let len = datagram.len();
    match datagram[0] {
        t @ (TYPE_INITIATION | TYPE_RESPONSE) => {
            if !(FRAGMENT_HEADER_LEN + FRAGMENT_TRAILER_LEN + 1..=MAX_HANDSHAKE_DATAGRAM)
                .contains(&len)
            {
                return Err(WireError::BadLength { kind: t, len });
            }
            Ok(if t == TYPE_INITIATION {
                MessageKind::Initiation
            } else {
                MessageKind::Response
            })
        }
        // Bytes 1..4 are index, count and a reserved zero in fragments
        // (checked by `FragmentView`); in the other types all three are reserved.
        TYPE_COOKIE_REPLY | TYPE_TRANSPORT if datagram[1..4] != [0, 0, 0] => {
            Err(WireError::ReservedNonZero)
        }
        TYPE_COOKIE_REPLY if len == COOKIE_REPLY_LEN => Ok(MessageKind::CookieReply),
        TYPE_TRANSPORT if len >= TRANSPORT_OVERHEAD => Ok(MessageKind::Transport),
        t @ (TYPE_COOKIE_REPLY | TYPE_TRANSPORT) => Err(WireError::BadLength { kind: t, len }),
        TYPE_RELAY if datagram[2..4] != [0, 0] => Err(WireError::ReservedNonZero),
        TYPE_RELAY if datagram[1] == 0 || datagram[1] > MAX_RELAY_TTL => {
            Err(WireError::BadTtl(datagram[1]))
        }
        // The inner datagram needs at least its own 4-byte common header.
        TYPE_RELAY if len >= RELAY_HEADER_LEN + 4 => Ok(MessageKind::Relay),
        TYPE_RELAY => Err(WireError::BadLength {
            kind: TYPE_RELAY,
            len,
        }),
        t => Err(WireError::UnknownType(t)),
    }
}

/// A node's id on the wire: the first 8 bytes (little-endian) of its X25519
/// static public key. Ids appear in relay headers and link-state adverts;
/// sessions still authenticate the full key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The id of the node with this static key.
    pub fn of(static_public: &[u8; 32]) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(&static_public[..8]);
        Self(u64::from_le_bytes(b))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The fields of a relay header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayHeader {
    /// Hops left; a relay decrements it and drops the datagram at zero.
    pub ttl: u8,
    /// The node the inner datagram is for.
    pub dst: NodeId,
    /// The node that sent the inner datagram.
    pub src: NodeId,
}

impl RelayHeader {
    /// Parses a relay datagram's header (checks type, TTL, reserved bytes, length).
    pub fn parse(datagram: &[u8]) -> Result<Self, WireError> {
        if classify(datagram)? != MessageKind::Relay {
            return Err(WireError::UnknownType(datagram[0]));
        }
        let id = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&datagram[at..at + 8]);
            NodeId(u64::from_le_bytes(b))
        };
        Ok(Self {
            ttl: datagram[1],
            dst: id(4),
            src: id(12),
        })
    }

    /// Writes the header into `out[..RELAY_HEADER_LEN]`.
    pub fn write(&self, out: &mut [u8]) {
        out[0] = TYPE_RELAY;
        out[1] = self.ttl;
        out[2..4].fill(0);
        out[4..12].copy_from_slice(&self.dst.0.to_le_bytes());
        out[12..20].copy_from_slice(&self.src.0.to_le_bytes());
    }
}

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
            receiver_index: u32::from_le_bytes([
                datagram[4],
                datagram[5],
                datagram[6],
                datagram[7],
            ]),
            counter: u64::from_le_bytes([
                datagram[8],
                datagram[9],
                datagram[10],
                datagram[11],
                datagram[12],
                datagram[13],
                datagram[14],
                datagram[15],
            ]),
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
    fn classify_by_type_and_length() {
        assert_eq!(classify(&[]), Err(WireError::TooShort));
        assert_eq!(classify(&[9, 0, 0, 0]), Err(WireError::UnknownType(9)));
        assert_eq!(
            classify(&[4, 0, 0, 0]),
            Err(WireError::BadLength { kind: 4, len: 4 })
        );
        assert_eq!(classify(&[4; 40]), Err(WireError::ReservedNonZero));
        let mut t = [0u8; 32];
        t[0] = 4;
        assert_eq!(classify(&t), Ok(MessageKind::Transport));
        let mut c = [0u8; COOKIE_REPLY_LEN];
        c[0] = 3;
        assert_eq!(classify(&c), Ok(MessageKind::CookieReply));
        assert!(classify(&c[..63]).is_err());
        let f = [1u8; MAX_HANDSHAKE_DATAGRAM + 1];
        assert!(matches!(classify(&f), Err(WireError::BadLength { .. })));
    }

    #[test]
    fn relay_header_round_trip_and_checks() {
        let h = RelayHeader {
            ttl: 3,
            dst: NodeId(7),
            src: NodeId(u64::MAX),
        };
        let mut buf = [0u8; RELAY_HEADER_LEN + 32];
        h.write(&mut buf);
        assert_eq!(RelayHeader::parse(&buf), Ok(h));
        assert_eq!(
            classify(&buf[..RELAY_HEADER_LEN + 3]),
            Err(WireError::BadLength {
                kind: TYPE_RELAY,
                len: RELAY_HEADER_LEN + 3
            })
        );
        buf[1] = 0;
        assert!(classify(&buf).is_err(), "TTL 0 is never forwarded");
        buf[1] = MAX_RELAY_TTL + 1;
        assert!(classify(&buf).is_err(), "TTL above the maximum");
        buf[1] = 1;
        buf[3] = 1;
        assert_eq!(classify(&buf), Err(WireError::ReservedNonZero));
    }

    #[test]
    fn transport_header_round_trip() {
        let h = TransportHeader {
            receiver_index: 0xdead_beef,
            counter: 0x0102_0304_0506_0708,
        };
        let mut buf = [0u8; 32];
        h.write(&mut buf);
        assert_eq!(TransportHeader::parse(&buf), Ok(h));
    }
}
