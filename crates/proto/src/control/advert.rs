//! Link-state adverts, their acknowledgements and summaries: encoding and
//! decoding.

use super::{
    u16_at, u32_at, u64_at, ControlError, ADVERT_SIGNATURE_LEN, ADVERT_SIGNING_CONTEXT,
    KIND_LINK_STATE, KIND_LINK_STATE_ACK, KIND_LINK_STATE_SUMMARY, MAX_ADVERT_ENTRIES,
};
use crate::wire::NodeId;

const ADVERT_HEADER_LEN: usize = 20;
const ENTRY_LEN: usize = 16;
const FLAG_SETTLING: u16 = 1;
const ADVERT_FLAG_STUB: u8 = 1;
const ADVERT_FLAG_TRUNCATED: u8 = 2;
const ADVERT_FLAG_NO_TRANSIT: u8 = 4;
/// Most (origin, sequence) pairs in one acknowledgement (1028 bytes).
pub const MAX_ACK_ENTRIES: usize = 64;
const ACK_HEADER_LEN: usize = 4;
const ACK_ENTRY_LEN: usize = 16;
const ACK_FLAG_SYNC: u8 = 1;

/// One link in an advert: the origin's view of its direct link to `neighbor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEntry {
    /// The node at the other end.
    pub neighbor: NodeId,
    /// Smoothed round-trip time in microseconds.
    pub rtt_us: u32,
    /// Probe loss in thousandths.
    pub loss_permille: u16,
    /// The link came back recently and is in its hold-down: every node adds
    /// the same penalty, so all agree on it (a penalty only its owner knew
    /// would make neighbours route through each other in a loop).
    pub settling: bool,
}

/// A node's sequence-numbered list of its working direct links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The node whose links these are.
    pub origin: NodeId,
    /// Higher replaces lower; the origin starts from its clock so a restarted
    /// node's adverts still win.
    pub seq: u64,
    /// The origin does not relay (a stub): it is a destination, never a
    /// hop, and only relaying nodes need its advert.
    pub stub: bool,
    /// The origin has more links up than listed (a hub): a stub's own
    /// advert then vouches for its link to the origin.
    pub truncated: bool,
    /// The origin carries no traffic for others, though it relays adverts
    /// and holds full link state (a node behind a NAT, whose links last
    /// only as long as its mappings): paths may end at it, none passes
    /// through it.
    pub no_transit: bool,
    /// Links that are up, at most [`MAX_ADVERT_ENTRIES`].
    pub links: Vec<LinkEntry>,
    /// The origin's Ed25519 signature over [`ADVERT_SIGNING_CONTEXT`] and
    /// [`Advert::signed_bytes`].
    pub signature: [u8; ADVERT_SIGNATURE_LEN],
}

