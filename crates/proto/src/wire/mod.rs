//! The wire layer: checked views over every datagram meshd sends, and over
//! the IP packets it carries ([`ip`]).
//!
//! Every datagram starts with a type byte; in cookie replies and transport
//! packets three reserved zero bytes follow (fragments use them for index
//! and count). [`Datagram::parse`] checks type, length and every header field
//! once, before any cryptography, and hands back a typed view; once it
//! returns `Ok`, the fixed-offset reads of that view cannot panic. The rest
//! of the crate takes the view and never parses the same header again.
//! Layouts are specified in `docs/protocol.md` §1.
//!
//! | type | view | module |
//! |---|---|---|
//! | 1, 2 | [`FragmentView`] (handshake fragment) | [`fragment`] |
//! | 3 | [`CookieReplyView`] | [`cookie`] |
//! | 4 | [`TransportHeader`] | [`transport`] |
//! | 5 | [`RelayHeader`] (the inner datagram is parsed on its own) | [`relay`] |
//! | 6 | [`KeyRequestView`], [`KeyReplyView`] (a bootstrap's key) | [`keyprobe`] |
//!
//! Control messages travel inside transport packets; their codec is
//! [`crate::control`].

use core::fmt;
use std::net::SocketAddr;

pub mod cookie;
pub mod fragment;
pub mod ip;
pub mod keyprobe;
pub mod relay;
pub mod transport;

pub use cookie::{CookieReplyView, COOKIE_REPLY_LEN};
pub use fragment::{
    FragmentView, FRAGMENT_HEADER_LEN, FRAGMENT_TRAILER_LEN, MAX_FRAGMENTS, MAX_FRAGMENT_PAYLOAD,
    MAX_HANDSHAKE_DATAGRAM,
};
pub use keyprobe::{
    key_reply, key_request, KeyReplyView, KeyRequestView, KEY_PROBE_NONCE_LEN, KEY_REPLY_LEN,
    KEY_REQUEST_LEN,
};
pub use relay::{RelayHeader, MAX_RELAY_TTL, RELAY_HEADER_LEN};
pub use transport::{TransportHeader, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};

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
/// Type byte of a key probe: a request for a node's static key, or the
/// answer (byte 1 tells them apart).
pub const TYPE_KEY_PROBE: u8 = 6;

/// Outer IPv4 + UDP header bytes in front of every datagram on the underlay.
pub const UDP_IPV4_OVERHEAD: usize = 20 + 8;
/// Outer IPv6 + UDP header bytes.
pub const UDP_IPV6_OVERHEAD: usize = 40 + 8;

/// Bytes the underlay's IP and UDP headers add to a datagram sent to `dst`.
pub fn udp_overhead(dst: &SocketAddr) -> usize {
    if dst.is_ipv4() {
        UDP_IPV4_OVERHEAD
    } else {
        UDP_IPV6_OVERHEAD
    }
}

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
    /// A request for the node's static key.
    KeyRequest,
    /// The answer to a key request.
    KeyReply,
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

/// Dispatch on (type, length). Cheap; no allocation, no crypto. Only the
/// common header is checked; [`Datagram::parse`] checks the rest.
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
        TYPE_KEY_PROBE => Ok(if keyprobe::check(datagram)? {
            MessageKind::KeyRequest
        } else {
            MessageKind::KeyReply
        }),
        t => Err(WireError::UnknownType(t)),
    }
}

/// A datagram whose every header field was checked: the one parse a
/// received datagram gets.
#[derive(Debug, Clone, Copy)]
pub enum Datagram<'a> {
    /// A transport packet (the header; payload and tag follow it, opened in
    /// place).
    Transport(TransportHeader),
    /// A relayed datagram: the header; the inner datagram starts at
    /// [`RELAY_HEADER_LEN`] and is parsed on its own.
    Relay(RelayHeader),
    /// A handshake fragment or cookie reply (read, never changed in place).
    Handshake(HandshakeDatagram<'a>),
}

