//! Handshakes as the endpoint runs them: initiations and their
//! retransmission, fragments checked (mac1, and mac2 under load) before
//! they take memory, reassembly, cookies, and the cryptography of both
//! roles (`crate::handshake`).
//!
//! A handshake that passes its cryptography comes back as [`Completed`];
//! whether the peer is admitted, and the session that follows, are the
//! endpoint's (`Endpoint::complete_handshake`), the same for both roles.
//!
//! The responder's cryptography (two to four X25519, ML-KEM encapsulation,
//! a certificate check: about 0.2 ms) runs outside the endpoint: a complete,
//! MAC-checked initiation comes out as a [`RespondPlan`], which the driver
//! runs wherever it likes (off its packet path) and hands back as
//! [`Responded`]. Plans hold only shared, immutable state and the replay
//! guard (its own lock, which nothing on the packet path takes). The plans
//! outstanding are counted: past [`PLANS_UNDER_LOAD`] the node is under
//! load (mac2 required), past [`MAX_PLANS`] initiations are dropped, so a
//! driver that falls behind bounds its own queue.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::cert::TrustedCa;
use crate::provider::Crypto;

use crate::cookie::{self, mac1_of, CookieChecker, Mac2, MacVerdict, COOKIE_VALIDITY};
use crate::fragment::{fragment, Reassembler, Reassembly, VerifiedFragment};
use crate::handshake::{
    self as hs, HandshakeError, HandshakeOutput, Identity, InitiatorHandshake, ReplayGuard,
};
use crate::provider::MAC_LEN;
use crate::ratelimit::{Limit, RateLimiter, TokenBucket};
use crate::timers::REKEY_TIMEOUT_JITTER_MAX;
use crate::wire::{CookieReplyView, FragmentView, MessageKind};

use super::api::{EndpointConfig, Event, PeerId, Received};
use super::net::{Cx, Source};
use super::stats::DropReason;

/// Our initiation in flight with one peer.
pub(crate) struct Pending {
    hs: InitiatorHandshake,
    /// mac1 of its first fragment (a cookie reply answers it).
    sent_mac1: [u8; MAC_LEN],
    /// Already sent again at once after a cookie reply.
    cookie_resent: bool,
}

impl Pending {
    /// Our index in this handshake.
    pub fn local_index(&self) -> u32 {
        self.hs.local_index()
    }
}

/// A handshake whose cryptography succeeded.
pub(crate) struct Completed {
    pub role: Role,
    pub out: HandshakeOutput,
    pub source: Source,
}

/// Which side we were, with what that side still has to do.
pub(crate) enum Role {
    /// Our initiation to `peer` was answered; `local_index` is ours.
    Initiator { peer: PeerId, local_index: u32 },
    /// We answered an initiation: message 2 (`reply`) is still to be sent,
    /// to the initiator's `sender_index`, under our `local_index` (not
    /// recorded for any peer yet).
    Responder {
        reply: Vec<u8>,
        sender_index: u32,
        local_index: u32,
    },
}

/// Responder plans outstanding past which the node is under load (mac2
/// required), as wireguard-go's handshake queue at an eighth full.
pub const PLANS_UNDER_LOAD: usize = 16;
/// Responder plans outstanding past which initiations are dropped
/// (`handshake_backlog`).
pub const MAX_PLANS: usize = 128;

/// One outstanding responder plan; dropping it (with its plan or its
/// result, wherever that happens) counts it done.
struct Ticket(Arc<AtomicUsize>);

