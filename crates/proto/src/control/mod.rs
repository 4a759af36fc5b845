//! Control messages: plaintexts of transport packets that are not IP packets.
//!
//! A transport plaintext whose first byte is below `0x40` (an IP packet's
//! first nibble is 4 or 6) is a control message; the first byte is its kind.
//! Control messages therefore enjoy the session's encryption, replay window
//! and peer authentication, and a relay cannot read or forge them.
//!
//! | kind | message | body |
//! |---|---|---|
//! | 1 | probe | 3 reserved, sequence u32 |
//! | 2 | probe reply | 3 reserved, sequence u32 (echoed) |
//! | 3 | link-state advert | flags u8, entry count u16, origin u64, sequence u64, entries, Ed25519 signature (64) |
//! | 4 | sync request | 3 reserved |
//! | 5 | bundle offer | bundle kind u8, 2 reserved, length u32, version u64 |
//! | 6 | bundle request | bundle kind u8, 2 reserved, offset u32, version u64 |
//! | 7 | bundle chunk | bundle kind u8, 2 reserved, offset u32, version u64, total u32, 1..=1024 bytes |
//! | 8 | certificate request | 3 reserved, node id u64 |
//! | 9 | certificate | 3 reserved, a node certificate's encoding (≤ 1024 bytes) |
//! | 10 | path MTU probe | 3 reserved, sequence u32, zero padding to the size probed |
//! | 11 | path MTU probe reply | 3 reserved, sequence u32 (echoed) |
//! | 12 | observed address | 1 reserved, port u16, address (16) |
//! | 13 | punch | flags u8, candidate count u8, 1 reserved, candidates (18 each), zero padding to 320 bytes |
//! | 14 | member lookup | what u8 (1 address, 2 name), length u8, 1 reserved, the address (16, IPv4 mapped) or name (1–63 bytes) |
//! | 15 | link-state acknowledgement | flags u8, entry count u16, entries: origin u64, sequence u64 (16 each, at most 64) |
//! | 16 | accusation (signed alert) | flags u8, scenario length u8, 1 reserved, accuser u64, accused u64, sequence u64, since u64, expires u64, certificate length u16, 2 reserved, scenario (1–32 ASCII), accuser's certificate, Ed25519 signature (64) |
//!
//! A link-state entry is neighbour u64, RTT in µs u32, loss in ‰ u16,
//! flags u16 (16 bytes); flag bit 0 means the link recently came back and is
//! in its hold-down, every other bit is reserved. An advert's flag bit 0
//! (`stub`) says its origin does not relay: nobody routes through it, and its
//! advert is flooded only towards nodes that do relay; bit 1 (`truncated`)
//! says the origin has more links up than the advert lists (it lists at most
//! [`MAX_ADVERT_ENTRIES`], relays first); bit 2 (`no transit`) says the
//! origin holds full link state but carries no traffic for others (it is
//! behind a NAT): paths may end at it, none passes through it; every other
//! advert flag bit is reserved. Integers are little-endian. [`Control::decode`]
//! checks every length and reserved byte; it cannot panic.
//!
//! An advert is signed by its origin's advert key (named in the origin's
//! certificate) over [`ADVERT_SIGNING_CONTEXT`] and the advert's bytes up to
//! the signature, so a node that floods it on can neither alter nor forge
//! it. A node that holds no certificate for an advert's origin asks the
//! neighbour that sent it (certificate request), which answers with the
//! certificate it verified the advert with.
//!
//! An accusation says its accuser quarantines the accused (flag bit 0,
//! `withdrawn`: no longer); since and expires are Unix seconds, the
//! scenario is letters, digits, `-` and `_`. It is signed by the accuser's
//! advert key over [`ACCUSATION_SIGNING_CONTEXT`] and its bytes up to the
//! signature, carries the accuser's certificate, and is flooded unchanged
//! (`crate::quorum` says what receivers make of it).
//!
//! An underlay address (observed address, punch candidates) is a port u16
//! and 16 address bytes: an IPv6 address, or an IPv4 one mapped into IPv6
//! (`::ffff:a.b.c.d`). Observed address: the address a direct neighbour's
//! probes come from, as the prober sees it (the sender's reflexive address
//! when a NAT is between them). Punch: the sender's candidate endpoints
//! (at most [`MAX_CANDIDATES`]); flag bit 0 (`reply`) says it answers a
//! punch, bit 1 (`varies`) that the sender's NAT maps it to a different
//! port for each destination (no direct path through it can be punched);
//! every other bit is reserved. A punch is padded to [`PUNCH_LEN`] bytes,
//! as long as the probes it makes its receiver send (one 8-byte probe per
//! candidate, 40 bytes sealed, 320 at most), so it buys no amplification.
//!
//! Bundles (signed policy and revocation lists, [`crate::bundle`]) travel
//! by pull: a node that puts a new version in force offers it to every
//! neighbour; a neighbour holding an older one requests it chunk by chunk
//! from the offerer, verifies the whole, applies it, and offers it on.

