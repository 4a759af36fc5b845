//! Direct paths through NAT: this node's candidate endpoints (the local
//! addresses the driver gives, and the reflexive ones its direct
//! neighbours observe), and hole punching with members reached only
//! through a relay.
//!
//! Two members with a session over a relay and no working direct link
//! punch: each sends the other a punch (its candidates) inside that
//! session, and probes (ordinary link probes, sequence 0) directly to each
//! candidate the other named. The first probe to get through a NAT opens
//! it for the answer; an authenticated packet arriving directly moves the
//! peer's address there (roaming, as WireGuard's), its link is probed from
//! then on, and routes move to it once the link is up. Meanwhile traffic
//! stays on the relay: nothing is lost on the way.
//!
//! Everything is inside sessions, so only the member itself can name its
//! candidates. Bounded: a punch is answered once per
//! [`ANSWER_INTERVAL`] per peer and [`ANSWERS_PER_SECOND`] in all, at most
//! [`MAX_CANDIDATES`] probes each, never to a loopback, unspecified,
//! multicast or broadcast address; a punch is as long as the probes it
//! makes its receiver send. Attempts back off from [`RETRY_MIN`] to
//! [`RETRY_MAX`] while the link stays down. A member whose NAT maps it to
//! a different port per destination says so in its punches; two such
//! members do not punch (no direct path can be opened between them).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::control::{Control, MAX_CANDIDATES};
use crate::wire::NodeId;

use super::api::PeerId;
use super::net::{Cx, Source};
use super::peer::Peer;

/// First retry after an attempt that found no direct path; each later one
/// waits twice as long, up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_secs(2);
/// Longest wait between attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// A peer's punches are answered at most this often.
pub const ANSWER_INTERVAL: Duration = Duration::from_secs(1);
/// Punches answered per second, all peers together.
pub const ANSWERS_PER_SECOND: u32 = 20;
/// An observed address is a candidate for this long after it was reported.
const OBSERVED_MAX_AGE: Duration = Duration::from_secs(300);
/// Observed addresses kept (one per reporting neighbour).
const OBSERVED_KEPT: usize = 16;
/// A neighbour is told its observed address again after this long.
const TELL_AGAIN: Duration = Duration::from_secs(60);
/// The probe sequence number punches use (link probes start at 1).
const PUNCH_SEQ: u32 = 0;

/// One peer's traversal state (in its [`Peer`]).
#[derive(Debug, Default)]
pub(crate) struct PeerPunch {
    /// Its candidates, from its latest punch.
    pub candidates: Vec<SocketAddr>,
    /// Its latest punch said its NAT maps per destination.
    pub varies: bool,
    /// Our next attempt, while one is due.
    pub next_at: Option<Instant>,
    /// Attempts since its direct link was last up.
    pub attempts: u32,
    /// When we last answered its punch.
    answered: Option<Instant>,
    /// The address we last told it its packets come from, and when.
    told: Option<(SocketAddr, Instant)>,
    /// When we last answered one of its punch probes with ours.
    countered: Option<Instant>,
}

/// Why a peer is reached through a relay, for `meshctl peers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traversal {
    /// Its direct link is up (or it has not been tried: no session).
    NotNeeded,
    /// Punching: attempts so far.
    Punching {
        /// Attempts since its direct link was last up.
        attempts: u32,
    },
    /// Both ends behind NATs that map per destination: no direct path can
    /// be opened, the relayed one stays.
    BothEndsVary,
}

/// This node's candidates and the global answer budget.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    /// Local addresses (from the driver).
    local: Vec<SocketAddr>,
    /// Reflexive addresses: what each direct neighbour observed, and when.
    observed: HashMap<NodeId, (SocketAddr, Instant)>,
    /// Punches answered this second.
    answers: crate::ratelimit::PerSecond,
}

impl Candidates {
    /// Sets the local addresses this node receives on.
    pub fn set_local(&mut self, addrs: Vec<SocketAddr>) {
        self.local = addrs;
    }

    /// A direct neighbour `node` saw our packets come from `addr`.
    pub fn on_observed(&mut self, now: Instant, node: NodeId, addr: SocketAddr) {
        if !sendable(&addr) {
            return;
        }
        self.observed.insert(node, (addr, now));
        if self.observed.len() > OBSERVED_KEPT {
            let oldest = (self.observed.iter())
                .min_by_key(|(_, (_, t))| *t)
                .map(|(n, _)| *n);
            if let Some(n) = oldest {
                self.observed.remove(&n);
            }
        }
    }