impl Ticket {
    fn take(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A complete initiation whose MACs (and, under load, cookie) checked:
/// the responder's cryptography is still to run, by [`RespondPlan::run`],
/// with no lock on the endpoint held; the result goes to
/// [`Endpoint::finish_respond`](super::Endpoint::finish_respond).
pub struct RespondPlan {
    msg: Vec<u8>,
    sender_index: u32,
    local_index: u32,
    source: Source,
    unix_nanos: u64,
    crypto: Arc<dyn Crypto>,
    ca: Arc<TrustedCa>,
    identity: Arc<Identity>,
    replay: Arc<Mutex<ReplayGuard>>,
    rng: ChaCha20Rng,
    ticket: Ticket,
}

impl fmt::Debug for RespondPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RespondPlan")
            .field("sender_index", &self.sender_index)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl RespondPlan {
    /// The responder's cryptography: message 1 checked (authentication,
    /// replay, certificate), message 2 built.
    pub fn run(self: Box<Self>) -> Responded {
        let mut plan = *self;
        let responder = hs::Responder {
            crypto: &*plan.crypto,
            ca: &plan.ca,
            identity: &plan.identity,
        };
        // Only plans take this lock, and one plan holds it at a time.
        let mut guard = plan.replay.lock().unwrap_or_else(PoisonError::into_inner);
        let result = responder.respond(
            &mut guard,
            &mut plan.msg,
            (plan.sender_index, plan.local_index),
            plan.unix_nanos,
            &mut plan.rng,
        );
        drop(guard);
        Responded {
            result,
            sender_index: plan.sender_index,
            local_index: plan.local_index,
            source: plan.source,
            _ticket: plan.ticket,
        }
    }
}

/// What a [`RespondPlan`] came to.
pub struct Responded {
    result: Result<(Vec<u8>, HandshakeOutput), HandshakeError>,
    sender_index: u32,
    local_index: u32,
    source: Source,
    _ticket: Ticket,
}

impl fmt::Debug for Responded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responded")
            .field("ok", &self.result.is_ok())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Initiation fragments counted per second, for the under-load decision.
#[derive(Debug, Default)]
struct LoadMeter {
    window: Option<Instant>,
    count: u32,
    prev: u32,
    forced: Option<bool>,
}

impl LoadMeter {
    /// Counts one initiation fragment; whether mac2 is required now: more
    /// than `threshold` fragments in this one-second window or the previous
    /// one (windows start at the first fragment after the last ended), or
    /// [`PLANS_UNDER_LOAD`] responder plans outstanding.
    fn count(&mut self, now: Instant, threshold: u32, plans: usize) -> bool {
        let start = *self.window.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Duration::from_secs(1) {
            self.prev = if elapsed >= Duration::from_secs(2) {
                0
            } else {
                self.count
            };
            self.count = 0;
            self.window = Some(now);
        }
        self.count = self.count.saturating_add(1);
        self.forced
            .unwrap_or(self.count > threshold || self.prev > threshold || plans >= PLANS_UNDER_LOAD)
    }
}

/// The handshake state of one node that is not any one peer's.
pub(crate) struct Handshakes {
    cookies: CookieChecker,
    reassembler: Reassembler,
    /// Newest initiation timestamp per initiator, shared with the plans.
    replay_guard: Arc<Mutex<ReplayGuard>>,
    /// Responder plans handed out and not yet finished or dropped.
    plans: Arc<AtomicUsize>,
    load: LoadMeter,
    /// Under load: initiation fragments looked at per source address and
    /// in total.
    limiter: RateLimiter,
    /// Under load: cookie replies sent, in total.
    cookie_replies: TokenBucket,
}

/// Initiation fragments one source address may have looked at per second
/// under load (a handshake is two; a retry comes every 5 s), with bursts of
/// [`SOURCE_BURST`]: as WireGuard.
pub(crate) const SOURCE_RATE: u32 = 20;
/// See [`SOURCE_RATE`].
pub(crate) const SOURCE_BURST: u32 = 5;
/// Under load, all sources together may have this many times the load
/// threshold of initiation fragments looked at per second.
pub(crate) const TOTAL_FACTOR: u32 = 10;
/// Under load, all sources together may have a burst of this many times
/// the load threshold of cookie replies (a reply costs more than a look:
/// an encryption and a datagram sent, to an address that may be spoofed)...
pub(crate) const COOKIE_REPLY_FACTOR: u32 = 2;
/// ...refilled at the load threshold divided by this, a second.
pub(crate) const COOKIE_REPLY_RATE_DIVISOR: u32 = 2;
/// Source addresses the limiter remembers at most.
const LIMITER_SOURCES: usize = 4096;

impl Handshakes {
    pub fn new(cookies: CookieChecker, config: &EndpointConfig) -> Self {
        Self {
            cookies,
            reassembler: Reassembler::new(config.reassembly),
            replay_guard: Arc::default(),
            plans: Arc::default(),
            load: LoadMeter::default(),
            // In total, ten times the load threshold a second (bursts of as
            // many): about 2 % of a core of hashing at the default, past
            // which a flood costs none at all, while a legitimate mass join
            // (a hub's thousands of leaves at once, each answered with a
            // cookie) still gets through in one round.
            limiter: RateLimiter::new(
                (SOURCE_RATE, SOURCE_BURST),
                (
                    config.handshake_load_threshold.saturating_mul(TOTAL_FACTOR),
                    config.handshake_load_threshold.saturating_mul(TOTAL_FACTOR),
                ),
                LIMITER_SOURCES,
            ),
            // A burst enough for a hub's 2,000 leaves to get theirs at
            // once; a sustained flood gets a quarter of that a second (each
            // reply is a datagram sent, the dearest part of a flood from
            // many addresses).
            cookie_replies: TokenBucket::new(
                (config.handshake_load_threshold / COOKIE_REPLY_RATE_DIVISOR).max(1),
                config
                    .handshake_load_threshold
                    .saturating_mul(COOKIE_REPLY_FACTOR),
            ),
        }
    }

    /// Forces (or, with `None`, stops forcing) the under-load state.
    pub fn set_under_load(&mut self, forced: Option<bool>) {
        self.load.forced = forced;
    }

    /// Partial messages held for reassembly.
    pub fn reassembly_len(&self) -> usize {
        self.reassembler.len()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reassembler.next_expiry()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.reassembler.expire(now);
    }

    /// Starts (or restarts) a handshake with `peer`: a fresh initiation on
    /// every try, with the cookie of its last cookie reply while valid.
    pub fn initiate(&mut self, cx: &mut Cx<'_>, now: Instant, peer: PeerId) {
        if cx.peers[peer].refused {
            return;
        }
        let Some((dst, relay)) = cx.peers.path(peer) else {
            cx.out.stats.drop(DropReason::NoEndpoint);
            return;
        };
        if relay.is_none() && cx.peers.note_direct_initiation(peer) {
            cx.out.stats.endpoints_silent += 1;
            cx.out.event(Event::EndpointSilent {
                peer,
                endpoint: dst,
            });
        }
        if let Some(old) = cx.peers[peer].pending.take() {
            cx.peers.release([old.local_index()]);
        }
        let local = &mut *cx.local;
        let index = cx.peers.reserve_index(&mut *local.rng, peer);
        let crypto = &*local.crypto;
        let p = &mut cx.peers[peer];
        let started = hs::initiate(
            crypto,
            &local.identity,
            &p.static_public,
            p.static_static.as_ref(),
            index,
            local.unix_nanos,
            &mut *local.rng,
        );
        let (handshake, msg) = match started {
            Ok(v) => v,
            Err(e) => {
                // Only a low-order static key in our own peer table gets here.
                cx.peers.release([index]);
                cx.out.stats.handshake_failed(&e);
                return;
            }
        };
        let cookie = p
            .cookie
            .filter(|(_, at)| now.saturating_duration_since(*at) < COOKIE_VALIDITY)
            .map(|(c, _)| c);
        let frags = fragment(
            crypto,
            MessageKind::Initiation,
            index,
            0,
            &msg,
            &p.mac1_key,
            cookie.as_ref(),
        );
        p.pending = Some(Pending {
            hs: handshake,
            sent_mac1: mac1_of(&frags[0]),
            cookie_resent: false,
        });
        let jitter = Duration::from_millis(
            u64::from(local.rng.next_u32()) % REKEY_TIMEOUT_JITTER_MAX.as_millis() as u64,
        );
        p.timers.on_initiation_sent(now, jitter);
        for f in frags {
            cx.send_on_path(peer, f);
        }
        cx.out.stats.initiations_sent += 1;
    }

    /// Feeds a MAC-checked fragment to the reassembler; the whole message
    /// once complete, otherwise what to report for this datagram.
    fn reassemble(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        source: Source,
        view: FragmentView<'_>,
        verdict: MacVerdict,
    ) -> Result<Vec<u8>, Received> {
        let Some(frag) = VerifiedFragment::new(view, verdict) else {
            return Err(cx.out.drop(DropReason::BadMac1));
        };
        match self.reassembler.insert(now, source.key(), frag) {
            Reassembly::Complete(m) => Ok(m),
            Reassembly::Pending | Reassembly::PendingAfterEviction => Err(Received::Handshake),
            Reassembly::Duplicate => Err(cx.out.drop(DropReason::FragmentDuplicate)),
            Reassembly::Inconsistent => Err(cx.out.drop(DropReason::FragmentInconsistent)),
        }
    }

    /// A fragment of message 1: mac1 (and mac2 under load, else a cookie
    /// reply to the first fragment), reassembly; a complete message comes
    /// back as the plan of the responder's cryptography.
    pub fn on_initiation(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        source: Source,
        view: FragmentView<'_>,
    ) -> Result<Box<RespondPlan>, Received> {
        let src = source.key();
        let threshold = cx.local.config.handshake_load_threshold;
        let plans = self.plans.load(Ordering::Relaxed);
        let under_load = self.load.count(now, threshold, plans);
        // Under load, a message's later fragments count only once its first
        // passed its MACs (mac2 included): one with nothing to join costs a
        // lookup, no hashing and no share of the limits. A real initiator
        // sends its fragments in order; one the network reordered retries
        // after REKEY_TIMEOUT, as after any loss.
        if under_load
            && view.index() != 0
            && !(self.reassembler).has_partial(src, MessageKind::Initiation, view.sender_index())
        {
            return Err(cx.out.drop(DropReason::FragmentOrphan));
        }
        // Under load, a source's share and the total come before any MAC
        // (each costs a BLAKE2s over up to 1.2 kB) or cookie reply.
        if under_load && self.limiter.allow(now, src.ip()) != Limit::Allowed {
            return Err(cx.out.drop(DropReason::RateLimited));
        }
        let (crypto, rng) = (&*cx.local.crypto, &mut *cx.local.rng);
        let bytes = view.bytes();
        let first = view.index() == 0;
        let mac2 = if under_load {
            Mac2::Required {
                may_reply: first && self.cookie_replies.ready(now),
            }
        } else {
            Mac2::NotRequired
        };
        match self.cookies.check(crypto, now, rng, &src, bytes, mac2) {
            MacVerdict::InvalidMac1 => return Err(cx.out.drop(DropReason::BadMac1)),
            MacVerdict::CookieRequired if first && !self.cookie_replies.allow(now) => {
                return Err(cx.out.drop(DropReason::RateLimited));
            }
            MacVerdict::CookieRequired => {
                if first {
                    let reply = self.cookies.cookie_reply(
                        crypto,
                        now,
                        rng,
                        &src,
                        bytes,
                        view.sender_index(),
                    );
                    cx.send_reply(source, reply.to_vec());
                    cx.out.stats.cookie_replies_sent += 1;
                }
                return Err(cx.out.drop(DropReason::CookieRequired));
            }
            MacVerdict::Valid => {}
        }
        let sender_index = view.sender_index();
        let msg = self.reassemble(cx, now, source, view, MacVerdict::Valid)?;
        if plans >= MAX_PLANS {
            return Err(cx.out.drop(DropReason::HandshakeBacklog));
        }
        let local = &mut *cx.local;
        let mut seed = [0u8; 32];
        local.rng.fill_bytes(&mut seed);
        Ok(Box::new(RespondPlan {
            msg,
            sender_index,
            // Ours, recorded for the peer when the plan is finished.
            local_index: cx.peers.fresh_index(&mut *local.rng),
            source,
            unix_nanos: local.unix_nanos,
            crypto: local.crypto.clone(),
            ca: local.ca.clone(),
            identity: local.identity.clone(),
            replay: self.replay_guard.clone(),
            rng: ChaCha20Rng::from_seed(seed),
            ticket: Ticket::take(&self.plans),
        }))
    }

    /// A finished plan: the handshake that passed its cryptography, or the
    /// drop of one that did not. Its index must still be free (another
    /// plan may have taken it meanwhile: the initiator retries).
    pub fn on_responded(cx: &mut Cx<'_>, done: Responded) -> Result<Completed, Received> {
        let Responded {
            result,
            sender_index,
            local_index,
            source,
            _ticket,
        } = done;
        match result {
            Ok(_) if cx.peers.by_index(local_index).is_some() => {
                Err(cx.out.drop(DropReason::HandshakeFailed))
            }
            Ok((reply, out)) => Ok(Completed {
                role: Role::Responder {
                    reply,
                    sender_index,
                    local_index,
                },
                out,
                source,
            }),
            Err(error) => Err(failed(cx, None, source.key(), error)),
        }
    }

    /// A fragment of message 2, for our pending handshake with the index it
    /// names: mac1, reassembly, then the initiator's cryptography.
    pub fn on_response(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        source: Source,
        view: FragmentView<'_>,
    ) -> Result<Completed, Received> {
        let src = source.key();
        let Some(peer) = cx.peers.by_index(view.receiver_index()) else {
            return Err(cx.out.drop(DropReason::UnknownIndex));
        };
        let pending_index = cx.peers[peer].pending.as_ref().map(Pending::local_index);
        if pending_index != Some(view.receiver_index()) {
            return Err(cx.out.drop(DropReason::UnknownIndex));
        }
        // mac1 on responses is keyed by our own static key.
        let verdict = self.cookies.check(
            &*cx.local.crypto,
            now,
            &mut *cx.local.rng,
            &src,
            view.bytes(),
            Mac2::NotRequired,
        );
        let sender_index = view.sender_index();
        let mut msg = self.reassemble(cx, now, source, view, verdict)?;
        let Some(pending) = cx.peers[peer].pending.take() else {
            return Err(cx.out.drop(DropReason::UnknownIndex));
        };
        let local_index = pending.local_index();
        let local = &*cx.local;
        let result = pending.hs.read_response(
            &*local.crypto,
            &local.ca,
            &local.identity,
            &mut msg,
            sender_index,
            local.unix_secs(),
        );
        match result {
            Ok(out) => Ok(Completed {
                role: Role::Initiator { peer, local_index },
                out,
                source,
            }),
            Err(error) => {
                // The pending state is spent; the retransmit timer starts afresh.
                cx.peers.release([local_index]);
                Err(failed(cx, Some(peer), src, error))
            }
        }
    }

    /// A cookie reply to our pending initiation: keep the cookie and, the
    /// first time, send the initiation again at once with mac2.
    pub fn on_cookie_reply(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        view: CookieReplyView<'_>,
    ) -> Received {
        let receiver = view.receiver_index();
        let Some(peer) = cx.peers.by_index(receiver) else {
            return cx.out.drop(DropReason::UnknownIndex);
        };
        let p = &mut cx.peers[peer];
        let Some(pending) = p.pending.as_mut().filter(|x| x.local_index() == receiver) else {
            return cx.out.drop(DropReason::UnknownIndex);
        };
        let opened = cookie::open_cookie_reply(
            &*cx.local.crypto,
            &p.cookie_key,
            &pending.sent_mac1,
            view.bytes(),
        );
        let Some(c) = opened else {
            return cx.out.drop(DropReason::BadCookieReply);
        };
        p.cookie = Some((c, now));
        let resend = !pending.cookie_resent;
        cx.out.event(Event::CookieReceived { peer });
        if resend {
            self.initiate(cx, now, peer);
            if let Some(pd) = cx.peers[peer].pending.as_mut() {
                pd.cookie_resent = true;
            }
        }
        Received::Handshake
    }
}

/// Counts and reports a rejected handshake message and drops it.
pub(crate) fn failed(
    cx: &mut Cx<'_>,
    peer: Option<PeerId>,
    src: SocketAddr,
    error: HandshakeError,
) -> Received {
    cx.out.stats.handshake_failed(&error);
    cx.out.event(Event::HandshakeFailed { peer, src, error });
    cx.out.drop(DropReason::HandshakeFailed)
}