use core::fmt;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::wire::NodeId;

mod accusation;
mod advert;

pub use accusation::{Accusation, ACCUSATION_SIGNING_CONTEXT, MAX_SCENARIO_LEN};
pub use advert::{Ack, Advert, LinkEntry, Summary, MAX_ACK_ENTRIES};

/// Kind byte of a probe.
pub const KIND_PROBE: u8 = 1;
/// Kind byte of a probe reply.
pub const KIND_PROBE_REPLY: u8 = 2;
/// Kind byte of a link-state advert.
pub const KIND_LINK_STATE: u8 = 3;
/// Kind byte of a sync request (send me every advert you hold).
pub const KIND_SYNC_REQUEST: u8 = 4;
/// Kind byte of a bundle offer.
pub const KIND_BUNDLE_OFFER: u8 = 5;
/// Kind byte of a bundle chunk request.
pub const KIND_BUNDLE_REQUEST: u8 = 6;
/// Kind byte of a bundle chunk.
pub const KIND_BUNDLE_CHUNK: u8 = 7;
/// Kind byte of a certificate request.
pub const KIND_CERT_REQUEST: u8 = 8;
/// Kind byte of a certificate.
pub const KIND_CERT: u8 = 9;
/// Kind byte of a path MTU probe.
pub const KIND_MTU_PROBE: u8 = 10;
/// Kind byte of a path MTU probe reply.
pub const KIND_MTU_PROBE_REPLY: u8 = 11;
/// Kind byte of an observed address.
pub const KIND_OBSERVED: u8 = 12;
/// Kind byte of a punch.
pub const KIND_PUNCH: u8 = 13;
/// Kind byte of a member lookup.
pub const KIND_LOOKUP: u8 = 14;
/// Kind byte of a link-state acknowledgement.
pub const KIND_LINK_STATE_ACK: u8 = 15;
/// Kind byte of an accusation (a signed alert).
pub const KIND_ACCUSATION: u8 = 16;
/// Kind byte of a link-state summary part.
pub const KIND_LINK_STATE_SUMMARY: u8 = 17;
const LOOKUP_ADDRESS: u8 = 1;
const LOOKUP_NAME: u8 = 2;
/// Most candidate endpoints in a punch.
pub const MAX_CANDIDATES: usize = 8;
/// A punch's plaintext length, padding included.
pub const PUNCH_LEN: usize = 320;
const ADDR_LEN: usize = 18;
const PUNCH_FLAG_REPLY: u8 = 1;
const PUNCH_FLAG_VARIES: u8 = 2;
/// Largest path MTU probe plaintext (a 9000-byte jumbo underlay).
pub const MAX_MTU_PROBE: usize = 9000;
/// Domain separator of advert signatures.
pub const ADVERT_SIGNING_CONTEXT: &[u8] = b"meshd advert v1\0";
/// Advert signature length.
pub const ADVERT_SIGNATURE_LEN: usize = 64;
/// Most bundle bytes in one chunk (keeps a chunk inside a 1280-byte path).
pub const MAX_CHUNK: usize = 1024;
const BUNDLE_HEADER_LEN: usize = 16;
const CHUNK_HEADER_LEN: usize = 20;
/// Most entries in one link-state advert (bounds gossip size: 1108 bytes).
pub const MAX_ADVERT_ENTRIES: usize = 64;

/// Whether a transport plaintext is a control message.
pub fn is_control(plaintext: &[u8]) -> bool {
    plaintext.first().is_some_and(|b| *b < 0x40)
}

