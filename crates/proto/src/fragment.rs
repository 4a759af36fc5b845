//! Handshake fragmentation and bounded reassembly.
//!
//! Handshake messages (about 1.5 kB and 1.4 kB) exceed what a 1280-byte path
//! MTU carries, so each is split into fragments of at most
//! [`MAX_HANDSHAKE_DATAGRAM`] bytes, each with its own mac1/mac2 trailer.
//!
//! Invariants:
//! - A fragment enters the [`Reassembler`] only as a [`VerifiedFragment`],
//!   which only [`FragmentView::into_verified`] makes, after mac1 (and, under
//!   load, mac2) verified. Unauthenticated bytes never take memory.
//! - Reassembly state is bounded per source address
//!   ([`ReassemblyLimits::per_source`]) and in total
//!   ([`ReassemblyLimits::total`]); each partial message is at most
//!   `MAX_FRAGMENTS * MAX_FRAGMENT_PAYLOAD` bytes and expires after
//!   [`ReassemblyLimits::timeout`].
//! - Duplicates are ignored; a fragment that disagrees with the header of the
//!   message it claims to belong to is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::cookie::{write_macs, MacVerdict};
use crate::provider::{Crypto, MAC_LEN};
use crate::wire::{
    classify, MessageKind, WireError, FRAGMENT_HEADER_LEN, FRAGMENT_TRAILER_LEN, MAX_FRAGMENTS,
    MAX_FRAGMENT_PAYLOAD, TYPE_INITIATION, TYPE_RESPONSE,
};

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
        let sender_index = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let receiver_index = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
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

    /// The whole datagram.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The fragment's slice of the message.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[FRAGMENT_HEADER_LEN..self.bytes.len() - FRAGMENT_TRAILER_LEN]
    }

    /// Promotes the view after its MACs were checked. `verdict` must come from
    /// [`crate::cookie::CookieChecker::check`] (or a comparison with the
    /// expected mac1 for responses) on this same datagram.
    pub fn into_verified(self, verdict: MacVerdict) -> Option<VerifiedFragment<'a>> {
        (verdict == MacVerdict::Valid).then_some(VerifiedFragment(self))
    }
}

/// A fragment whose MACs verified; the only input the reassembler takes.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedFragment<'a>(FragmentView<'a>);

impl<'a> VerifiedFragment<'a> {
    /// The underlying view.
    pub fn view(&self) -> &FragmentView<'a> {
        &self.0
    }
}

/// Splits `message` into fragment datagrams with MACs.
pub fn fragment(
    crypto: &dyn Crypto,
    kind: MessageKind,
    sender_index: u32,
    receiver_index: u32,
    message: &[u8],
    mac1_key: &[u8; 32],
    cookie: Option<&[u8; MAC_LEN]>,
) -> Vec<Vec<u8>> {
    assert!(
        !message.is_empty() && message.len() <= MAX_MESSAGE_LEN,
        "handshake message length out of range (caller bug)"
    );
    let type_byte = match kind {
        MessageKind::Initiation => TYPE_INITIATION,
        MessageKind::Response => TYPE_RESPONSE,
        _ => panic!("only handshake messages are fragmented (caller bug)"),
    };
    let chunks: Vec<&[u8]> = message.chunks(MAX_FRAGMENT_PAYLOAD).collect();
    let count = chunks.len() as u8;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut d = vec![0u8; FRAGMENT_HEADER_LEN + chunk.len() + FRAGMENT_TRAILER_LEN];
            d[0] = type_byte;
            d[1] = i as u8;
            d[2] = count;
            d[4..8].copy_from_slice(&sender_index.to_le_bytes());
            d[8..12].copy_from_slice(&receiver_index.to_le_bytes());
            d[12..14].copy_from_slice(&(message.len() as u16).to_le_bytes());
            d[FRAGMENT_HEADER_LEN..FRAGMENT_HEADER_LEN + chunk.len()].copy_from_slice(chunk);
            write_macs(crypto, &mut d, mac1_key, cookie);
            d
        })
        .collect()
}