impl Advert {
    /// The bytes the signature covers: the encoding up to the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = ADVERT_SIGNING_CONTEXT.to_vec();
        self.write_unsigned(&mut v);
        v
    }

    /// Appends the encoding up to the signature (kind byte first).
    fn write_unsigned(&self, v: &mut Vec<u8>) {
        let links = &self.links[..self.links.len().min(MAX_ADVERT_ENTRIES)];
        v.reserve(ADVERT_HEADER_LEN + links.len() * ENTRY_LEN + ADVERT_SIGNATURE_LEN);
        let truncated = self.truncated || self.links.len() > MAX_ADVERT_ENTRIES;
        let mut flags = 0;
        if self.stub {
            flags |= ADVERT_FLAG_STUB;
        }
        if truncated {
            flags |= ADVERT_FLAG_TRUNCATED;
        }
        if self.no_transit {
            flags |= ADVERT_FLAG_NO_TRANSIT;
        }
        v.extend_from_slice(&[KIND_LINK_STATE, flags]);
        v.extend_from_slice(&(links.len() as u16).to_le_bytes());
        v.extend_from_slice(&self.origin.0.to_le_bytes());
        v.extend_from_slice(&self.seq.to_le_bytes());
        for l in links {
            v.extend_from_slice(&l.neighbor.0.to_le_bytes());
            v.extend_from_slice(&l.rtt_us.to_le_bytes());
            v.extend_from_slice(&l.loss_permille.to_le_bytes());
            let flags = if l.settling { FLAG_SETTLING } else { 0 };
            v.extend_from_slice(&flags.to_le_bytes());
        }
    }

    /// Decodes a link-state advert (kind byte first).
    pub(super) fn decode(b: &[u8]) -> Result<Self, ControlError> {
        if b.len() < ADVERT_HEADER_LEN {
            return Err(ControlError::BadLength);
        }
        if b[1] & !(ADVERT_FLAG_STUB | ADVERT_FLAG_TRUNCATED | ADVERT_FLAG_NO_TRANSIT) != 0 {
            return Err(ControlError::ReservedNonZero);
        }
        let count = u16_at(b, 2) as usize;
        if count > MAX_ADVERT_ENTRIES {
            return Err(ControlError::TooManyEntries);
        }
        let entries_end = ADVERT_HEADER_LEN + count * ENTRY_LEN;
        if b.len() != entries_end + ADVERT_SIGNATURE_LEN {
            return Err(ControlError::BadLength);
        }
        let mut signature = [0u8; ADVERT_SIGNATURE_LEN];
        signature.copy_from_slice(&b[entries_end..]);
        let links = b[ADVERT_HEADER_LEN..entries_end]
            .chunks_exact(ENTRY_LEN)
            .map(|e| {
                let flags = u16_at(e, 14);
                if flags & !FLAG_SETTLING != 0 {
                    return Err(ControlError::ReservedNonZero);
                }
                Ok(LinkEntry {
                    neighbor: NodeId(u64_at(e, 0)),
                    rtt_us: u32_at(e, 8),
                    loss_permille: u16_at(e, 12),
                    settling: flags & FLAG_SETTLING != 0,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Advert {
            origin: NodeId(u64_at(b, 4)),
            seq: u64_at(b, 12),
            stub: b[1] & ADVERT_FLAG_STUB != 0,
            truncated: b[1] & ADVERT_FLAG_TRUNCATED != 0,
            no_transit: b[1] & ADVERT_FLAG_NO_TRANSIT != 0,
            links,
            signature,
        })
    }

    /// Appends the whole encoding, signature included.
    pub(super) fn write(&self, v: &mut Vec<u8>) {
        self.write_unsigned(v);
        v.extend_from_slice(&self.signature);
    }
}

/// A link-state acknowledgement: the adverts a neighbour received, each by
/// origin and sequence number, and whether it answered our sync request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ack {
    /// Our sync request arrived and its answer is on its way.
    pub sync: bool,
    /// Adverts received, by origin and sequence; at most [`MAX_ACK_ENTRIES`].
    pub entries: Vec<(NodeId, u64)>,
}

impl Ack {
    /// Decodes an acknowledgement (kind byte first).
    pub(super) fn decode(b: &[u8]) -> Result<Self, ControlError> {
        let (flags, entries) = decode_entries(b, ACK_FLAG_SYNC)?;
        Ok(Self {
            sync: flags & ACK_FLAG_SYNC != 0,
            entries,
        })
    }

    /// Appends the encoding; entries past [`MAX_ACK_ENTRIES`] are left out.
    pub(super) fn write(&self, v: &mut Vec<u8>) {
        let flags = if self.sync { ACK_FLAG_SYNC } else { 0 };
        write_entries(KIND_LINK_STATE_ACK, flags, &self.entries, v);
    }
}

/// One part of a link-state summary: adverts a node holds, by origin and
/// sequence number, sent before its sync request so that the answer leaves
/// out what it has (at most [`MAX_ACK_ENTRIES`] per part).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Adverts held, by origin and sequence.
    pub entries: Vec<(NodeId, u64)>,
}

impl Summary {
    /// Decodes a summary part (kind byte first).
    pub(super) fn decode(b: &[u8]) -> Result<Self, ControlError> {
        let (_, entries) = decode_entries(b, 0)?;
        Ok(Self { entries })
    }

    /// Appends the encoding; entries past [`MAX_ACK_ENTRIES`] are left out.
    pub(super) fn write(&self, v: &mut Vec<u8>) {
        write_entries(KIND_LINK_STATE_SUMMARY, 0, &self.entries, v);
    }
}

/// Decodes the layout acknowledgements and summaries share: flags (only
/// `allowed` bits may be set), entry count, (origin, sequence) entries.
fn decode_entries(b: &[u8], allowed: u8) -> Result<(u8, Vec<(NodeId, u64)>), ControlError> {
    if b.len() < ACK_HEADER_LEN {
        return Err(ControlError::BadLength);
    }
    if b[1] & !allowed != 0 {
        return Err(ControlError::ReservedNonZero);
    }
    let count = u16_at(b, 2) as usize;
    if count > MAX_ACK_ENTRIES {
        return Err(ControlError::TooManyEntries);
    }
    if b.len() != ACK_HEADER_LEN + count * ACK_ENTRY_LEN {
        return Err(ControlError::BadLength);
    }
    let entries = b[ACK_HEADER_LEN..]
        .chunks_exact(ACK_ENTRY_LEN)
        .map(|e| (NodeId(u64_at(e, 0)), u64_at(e, 8)))
        .collect();
    Ok((b[1], entries))
}

fn write_entries(kind: u8, flags: u8, entries: &[(NodeId, u64)], v: &mut Vec<u8>) {
    let entries = &entries[..entries.len().min(MAX_ACK_ENTRIES)];
    v.extend_from_slice(&[kind, flags]);
    v.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (origin, seq) in entries {
        v.extend_from_slice(&origin.0.to_le_bytes());
        v.extend_from_slice(&seq.to_le_bytes());
    }
}