    fn fresh(&self, now: Instant) -> impl Iterator<Item = SocketAddr> + '_ {
        (self.observed.values())
            .filter(move |(_, t)| now.saturating_duration_since(*t) < OBSERVED_MAX_AGE)
            .map(|(a, _)| *a)
    }

    /// Our candidates: reflexive addresses first (the ones a remote member
    /// can reach), then local ones; at most [`MAX_CANDIDATES`].
    pub fn list(&self, now: Instant) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = Vec::new();
        let mut reflexive: Vec<SocketAddr> = self.fresh(now).collect();
        reflexive.sort_unstable();
        for a in reflexive.into_iter().chain(self.local.iter().copied()) {
            if !v.contains(&a) && v.len() < MAX_CANDIDATES {
                v.push(a);
            }
        }
        v
    }

    /// Whether our NAT maps us to a different port per destination: two
    /// neighbours saw the same address with different ports.
    pub fn varies(&self, now: Instant) -> bool {
        let seen: Vec<SocketAddr> = self.fresh(now).collect();
        seen.iter().any(|a| {
            seen.iter()
                .any(|b| a.ip() == b.ip() && a.port() != b.port())
        })
    }

    /// Whether we are behind a NAT: a neighbour saw an address that is
    /// none of our local ones (unknowable until the driver gave them).
    pub fn behind_nat(&self, now: Instant) -> bool {
        !self.local.is_empty() && self.fresh(now).any(|a| !self.local.contains(&a))
    }

    /// Takes one answer from the budget of the current second.
    fn take_answer(&mut self, now: Instant) -> bool {
        self.answers.take(now, ANSWERS_PER_SECOND)
    }
}

/// Whether an address may be probed: not loopback, unspecified, multicast
/// or broadcast, and not port 0 (a punch must not aim our probes at this
/// host or at many).
fn sendable(a: &SocketAddr) -> bool {
    let ip = a.ip();
    let bad = match ip {
        IpAddr::V4(v) => {
            v.is_broadcast() || v.is_loopback() || v.is_unspecified() || v.is_multicast()
        }
        IpAddr::V6(v) => {
            v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || v.to_ipv4_mapped().is_some()
        }
    };
    !bad && a.port() != 0
}

/// Whether `p` needs a direct path: a usable session and no working
/// direct link, not refused.
pub(crate) fn wants(p: &Peer, now: Instant) -> bool {
    !p.refused && !p.link_up() && p.session(now).is_some()
}

/// What [`Endpoint`](super::Endpoint) shows for `p`.
pub(crate) fn state(p: &Peer, mine: &Candidates, now: Instant) -> Traversal {
    if !wants(p, now) {
        Traversal::NotNeeded
    } else if p.punch.varies && mine.varies(now) {
        Traversal::BothEndsVary
    } else {
        Traversal::Punching {
            attempts: p.punch.attempts,
        }
    }
}

/// A session with `peer` became usable, or its direct link went down:
/// punch soon if it needs a direct path.
pub(crate) fn arm(cx: &mut Cx<'_>, now: Instant, peer: PeerId) {
    let p = &mut cx.peers[peer];
    if wants(p, now) && p.punch.next_at.is_none() {
        p.punch.next_at = Some(now);
    }
}

/// The direct link to `peer` came up: attempts start over next time.
pub(crate) fn on_link_up(cx: &mut Cx<'_>, peer: PeerId) {
    let p = &mut cx.peers[peer];
    p.punch.attempts = 0;
    p.punch.next_at = None;
}

/// The answer to our punch probe came from `addr`: `peer` is reached
/// there (its link is probed from now on).
pub(crate) fn on_proof(cx: &mut Cx<'_>, peer: PeerId, addr: SocketAddr) {
    cx.peers.set_endpoint(peer, addr);
    cx.peers.heard_directly(peer);
    on_link_up(cx, peer);
    cx.out.stats.direct_paths_punched += 1;
}

/// `peer`'s attempt timer: an attempt if one is due and still needed.
pub(crate) fn tick(cx: &mut Cx<'_>, mine: &Candidates, now: Instant, peer: PeerId) {
    let p = &cx.peers[peer];
    if p.punch.next_at.is_none_or(|t| t > now) {
        return;
    }
    if !wants(p, now) || (p.punch.varies && mine.varies(now)) {
        cx.peers[peer].punch.next_at = None;
        return;
    }
    send_punch(cx, mine, now, peer, false);
    // Its candidates, and the address we hold for it (configured, or
    // where it last was), which may answer once our NAT has a mapping.
    let p = &cx.peers[peer];
    let mut theirs = p.punch.candidates.clone();
    if let Some(e) = p.endpoint.filter(|e| !theirs.contains(e)) {
        theirs.push(e);
    }
    probe_candidates(cx, now, peer, &theirs);
    let p = &mut cx.peers[peer];
    let wait = RETRY_MIN
        .saturating_mul(1 << p.punch.attempts.min(6))
        .min(RETRY_MAX);
    p.punch.attempts += 1;
    p.punch.next_at = Some(now + wait);
}