/// The handshake kinds of [`Datagram`].
#[derive(Debug, Clone, Copy)]
pub enum HandshakeDatagram<'a> {
    /// A fragment of message 1.
    Initiation(FragmentView<'a>),
    /// A fragment of message 2.
    Response(FragmentView<'a>),
    /// A cookie reply.
    CookieReply(CookieReplyView<'a>),
    /// A request for our static key.
    KeyRequest(KeyRequestView<'a>),
    /// The answer to our key request.
    KeyReply(KeyReplyView<'a>),
}

impl<'a> Datagram<'a> {
    /// Checks `bytes` and returns the view of what it is.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        use HandshakeDatagram as H;
        Ok(match classify(bytes)? {
            MessageKind::Transport => Self::Transport(TransportHeader::parse(bytes)?),
            MessageKind::Relay => Self::Relay(RelayHeader::parse(bytes)?),
            MessageKind::Initiation => {
                Self::Handshake(H::Initiation(FragmentView::new_checked(bytes)?))
            }
            MessageKind::Response => {
                Self::Handshake(H::Response(FragmentView::new_checked(bytes)?))
            }
            MessageKind::CookieReply => {
                Self::Handshake(H::CookieReply(CookieReplyView::new_checked(bytes)?))
            }
            MessageKind::KeyRequest => {
                Self::Handshake(H::KeyRequest(KeyRequestView::new_unchecked(bytes)))
            }
            MessageKind::KeyReply => {
                Self::Handshake(H::KeyReply(KeyReplyView::new_unchecked(bytes)))
            }
        })
    }

    /// Which kind of datagram it is.
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Transport(_) => MessageKind::Transport,
            Self::Relay(_) => MessageKind::Relay,
            Self::Handshake(HandshakeDatagram::Initiation(_)) => MessageKind::Initiation,
            Self::Handshake(HandshakeDatagram::Response(_)) => MessageKind::Response,
            Self::Handshake(HandshakeDatagram::CookieReply(_)) => MessageKind::CookieReply,
            Self::Handshake(HandshakeDatagram::KeyRequest(_)) => MessageKind::KeyRequest,
            Self::Handshake(HandshakeDatagram::KeyReply(_)) => MessageKind::KeyReply,
        }
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

/// Little-endian integer reads at offsets a view has already checked.
pub(crate) fn u32_le(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_le(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
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
    fn parse_gives_the_view_of_each_kind() {
        let mut t = [0u8; 40];
        TransportHeader {
            receiver_index: 9,
            counter: 3,
        }
        .write(&mut t);
        assert!(matches!(
            Datagram::parse(&t),
            Ok(Datagram::Transport(TransportHeader {
                receiver_index: 9,
                counter: 3
            }))
        ));
        let mut c = [0u8; COOKIE_REPLY_LEN];
        c[0] = TYPE_COOKIE_REPLY;
        c[4] = 7;
        match Datagram::parse(&c) {
            Ok(Datagram::Handshake(HandshakeDatagram::CookieReply(v))) => {
                assert_eq!(v.receiver_index(), 7)
            }
            other => panic!("{other:?}"),
        }
        // A fragment header that passes `classify` but not the full check.
        let mut f = [0u8; 100];
        f[0] = TYPE_INITIATION;
        assert_eq!(classify(&f), Ok(MessageKind::Initiation));
        assert_eq!(
            Datagram::parse(&f).map(|d| d.kind()),
            Err(WireError::BadFragmentHeader)
        );
    }

    #[test]
    fn udp_overhead_by_family() {
        let v4: SocketAddr = "198.18.0.1:1".parse().expect("address");
        let v6: SocketAddr = "[fd00::1]:1".parse().expect("address");
        assert_eq!(udp_overhead(&v4), 28);
        assert_eq!(udp_overhead(&v6), 48);
    }
}