/// Bounds on reassembly state.
#[derive(Debug, Clone, Copy)]
pub struct ReassemblyLimits {
    /// Partial messages in progress from one source address.
    pub per_source: usize,
    /// Partial messages in progress in total.
    pub total: usize,
    /// A partial message is discarded this long after its first fragment.
    pub timeout: Duration,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self {
            per_source: 4,
            total: 256,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What happened to a fragment given to the reassembler.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembly {
    /// The message is complete.
    Complete(Vec<u8>),
    /// Stored; more fragments are needed.
    Pending,
    /// Already had this fragment.
    Duplicate,
    /// Disagrees with the message it claims to belong to; dropped.
    Inconsistent,
    /// Evicted older state to make room (the fragment was stored).
    PendingAfterEviction,
}

#[derive(Debug)]
struct Partial {
    buf: Vec<u8>,
    have: u8,
    count: u8,
    started: Instant,
}

type Key = (SocketAddr, MessageKind, u32);

/// Bounded reassembly of verified fragments into handshake messages.
#[derive(Debug, Default)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    partials: HashMap<Key, Partial>,
    per_source: HashMap<SocketAddr, usize>,
    evictions: u64,
}

impl Reassembler {
    /// A reassembler with `limits`.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Partial messages held now.
    pub fn len(&self) -> usize {
        self.partials.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.partials.is_empty()
    }

    /// Bytes of message buffers held now.
    pub fn buffered_bytes(&self) -> usize {
        self.partials.values().map(|p| p.buf.len()).sum()
    }

    /// Partial messages evicted to respect the limits, ever.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Adds a fragment from `src`.
    pub fn insert(
        &mut self,
        now: Instant,
        src: SocketAddr,
        frag: VerifiedFragment<'_>,
    ) -> Reassembly {
        let f = frag.0;
        if f.count == 1 {
            return Reassembly::Complete(f.payload().to_vec());
        }
        self.expire(now);
        let key = (src, f.kind, f.sender_index);
        let mut evicted = false;
        if !self.partials.contains_key(&key) {
            if self.per_source.get(&src).copied().unwrap_or(0) >= self.limits.per_source {
                self.evict_oldest(|k| k.0 == src);
                evicted = true;
            }
            if self.partials.len() >= self.limits.total {
                self.evict_oldest(|_| true);
                evicted = true;
            }
            self.partials.insert(
                key,
                Partial {
                    buf: vec![0u8; f.message_len],
                    have: 0,
                    count: f.count,
                    started: now,
                },
            );
            *self.per_source.entry(src).or_insert(0) += 1;
        }
        let Some(p) = self.partials.get_mut(&key) else {
            return Reassembly::Inconsistent;
        };
        if p.count != f.count || p.buf.len() != f.message_len {
            return Reassembly::Inconsistent;
        }
        let bit = 1u8 << f.index;
        if p.have & bit != 0 {
            return Reassembly::Duplicate;
        }
        let off = usize::from(f.index) * MAX_FRAGMENT_PAYLOAD;
        let payload = f.payload();
        p.buf[off..off + payload.len()].copy_from_slice(payload);
        p.have |= bit;
        if p.have.count_ones() == u32::from(p.count) {
            let done = self.remove(&key);
            return Reassembly::Complete(done.map(|p| p.buf).unwrap_or_default());
        }
        if evicted {
            Reassembly::PendingAfterEviction
        } else {
            Reassembly::Pending
        }
    }

    /// Drops partial messages older than the timeout.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.limits.timeout;
        let old: Vec<Key> = self
            .partials
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.started) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            self.remove(&k);
        }
    }

    /// The earliest time a partial message expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.partials
            .values()
            .map(|p| p.started + self.limits.timeout)
            .min()
    }

    fn remove(&mut self, key: &Key) -> Option<Partial> {
        let p = self.partials.remove(key)?;
        if let Some(n) = self.per_source.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&key.0);
            }
        }
        Some(p)
    }

    fn evict_oldest(&mut self, filter: impl Fn(&Key) -> bool) {
        let oldest = self
            .partials
            .iter()
            .filter(|(k, _)| filter(k))
            .min_by_key(|(_, p)| p.started)
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.remove(&k);
            self.evictions += 1;
        }
    }
}
