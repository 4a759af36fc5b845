//! Joining by bootstrap address: a node configured with only a member's
//! underlay address asks it for its static key (a key probe, type 6), adds
//! it as a peer by that key, and handshakes (Noise IK needs the key; the
//! member's certificate arrives inside the handshake and is checked against
//! the CA there). Everything else about the mesh, its members and their
//! certificates, comes from that member's link-state sync.
//!
//! ```text
//! add_bootstrap(addr) ─► key request every 1, 2, 4 … 30 s ─► addr
//! key reply (our nonce, from addr) ─► peer by key, endpoint addr ─► initiate
//! the peer removed, or a different key at addr ─► ask again
//! ```
//!
//! Every node answers key requests (any member can be a bootstrap), from a
//! budget of [`REPLY_RATE`] a second; a reply is smaller than the request
//! and carries only the 32-byte public key.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::ratelimit::TokenBucket;
use crate::wire::{key_reply, key_request, KeyReplyView, KeyRequestView, KEY_PROBE_NONCE_LEN};

use super::net::{Cx, Source};
use super::{DropReason, PeerId, Received};

/// First wait for an answer; doubled after each unanswered request.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between requests to a silent bootstrap address.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Key replies a node sends a second, in total (bursts of as many).
pub(crate) const REPLY_RATE: u32 = 50;

/// One configured bootstrap address.
#[derive(Debug)]
struct Entry {
    addr: SocketAddr,
    /// The nonce of the request in flight.
    nonce: [u8; KEY_PROBE_NONCE_LEN],
    /// When to ask (again); `None` while a peer answers for it.
    ask_at: Option<Instant>,
    retry: Duration,
    /// The peer this address answered as.
    peer: Option<PeerId>,
}

/// What a key reply asked of the endpoint.
pub(crate) struct Answer {
    pub entry: usize,
    pub addr: SocketAddr,
    pub static_public: [u8; 32],
}

/// The bootstrap addresses and the key-reply budget.
pub(crate) struct Bootstraps {
    entries: Vec<Entry>,
    replies: TokenBucket,
}

impl Bootstraps {
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            replies: TokenBucket::new(REPLY_RATE, REPLY_RATE),
        }
    }

    /// Adds `addr` (once), to be asked at `now`.
    pub fn add(&mut self, now: Instant, addr: SocketAddr) {
        if self.entries.iter().any(|e| e.addr == addr) {
            return;
        }
        self.entries.push(Entry {
            addr,
            nonce: [0; KEY_PROBE_NONCE_LEN],
            ask_at: Some(now),
            retry: FIRST_RETRY,
            peer: None,
        });
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.ask_at).min()
    }

    /// Sends the requests due at `now`; an address whose peer is gone (a
    /// removed peer's id no longer checks out) is asked again.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Instant) {
        for e in &mut self.entries {
            if e.peer.is_some_and(|p| cx.peers.checked(p).is_none()) {
                e.peer = None;
                e.retry = FIRST_RETRY;
                e.ask_at = Some(now);
            }
            if e.ask_at.is_none_or(|t| t > now) {
                continue;
            }
            cx.local.rng.fill_bytes(&mut e.nonce);
            cx.send_direct(e.addr, key_request(e.nonce).to_vec());
            cx.out.stats.key_requests_sent += 1;
            e.ask_at = Some(now + e.retry);
            e.retry = (e.retry * 2).min(MAX_RETRY);
        }
    }

    /// A key request: answered with our key, from the budget, only when it
    /// came directly (never through a relay).
    pub fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        source: Source,
        v: KeyRequestView<'_>,
    ) -> Received {
        let Source::Direct(src) = source else {
            return cx.out.drop(DropReason::Malformed);
        };
        if !cx.local.config.answer_key_requests || !self.replies.allow(now) {
            return cx.out.drop(DropReason::RateLimited);
        }
        let reply = key_reply(v.nonce(), cx.local.identity.static_public());
        cx.send_direct(src, reply.to_vec());
        cx.out.stats.key_replies_sent += 1;
        Received::Handshake
    }

    /// A key reply: the answer to our request in flight to its sender, or
    /// dropped.
    pub fn on_reply(
        &mut self,
        cx: &mut Cx<'_>,
        source: Source,
        v: KeyReplyView<'_>,
    ) -> Result<Answer, Received> {
        let Source::Direct(src) = source else {
            return Err(cx.out.drop(DropReason::Malformed));
        };
        let nonce = v.nonce();
        let Some(entry) = self.entries.iter().position(|e| {
            e.addr == src && e.peer.is_none() && e.ask_at.is_some() && e.nonce == nonce
        }) else {
            return Err(cx.out.drop(DropReason::UnexpectedKeyReply));
        };
        Ok(Answer {
            entry,
            addr: src,
            static_public: v.static_public(),
        })
    }

    /// The address of `entry` answered as `peer` (`None`: as this node
    /// itself, which is then never asked again).
    pub fn answered(&mut self, entry: usize, peer: Option<PeerId>) {
        let e = &mut self.entries[entry];
        e.peer = peer;
        e.ask_at = None;
        e.retry = FIRST_RETRY;
    }

    /// The addresses configured, each with the peer that answered for it.
    pub fn list(&self) -> impl Iterator<Item = (SocketAddr, Option<PeerId>)> + '_ {
        self.entries.iter().map(|e| (e.addr, e.peer))
    }
}