/// Probes (sequence 0) sent directly to each of `candidates` that is not
/// ours.
fn probe_candidates(cx: &mut Cx<'_>, now: Instant, peer: PeerId, candidates: &[SocketAddr]) {
    for &a in candidates.iter().take(MAX_CANDIDATES) {
        if !sendable(&a) {
            *cx.out.stats.punch_refusals.entry("candidate").or_default() += 1;
            continue;
        }
        if let Some(d) = cx.seal_control(now, peer, &Control::Probe { seq: PUNCH_SEQ }) {
            cx.out.stats.punch_probes_sent += 1;
            cx.send_direct(a, d);
        }
    }
}

/// A punch from `peer` (authenticated by its session): its candidates
/// kept, probed at once (within the answer budget), and, unless it is
/// itself an answer, answered with ours so that it probes them too.
pub(crate) fn on_punch(
    cx: &mut Cx<'_>,
    mine: &mut Candidates,
    now: Instant,
    peer: PeerId,
    punch: (bool, bool, Vec<SocketAddr>),
) {
    let (reply, varies, candidates) = punch;
    let p = &mut cx.peers[peer];
    p.punch.candidates = candidates;
    p.punch.varies = varies;
    if p.link_up() {
        return;
    }
    let recent = p
        .punch
        .answered
        .is_some_and(|t| now.saturating_duration_since(t) < ANSWER_INTERVAL);
    if recent || !mine.take_answer(now) {
        *cx.out.stats.punch_refusals.entry("rate").or_default() += 1;
        return;
    }
    p.punch.answered = Some(now);
    // Both ends behind NATs that map per destination: no probe can get
    // through, but the answer tells it so, and it stops too.
    if !(varies && mine.varies(now)) {
        // Our own attempts go on from here if this does not open a path.
        if p.punch.next_at.is_none() {
            p.punch.next_at = Some(now + RETRY_MIN);
        }
        cx.out.stats.punches_answered += 1;
        let theirs = cx.peers[peer].punch.candidates.clone();
        probe_candidates(cx, now, peer, &theirs);
    }
    if !reply {
        send_punch(cx, mine, now, peer, true);
    }
}

/// Our punch (candidates, whether our NAT maps per destination) to `peer`,
/// in its session, along its current path.
fn send_punch(cx: &mut Cx<'_>, mine: &Candidates, now: Instant, peer: PeerId, reply: bool) {
    let msg = Control::Punch {
        reply,
        varies: mine.varies(now),
        candidates: mine.list(now),
    };
    if let Some(d) = cx.seal_control(now, peer, &msg) {
        cx.out.stats.punches_sent += 1;
        cx.send_on_path(peer, d);
    }
}

/// Whether a probe answer with `seq` from `p`, arriving directly, proves
/// a direct path it lacks: the answer to a punch probe.
pub(crate) fn is_proof(p: &Peer, seq: u32) -> bool {
    seq == PUNCH_SEQ && !p.link_up()
}

/// A probe from `peer`: one of its punch probes, arriving directly, while
/// we have no working direct link to it, gets a punch probe of ours back
/// to where it came from (once per [`ANSWER_INTERVAL`]), whose answer is
/// the proof we need (its probe proves only its way).
pub(crate) fn on_punch_probe(
    cx: &mut Cx<'_>,
    now: Instant,
    peer: PeerId,
    source: Source,
    seq: u32,
) {
    let Some(addr) = source.direct() else { return };
    let p = &cx.peers[peer];
    let recent =
        (p.punch.countered).is_some_and(|t| now.saturating_duration_since(t) < ANSWER_INTERVAL);
    if seq != PUNCH_SEQ || p.link_up() || recent {
        return;
    }
    cx.peers.quiet_mut(peer).punch.countered = Some(now);
    probe_candidates(cx, now, peer, &[addr]);
}

/// A probe from `peer` arrived directly from `source`: tell it that
/// address (its reflexive one) when it changed or was told long ago.
pub(crate) fn tell_observed(cx: &mut Cx<'_>, now: Instant, peer: PeerId, source: Source) {
    let Some(addr) = source.direct() else { return };
    let told = cx.peers[peer].punch.told;
    let fresh =
        told.is_some_and(|(a, t)| a == addr && now.saturating_duration_since(t) < TELL_AGAIN);
    if fresh {
        return;
    }
    cx.peers.quiet_mut(peer).punch.told = Some((addr, now));
    cx.answer(now, peer, source, &Control::Observed { addr });
}
