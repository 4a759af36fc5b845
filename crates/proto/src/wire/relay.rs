//! Relayed datagrams (type 5): `type, TTL, 2 reserved, destination node id
//! (LE64), origin node id (LE64)`, then a whole datagram of type 1–4 between
//! origin and destination, which relays never open (`docs/protocol.md` §1.4).

use super::{classify, u64_le, MessageKind, NodeId, WireError, TYPE_RELAY};

/// Relay header: type, TTL, 2 reserved, destination node id, origin node id.
pub const RELAY_HEADER_LEN: usize = 20;
/// Largest TTL a relayed datagram may start with: 15 relays, room for the
/// diameter of a sparse backbone of hundreds of relays plus a stub at each end.
pub const MAX_RELAY_TTL: u8 = 16;

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
    /// A header for a datagram `src` sends to `dst` through relays.
    pub fn new(src: NodeId, dst: NodeId) -> Self {
        Self {
            ttl: MAX_RELAY_TTL,
            dst,
            src,
        }
    }

    /// Parses a relay datagram's header (checks type, TTL, reserved bytes, length).
    pub fn parse(datagram: &[u8]) -> Result<Self, WireError> {
        if classify(datagram)? != MessageKind::Relay {
            return Err(WireError::UnknownType(datagram[0]));
        }
        Ok(Self {
            ttl: datagram[1],
            dst: NodeId(u64_le(datagram, 4)),
            src: NodeId(u64_le(datagram, 12)),
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

    /// The header one hop further on: `None` when the TTL runs out here.
    pub fn forwarded(&self) -> Option<Self> {
        (self.ttl > 1).then_some(Self {
            ttl: self.ttl - 1,
            ..*self
        })
    }

    /// `datagram` behind this header, in a new buffer.
    pub fn wrap(&self, datagram: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; RELAY_HEADER_LEN + datagram.len()];
        self.write(&mut v);
        v[RELAY_HEADER_LEN..].copy_from_slice(datagram);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn forwarding_decrements_the_ttl_and_stops_at_one() {
        let h = RelayHeader::new(NodeId(1), NodeId(2));
        assert_eq!(h.ttl, MAX_RELAY_TTL);
        let next = h.forwarded().expect("ttl left");
        assert_eq!(
            (next.ttl, next.dst, next.src),
            (MAX_RELAY_TTL - 1, h.dst, h.src)
        );
        assert_eq!(RelayHeader { ttl: 1, ..h }.forwarded(), None);
        let w = h.wrap(&[4, 0, 0, 0]);
        assert_eq!(RelayHeader::parse(&w), Ok(h));
        assert_eq!(&w[RELAY_HEADER_LEN..], &[4, 0, 0, 0]);
    }
}
