//! Handshake fragmentation and bounded reassembly.
//!
//! Handshake messages (about 1.5 kB and 1.4 kB) exceed what a 1280-byte path
//! MTU carries, so each is split into fragments of at most
//! [`MAX_HANDSHAKE_DATAGRAM`](crate::wire::MAX_HANDSHAKE_DATAGRAM) bytes, each with its own mac1/mac2 trailer.
//!
//! Invariants:
//! - A fragment enters the [`Reassembler`] only as a [`VerifiedFragment`],
//!   which only [`VerifiedFragment::new`] makes, from a
//!   [`FragmentView`] whose mac1 (and, under
//!   load, mac2) verified. Unauthenticated bytes never take memory.
//! - Reassembly state is bounded per source address
//!   ([`ReassemblyLimits::per_source`]) and in total
//!   ([`ReassemblyLimits::total`]); each partial message is at most
//!   `MAX_FRAGMENTS * MAX_FRAGMENT_PAYLOAD` bytes and expires after
//!   [`ReassemblyLimits::timeout`].
//! - Duplicates are ignored; a fragment that disagrees with the header of the
//!   message it claims to belong to is dropped and counted.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::cookie::{write_macs, MacVerdict};
use crate::provider::{Crypto, MAC_LEN};
use crate::wire::fragment::write_header;
pub use crate::wire::fragment::MAX_MESSAGE_LEN;
pub use crate::wire::FragmentView;
use crate::wire::{MessageKind, FRAGMENT_HEADER_LEN, FRAGMENT_TRAILER_LEN, MAX_FRAGMENT_PAYLOAD};

/// A fragment whose MACs verified; the only input the reassembler takes.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedFragment<'a>(FragmentView<'a>);

impl<'a> VerifiedFragment<'a> {
    /// Promotes `view` after its MACs were checked. `verdict` must come from
    /// [`crate::cookie::CookieChecker::check`] on this same datagram.
    pub fn new(view: FragmentView<'a>, verdict: MacVerdict) -> Option<Self> {
        (verdict == MacVerdict::Valid).then_some(Self(view))
    }

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
    assert!(
        matches!(kind, MessageKind::Initiation | MessageKind::Response),
        "only handshake messages are fragmented (caller bug)"
    );
    let chunks: Vec<&[u8]> = message.chunks(MAX_FRAGMENT_PAYLOAD).collect();
    let count = chunks.len() as u8;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut d = vec![0u8; FRAGMENT_HEADER_LEN + chunk.len() + FRAGMENT_TRAILER_LEN];
            write_header(
                &mut d,
                kind,
                (i as u8, count),
                (sender_index, receiver_index),
                message.len(),
            );
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
///
/// Partial messages are also kept in the order they started (time only
/// moves forward), so the oldest, the next to expire or be evicted, is
/// found without a scan; an entry whose message is gone is skipped when it
/// reaches the front (and the queue is rebuilt if those pile up).
#[derive(Debug, Default)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    partials: HashMap<Key, Partial>,
    per_source: HashMap<SocketAddr, usize>,
    /// (started, key), oldest first; may name messages since removed.
    order: VecDeque<(Instant, Key)>,
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

    /// Whether a message from `src` of `kind` and `sender_index` is
    /// partly here.
    pub fn has_partial(&self, src: SocketAddr, kind: MessageKind, sender_index: u32) -> bool {
        self.partials.contains_key(&(src, kind, sender_index))
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
        if f.count() == 1 {
            return Reassembly::Complete(f.payload().to_vec());
        }
        self.expire(now);
        let key = (src, f.kind(), f.sender_index());
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
                    buf: vec![0u8; f.message_len()],
                    have: 0,
                    count: f.count(),
                    started: now,
                },
            );
            self.order.push_back((now, key));
            if self.order.len() > 2 * self.limits.total.max(self.partials.len()) {
                let partials = &self.partials;
                self.order
                    .retain(|(t, k)| partials.get(k).is_some_and(|p| p.started == *t));
            }
            *self.per_source.entry(src).or_insert(0) += 1;
        }
        let Some(p) = self.partials.get_mut(&key) else {
            return Reassembly::Inconsistent;
        };
        if p.count != f.count() || p.buf.len() != f.message_len() {
            return Reassembly::Inconsistent;
        }
        let bit = 1u8 << f.index();
        if p.have & bit != 0 {
            return Reassembly::Duplicate;
        }
        let off = usize::from(f.index()) * MAX_FRAGMENT_PAYLOAD;
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
        while let Some((started, key)) = self.oldest() {
            if now.saturating_duration_since(started) < timeout {
                break;
            }
            self.remove(&key);
        }
    }

    /// The earliest time a partial message expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        // Entries of removed messages are skipped; `oldest` pops them.
        self.order
            .iter()
            .find(|(t, k)| self.live(*t, k))
            .map(|(t, _)| *t + self.limits.timeout)
    }

    /// Whether the queue entry (`started`, `key`) is a message still held.
    fn live(&self, started: Instant, key: &Key) -> bool {
        self.partials.get(key).is_some_and(|p| p.started == started)
    }

    /// The oldest message held, after dropping queue entries of removed ones.
    fn oldest(&mut self) -> Option<(Instant, Key)> {
        while let Some(&(t, k)) = self.order.front() {
            if self.live(t, &k) {
                return Some((t, k));
            }
            self.order.pop_front();
        }
        None
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
            .order
            .iter()
            .find(|(t, k)| filter(k) && self.live(*t, k))
            .map(|(_, k)| *k);
        if let Some(k) = oldest {
            self.remove(&k);
            self.evictions += 1;
        }
    }
}