/// A decoded control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Asks the peer to answer on the same direct path.
    Probe {
        /// Sequence number, echoed.
        seq: u32,
    },
    /// The answer to a probe.
    ProbeReply {
        /// The probe's sequence number.
        seq: u32,
    },
    /// A link-state advert, gossiped.
    LinkState(Advert),
    /// Adverts received (and a sync request answered).
    LinkStateAck(Ack),
    /// Asks a neighbour for every advert it holds (sent once per neighbour
    /// when its session first comes up, and again after the link was down).
    SyncRequest,
    /// Part of what the sender of a sync request holds (sent before it):
    /// the answer leaves these out.
    LinkStateSummary(Summary),
    /// "I hold this version of this bundle, `len` bytes."
    BundleOffer {
        /// Bundle kind byte (1 policy, 2 revocation).
        kind: u8,
        /// Version held.
        version: u64,
        /// Its encoded length.
        len: u32,
    },
    /// "Send me bytes from `offset` of this version."
    BundleRequest {
        /// Bundle kind byte.
        kind: u8,
        /// Version wanted.
        version: u64,
        /// First byte wanted.
        offset: u32,
    },
    /// "Send me the certificate of `node`" (whose advert I cannot check).
    CertRequest {
        /// The advert's origin.
        node: NodeId,
    },
    /// A node certificate's encoding, answering a request.
    Cert {
        /// At most [`crate::cert::MAX_CERT_LEN`] bytes.
        bytes: Vec<u8>,
    },
    /// A padded probe of the underlay path's MTU (see `crate::pmtu`).
    MtuProbe {
        /// Echoed in the reply.
        seq: u32,
        /// Plaintext length, padding included: 8..=[`MAX_MTU_PROBE`].
        len: usize,
    },
    /// "Your MTU probe `seq` arrived."
    MtuProbeReply {
        /// The probe's sequence number.
        seq: u32,
    },
    /// "Your packets come from `addr`" (to a direct neighbour).
    Observed {
        /// The neighbour's address as the sender sees it.
        addr: SocketAddr,
    },
    /// "Send me the certificate of the member holding this": a stub, which
    /// holds no other stub's certificate, asks its relay (answered with a
    /// certificate message, or not at all).
    Lookup(Lookup),
    /// The sender's candidate endpoints, for a direct path (see
    /// `crate::endpoint` traversal): the receiver probes each.
    Punch {
        /// Answers a punch.
        reply: bool,
        /// The sender's NAT maps it to a different port per destination.
        varies: bool,
        /// At most [`MAX_CANDIDATES`] (more are cut when encoding).
        candidates: Vec<SocketAddr>,
    },
    /// A signed alert: its accuser quarantines the accused.
    Accusation(Accusation),
    /// Bytes `offset..offset + data.len()` of a bundle of `total` bytes.
    BundleChunk {
        /// Bundle kind byte.
        kind: u8,
        /// Version.
        version: u64,
        /// Where `data` starts.
        offset: u32,
        /// The bundle's whole length.
        total: u32,
        /// At most [`MAX_CHUNK`] bytes.
        data: Vec<u8>,
    },
}

/// Why a control message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    /// A kind this version does not know.
    UnknownKind(u8),
    /// The length does not match the kind (and entry count).
    BadLength,
    /// A reserved byte is not zero.
    ReservedNonZero,
    /// An advert or acknowledgement with more entries than allowed.
    TooManyEntries,
    /// A bundle kind this version does not know, or a chunk outside its
    /// bundle.
    BadBundle,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind(k) => write!(f, "unknown control message kind {k}"),
            Self::BadLength => f.write_str("control message length does not match its kind"),
            Self::ReservedNonZero => f.write_str("reserved control message bytes are not zero"),
            Self::TooManyEntries => {
                f.write_str("advert or acknowledgement with more entries than allowed")
            }
            Self::BadBundle => {
                f.write_str("bundle message with an unknown kind or a chunk outside its bundle")
            }
        }
    }
}

impl std::error::Error for ControlError {}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
/// An underlay address as 18 bytes: port, then the IPv6 (or IPv4-mapped)
/// address.
/// What a member lookup asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// The member holding this overlay address.
    Address(IpAddr),
    /// The member of this name (at most [`crate::cert::MAX_NAME_LEN`] bytes).
    Name(String),
}

fn write_addr(v: &mut Vec<u8>, a: &SocketAddr) {
    v.extend_from_slice(&a.port().to_le_bytes());
    let ip = match a.ip() {
        IpAddr::V4(x) => x.to_ipv6_mapped(),
        IpAddr::V6(x) => x,
    };
    v.extend_from_slice(&ip.octets());
}

fn addr_at(b: &[u8], at: usize) -> SocketAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at + 2..at + ADDR_LEN]);
    let ip = Ipv6Addr::from(o);
    let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
    SocketAddr::new(ip, u16_at(b, at))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Control {
    /// A bundle transfer message (offer, request, chunk): what a session
    /// kept for a handover carries.
    pub fn is_bundle(&self) -> bool {
        matches!(
            self,
            Self::BundleOffer { .. } | Self::BundleRequest { .. } | Self::BundleChunk { .. }
        )
    }

    /// The message's kind, as metrics and reports name it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Probe { .. } => "probe",
            Self::ProbeReply { .. } => "probe_reply",
            Self::LinkState(_) => "link_state",
            Self::LinkStateAck(_) => "link_state_ack",
            Self::SyncRequest => "sync_request",
            Self::LinkStateSummary(_) => "link_state_summary",
            Self::BundleOffer { .. } => "bundle_offer",
            Self::BundleRequest { .. } => "bundle_request",
            Self::BundleChunk { .. } => "bundle_chunk",
            Self::CertRequest { .. } => "cert_request",
            Self::Cert { .. } => "cert",
            Self::MtuProbe { .. } => "mtu_probe",
            Self::MtuProbeReply { .. } => "mtu_probe_reply",
            Self::Observed { .. } => "observed",
            Self::Lookup(_) => "lookup",
            Self::Punch { .. } => "punch",
            Self::Accusation(_) => "accusation",
        }
    }

    /// Decodes a control plaintext (first byte below `0x40`).
    pub fn decode(b: &[u8]) -> Result<Self, ControlError> {
        let kind = *b.first().ok_or(ControlError::BadLength)?;
        match kind {
            KIND_PROBE | KIND_PROBE_REPLY => {
                if b.len() != 8 {
                    return Err(ControlError::BadLength);
                }
                if b[1..4] != [0, 0, 0] {
                    return Err(ControlError::ReservedNonZero);
                }
                let seq = u32_at(b, 4);
                Ok(if kind == KIND_PROBE {
                    Self::Probe { seq }
                } else {
                    Self::ProbeReply { seq }
                })
            }
            KIND_LINK_STATE => Advert::decode(b).map(Self::LinkState),
            KIND_LINK_STATE_ACK => Ack::decode(b).map(Self::LinkStateAck),
            KIND_LINK_STATE_SUMMARY => Summary::decode(b).map(Self::LinkStateSummary),
            KIND_ACCUSATION => Accusation::decode(b).map(Self::Accusation),
            KIND_CERT_REQUEST => {
                if b.len() != 12 {
                    return Err(ControlError::BadLength);
                }
                if b[1..4] != [0, 0, 0] {
                    return Err(ControlError::ReservedNonZero);
                }
                Ok(Self::CertRequest {
                    node: NodeId(u64_at(b, 4)),
                })
            }
            KIND_CERT => {
                if b.len() < 5 || b.len() > 4 + crate::cert::MAX_CERT_LEN {
                    return Err(ControlError::BadLength);
                }
                if b[1..4] != [0, 0, 0] {
                    return Err(ControlError::ReservedNonZero);
                }
                Ok(Self::Cert {
                    bytes: b[4..].to_vec(),
                })
            }
            KIND_MTU_PROBE => {
                if b.len() < 8 || b.len() > MAX_MTU_PROBE {
                    return Err(ControlError::BadLength);
                }
                if b[1..4] != [0, 0, 0] || b[8..].iter().any(|&x| x != 0) {
                    return Err(ControlError::ReservedNonZero);
                }
                Ok(Self::MtuProbe {
                    seq: u32_at(b, 4),
                    len: b.len(),
                })
            }
            KIND_MTU_PROBE_REPLY => {
                if b.len() != 8 {
                    return Err(ControlError::BadLength);
                }
                if b[1..4] != [0, 0, 0] {
                    return Err(ControlError::ReservedNonZero);
                }
                Ok(Self::MtuProbeReply { seq: u32_at(b, 4) })
            }
            KIND_SYNC_REQUEST => {
                if b.len() != 4 {
                    return Err(ControlError::BadLength);
                }
                if b[1..4] != [0, 0, 0] {
                    return Err(ControlError::ReservedNonZero);
                }
                Ok(Self::SyncRequest)
            }
            KIND_BUNDLE_OFFER | KIND_BUNDLE_REQUEST | KIND_BUNDLE_CHUNK => {
                let header = if kind == KIND_BUNDLE_CHUNK {
                    CHUNK_HEADER_LEN
                } else {
                    BUNDLE_HEADER_LEN
                };
                if b.len() < header || (kind != KIND_BUNDLE_CHUNK && b.len() != header) {
                    return Err(ControlError::BadLength);
                }
                if b[2..4] != [0, 0] {
                    return Err(ControlError::ReservedNonZero);
                }
                let bundle_kind = b[1];
                if !(1..=2).contains(&bundle_kind) {
                    return Err(ControlError::BadBundle);
                }
                let (n, version) = (u32_at(b, 4), u64_at(b, 8));
                Ok(match kind {
                    KIND_BUNDLE_OFFER => Self::BundleOffer {
                        kind: bundle_kind,
                        version,
                        len: n,
                    },
                    KIND_BUNDLE_REQUEST => Self::BundleRequest {
                        kind: bundle_kind,
                        version,
                        offset: n,
                    },
                    _ => {
                        let total = u32_at(b, 16);
                        let data = &b[CHUNK_HEADER_LEN..];
                        let end = u64::from(n) + data.len() as u64;
                        if data.is_empty() || data.len() > MAX_CHUNK || end > u64::from(total) {
                            return Err(ControlError::BadBundle);
                        }
                        Self::BundleChunk {
                            kind: bundle_kind,
                            version,
                            offset: n,
                            total,
                            data: data.to_vec(),
                        }
                    }
                })
            }
            KIND_OBSERVED => {
                if b.len() != 2 + ADDR_LEN {
                    return Err(ControlError::BadLength);
                }
                if b[1] != 0 {
                    return Err(ControlError::ReservedNonZero);
                }
                Ok(Self::Observed {
                    addr: addr_at(b, 2),
                })
            }
            KIND_PUNCH => {
                if b.len() != PUNCH_LEN {
                    return Err(ControlError::BadLength);
                }
                let (flags, count) = (b[1], b[2] as usize);
                if count > MAX_CANDIDATES {
                    return Err(ControlError::TooManyEntries);
                }
                let end = 4 + count * ADDR_LEN;
                if flags & !(PUNCH_FLAG_REPLY | PUNCH_FLAG_VARIES) != 0
                    || b[3] != 0
                    || b[end..].iter().any(|&x| x != 0)
                {
                    return Err(ControlError::ReservedNonZero);
                }
                Ok(Self::Punch {
                    reply: flags & PUNCH_FLAG_REPLY != 0,
                    varies: flags & PUNCH_FLAG_VARIES != 0,
                    candidates: (0..count).map(|i| addr_at(b, 4 + i * ADDR_LEN)).collect(),
                })
            }
            KIND_LOOKUP => {
                if b.len() < 4 || b.len() != 4 + b[2] as usize {
                    return Err(ControlError::BadLength);
                }
                if b[3] != 0 {
                    return Err(ControlError::ReservedNonZero);
                }
                let (what, len) = (b[1], b[2] as usize);
                match what {
                    LOOKUP_ADDRESS if len == 16 => {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(&b[4..]);
                        let ip = Ipv6Addr::from(o);
                        let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
                        Ok(Self::Lookup(Lookup::Address(ip)))
                    }
                    LOOKUP_NAME if (1..=crate::cert::MAX_NAME_LEN).contains(&len) => {
                        let name =
                            std::str::from_utf8(&b[4..]).map_err(|_| ControlError::BadLength)?;
                        Ok(Self::Lookup(Lookup::Name(name.to_string())))
                    }
                    LOOKUP_ADDRESS | LOOKUP_NAME => Err(ControlError::BadLength),
                    _ => Err(ControlError::ReservedNonZero),
                }
            }
            k => Err(ControlError::UnknownKind(k)),
        }
    }

    /// Encodes; an advert is cut to its first [`MAX_ADVERT_ENTRIES`] links.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::SyncRequest => vec![KIND_SYNC_REQUEST, 0, 0, 0],
            Self::CertRequest { node } => {
                let mut v = vec![KIND_CERT_REQUEST, 0, 0, 0];
                v.extend_from_slice(&node.0.to_le_bytes());
                v
            }
            Self::Cert { bytes } => {
                let mut v = vec![KIND_CERT, 0, 0, 0];
                v.extend_from_slice(bytes);
                v
            }
            Self::BundleOffer { kind, version, len } => {
                bundle_header(KIND_BUNDLE_OFFER, *kind, *len, *version)
            }
            Self::BundleRequest {
                kind,
                version,
                offset,
            } => bundle_header(KIND_BUNDLE_REQUEST, *kind, *offset, *version),
            Self::BundleChunk {
                kind,
                version,
                offset,
                total,
                data,
            } => {
                let mut v = bundle_header(KIND_BUNDLE_CHUNK, *kind, *offset, *version);
                v.extend_from_slice(&total.to_le_bytes());
                v.extend_from_slice(data);
                v
            }
            Self::Probe { seq } | Self::ProbeReply { seq } => {
                let kind = if matches!(self, Self::Probe { .. }) {
                    KIND_PROBE
                } else {
                    KIND_PROBE_REPLY
                };
                let mut v = vec![kind, 0, 0, 0];
                v.extend_from_slice(&seq.to_le_bytes());
                v
            }
            Self::MtuProbe { seq, len } => {
                let mut v = vec![KIND_MTU_PROBE, 0, 0, 0];
                v.extend_from_slice(&seq.to_le_bytes());
                v.resize((*len).clamp(8, MAX_MTU_PROBE), 0);
                v
            }
            Self::MtuProbeReply { seq } => {
                let mut v = vec![KIND_MTU_PROBE_REPLY, 0, 0, 0];
                v.extend_from_slice(&seq.to_le_bytes());
                v
            }
            Self::Observed { addr } => {
                let mut v = vec![KIND_OBSERVED, 0];
                write_addr(&mut v, addr);
                v
            }
            Self::Punch {
                reply,
                varies,
                candidates,
            } => {
                let list = &candidates[..candidates.len().min(MAX_CANDIDATES)];
                let flags =
                    u8::from(*reply) * PUNCH_FLAG_REPLY + u8::from(*varies) * PUNCH_FLAG_VARIES;
                let mut v = vec![KIND_PUNCH, flags, list.len() as u8, 0];
                for a in list {
                    write_addr(&mut v, a);
                }
                v.resize(PUNCH_LEN, 0);
                v
            }
            Self::Lookup(Lookup::Address(ip)) => {
                let o = match ip {
                    IpAddr::V4(x) => x.to_ipv6_mapped().octets(),
                    IpAddr::V6(x) => x.octets(),
                };
                let mut v = vec![KIND_LOOKUP, LOOKUP_ADDRESS, 16, 0];
                v.extend_from_slice(&o);
                v
            }
            Self::Lookup(Lookup::Name(name)) => {
                let name = &name.as_bytes()[..name.len().min(crate::cert::MAX_NAME_LEN)];
                let mut v = vec![KIND_LOOKUP, LOOKUP_NAME, name.len() as u8, 0];
                v.extend_from_slice(name);
                v
            }
            Self::LinkState(a) => {
                let mut v = Vec::new();
                a.write(&mut v);
                v
            }
            Self::LinkStateAck(a) => {
                let mut v = Vec::new();
                a.write(&mut v);
                v
            }
            Self::LinkStateSummary(a) => {
                let mut v = Vec::new();
                a.write(&mut v);
                v
            }
            Self::Accusation(a) => {
                let mut v = Vec::new();
                a.write(&mut v);
                v
            }
        }
    }
}

fn bundle_header(msg: u8, kind: u8, n: u32, version: u64) -> Vec<u8> {
    let mut v = vec![msg, kind, 0, 0];
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    v
}

#[cfg(test)]
mod tests;
