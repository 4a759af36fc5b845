//! Health of one direct link: probes, RTT, jitter, loss, up and down.
//!
//! Each node probes every peer it has a direct underlay address and a
//! session for. A probe is a control message ([`crate::control`]) sealed in
//! the peer's session and sent to its *direct* address, whatever the current
//! route; the reply comes back the same way. So a probe measures the direct
//! link both ways, and a link cut in either direction stops the replies
//! (a one-way failure is seen by both ends: each one's probes or replies
//! cross the dead direction).
//!
//! Rates: a link that carried data in the last [`HealthConfig::active_window`]
//! is probed every [`HealthConfig::probe_interval`] (50 ms), an idle one every
//! [`HealthConfig::idle_probe_interval`]; sending data on an idle link makes
//! the next probe due at once (data-plane evidence: traffic with no answer is
//! noticed within the fast interval, not the idle one). A probe is lost when
//! unanswered after `max(2·srtt + 4·rttvar, 75 ms)`, at most 1 s (1 s
//! before the first answer), idle or not. A link that lost a probe is
//! *suspect* (as BFD's poll or SWIM's suspicion): at once it gets as many
//! probes as the losses still needed to call it down, 5 ms apart, and no
//! more until one of them is answered or lost. An idle link's failure is
//! confirmed ~0.16 s after its first idle probe went out unanswered, by
//! as many losses as ever, not by three more idle intervals. A link whose
//! far end another node reported gone
//! ([`LinkHealth::on_far_end_suspected`]) is down after two consecutive
//! losses instead of [`HealthConfig::down_after_misses`] for
//! [`RUMOUR_WINDOW`]: two independent witnesses, as Lifeguard lets a
//! corroborated suspicion time out sooner. This asks a live peer to
//! answer within ~0.15 s: meshd answers probes on its packet workers and
//! checks signatures and handshakes on other threads
//! (docs/decisions/signature-checks-off-the-packet-path.md), so a peer
//! busy with a burst of checks still answers.
//! A down link is probed fast for
//! [`DOWN_FAST_WINDOW`] after it failed, and again as soon as it answers;
//! a link down longer than that, carrying no data, is probed at the idle rate
//! (a node that saw a thousand peers vanish does not send them 20 probes a
//! second each). After
//! [`HealthConfig::down_after_misses`] consecutive losses the link is down;
//! after [`HealthConfig::up_after_replies`] consecutive replies it is up
//! again. [`LinkHealth::up_since`] lets the router hold a recovered link down
//! for a while before moving traffic back (hysteresis): for
//! [`HealthConfig::hold_down`] after an isolated failure, twice as long for
//! each further failure of the last minute ([`LinkHealth::hold_down`]), so
//! a flapping link keeps its traffic on another path.
//!
//! Every regular interval, fast or idle, is shortened by a random 0–25 %
//! per probe, as BFD jitters its packets (RFC 5880 §6.8.7): links that came
//! up together, as a relay's do when it restarts, would otherwise probe in
//! step, and a crash just after their common probe would go unseen by all
//! of them for a whole interval. The state machine draws no randomness: the
//! endpoint gives each link a salt ([`LinkHealth::with_salt`]) and the
//! jitter is a hash of the salt and the probe's sequence number.
//!
//! Routes weigh a link by its base RTT ([`LinkHealth::base_rtt`]: the
//! smallest sample of the last [`BASE_RTT_WINDOW`]), not the smoothed RTT:
//! probes queue behind the traffic the link carries, so a busy link's
//! smoothed RTT rises with its own load, and a route weighed by it would
//! leave a link for being used, then come back to it once idle (as BBR keeps
//! its minimum RTT apart from queueing). Loss and failure still move routes
//! at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Probing parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Probe interval on a link carrying data, and on a down link.
    pub probe_interval: Duration,
    /// Probe interval on an idle link.
    pub idle_probe_interval: Duration,
    /// A link is active for this long after data was sent on it.
    pub active_window: Duration,
    /// Consecutive lost probes that make a link down.
    pub down_after_misses: u32,
    /// Consecutive replies that make a down link up again.
    pub up_after_replies: u32,
    /// How long a recovered link must stay up before routes prefer it
    /// again, after an isolated failure (longer for a flapping link: see
    /// [`LinkHealth::hold_down`]).
    pub hold_down: Duration,
    /// Timers firing this late mean *this* node was not running (CPU
    /// starvation, a paused VM, SIGSTOP): probes in flight across the stall
    /// are not counted lost for it and their replies give no RTT sample
    /// (Lifeguard's point: a slow node must not blame its peers).
    /// `None`: off.
    pub stall_threshold: Option<Duration>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_millis(50),
            idle_probe_interval: Duration::from_secs(1),
            active_window: Duration::from_secs(5),
            down_after_misses: 4,
            up_after_replies: 3,
            hold_down: Duration::from_secs(2),
            stall_threshold: Some(Duration::from_millis(100)),
        }
    }
}

/// Up or down, as probes last showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// Usable (also before the first probe resolves).
    Up,
    /// Consecutive probes were lost.
    Down,
}

/// A status change reported by [`LinkHealth::handle_timeout`] or
/// [`LinkHealth::on_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkChange {
    /// The link came back.
    WentUp,
    /// The link failed.
    WentDown,
}

const MAX_OUTSTANDING: usize = 32;
/// The base RTT is the smallest sample of this long.
pub const BASE_RTT_WINDOW: Duration = Duration::from_secs(10);
/// Samples are kept as the minimum of each slice this long.
const BASE_RTT_SLICE: Duration = Duration::from_secs(1);
/// A down link is probed at the fast rate for this long after it failed,
/// then at the idle rate until it answers or carries data again.
pub const DOWN_FAST_WINDOW: Duration = Duration::from_secs(10);
const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// No probe is lost sooner than this: a peer descheduled for a few tens of
/// milliseconds on a busy host is slow, not gone.
const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(75);
/// A report that a link's far end is gone makes two lost probes enough
/// for this long.
pub const RUMOUR_WINDOW: Duration = Duration::from_secs(1);
/// Consecutive losses that make a link down while a report says its far
/// end is gone.
const CORROBORATED_MISSES: u32 = 2;
/// A suspect link's probes go this far apart until enough are in flight
/// to decide it (apart, so one burst of loss does not take them all).
const SUSPECT_BURST_SPACING: Duration = Duration::from_millis(5);
/// Each regular probe interval is shortened by up to this share, at
/// random per probe (BFD's jitter, RFC 5880 §6.8.7): links that came up
/// together, say to a relay that just restarted, would otherwise probe it
/// in step forever, and a crash just after their common probe would go
/// unseen by all of them for a whole interval. Shortening only, never
/// lengthening: an interval is never longer than configured.
const INTERVAL_JITTER: f64 = 0.25;
/// Failures this close before a recovery lengthen its hold-down
/// ([`LinkHealth::hold_down`]).
pub const FLAP_DAMPING_WINDOW: Duration = Duration::from_secs(60);
/// A hold-down is at most the configured one doubled this many times.
const MAX_HOLD_DOWN_DOUBLINGS: u32 = 4;
/// A link's failures are remembered this long, to tell a flapping link
/// from one that failed once.
pub const FLAP_WINDOW: Duration = Duration::from_secs(600);
/// At most this many failures are remembered (more is flapping anyway).
const FLAP_MEMORY: usize = 16;

/// One unanswered probe.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u32,
    sent: Instant,
    /// Lost after this.
    deadline: Instant,
    /// This node stalled while it was in flight (no RTT sample then).
    stalled: bool,
}

/// Probe state of one direct link.
#[derive(Debug, Clone)]
pub struct LinkHealth {
    config: HealthConfig,
    status: LinkStatus,
    up_since: Option<Instant>,
    /// When the link last went down.
    down_since: Option<Instant>,
    /// When the last probe reply arrived.
    last_reply: Option<Instant>,
    next_seq: u32,
    /// Unanswered probes.
    outstanding: VecDeque<InFlight>,
    srtt: Option<Duration>,
    rttvar: Duration,
    last_rtt: Option<Duration>,
    /// The smallest RTT sample of each slice of the base-RTT window, oldest
    /// first: (slice start, minimum, maximum).
    minima: VecDeque<(Instant, Duration, Duration)>,
    /// Last 64 resolved probes, newest in bit 0: 1 = answered.
    history: u64,
    resolved: u32,
    misses: u32,
    replies: u32,
    next_probe: Instant,
    last_data: Option<Instant>,
    /// When it went down, within [`FLAP_WINDOW`], oldest first.
    failures: VecDeque<Instant>,
    /// When another node last reported the far end gone.
    rumour: Option<Instant>,
    /// Seeds the interval jitter (see [`LinkHealth::with_salt`]).
    salt: u64,
}

impl LinkHealth {
    /// Takes new settings (a reloaded configuration); the link's state and
    /// measurements stay.
    pub fn set_config(&mut self, config: HealthConfig) {
        self.config = config;
    }

    /// A link first seen at `now`; the first probe is due at once.
    pub fn new(config: HealthConfig, now: Instant) -> Self {
        Self {
            config,
            status: LinkStatus::Up,
            up_since: None,
            down_since: None,
            last_reply: None,
            next_seq: 1,
            outstanding: VecDeque::new(),
            srtt: None,
            rttvar: Duration::ZERO,
            last_rtt: None,
            minima: VecDeque::new(),
            history: 0,
            resolved: 0,
            misses: 0,
            replies: 0,
            next_probe: now,
            last_data: None,
            failures: VecDeque::new(),
            rumour: None,
            salt: 0,
        }
    }

    /// Seeds this link's interval jitter: links given different salts
    /// drift apart however in step they start. The state machine has no
    /// randomness of its own; the endpoint draws the salt from its
    /// generator.
    pub fn with_salt(mut self, salt: u64) -> Self {
        self.salt = salt;
        self
    }

    /// Times it went down within [`FLAP_WINDOW`] before `now` (at most
    /// 16): a link that keeps failing and coming back is flapping.
    pub fn failures_within_window(&self, now: Instant) -> usize {
        (self.failures.iter())
            .filter(|t| now.saturating_duration_since(**t) < FLAP_WINDOW)
            .count()
    }

    /// Up or down.
    pub fn status(&self) -> LinkStatus {
        self.status
    }

    /// When the link last came back up (`None`: never seen down).
    pub fn up_since(&self) -> Option<Instant> {
        self.up_since
    }

    /// Whether the link is up and past its hold-down.
    pub fn settled(&self, now: Instant) -> bool {
        self.status == LinkStatus::Up
            && self
                .up_since
                .is_none_or(|t| now.saturating_duration_since(t) >= self.hold_down())
    }

    /// The hold-down of the latest recovery: [`HealthConfig::hold_down`],
    /// doubled for each further failure within [`FLAP_DAMPING_WINDOW`]
    /// before it, up to [`MAX_HOLD_DOWN_DOUBLINGS`] times (as BGP damps a
    /// flapping route). A link that fails now and then is held down for
    /// the configured time; one that keeps failing for longer each time,
    /// so that outages too short or too few to be seen every time still
    /// do not move routes back and forth.
    pub fn hold_down(&self) -> Duration {
        let Some(up) = self.up_since else {
            return self.config.hold_down;
        };
        let recent = (self.failures.iter())
            .filter(|t| up.saturating_duration_since(**t) < FLAP_DAMPING_WINDOW)
            .count() as u32;
        self.config.hold_down * (1 << recent.saturating_sub(1).min(MAX_HOLD_DOWN_DOUBLINGS))
    }

    /// Smoothed RTT, once a probe was answered.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The last RTT sample.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// The smallest RTT sample of the last [`BASE_RTT_WINDOW`] (the smoothed
    /// RTT when the window holds none): what the link costs without the
    /// queue its own traffic builds.
    pub fn base_rtt(&self, now: Instant) -> Option<Duration> {
        self.minima
            .iter()
            .filter(|(start, ..)| now.saturating_duration_since(*start) < BASE_RTT_WINDOW)
            .map(|(_, rtt, _)| *rtt)
            .min()
            .or(self.srtt)
    }

    /// The spread of the RTT samples of the last [`BASE_RTT_WINDOW`]: the
    /// largest minus the smallest (zero with fewer than two). How far the
    /// base RTT may be off by noise alone: routes leave a working direct
    /// link only for a path better by more than this.
    pub fn rtt_spread(&self, now: Instant) -> Duration {
        let live = || {
            (self.minima.iter())
                .filter(|(start, ..)| now.saturating_duration_since(*start) < BASE_RTT_WINDOW)
        };
        let lo = live().map(|(_, min, _)| *min).min();
        let hi = live().map(|(.., max)| *max).max();
        match (lo, hi) {
            (Some(lo), Some(hi)) => hi.saturating_sub(lo),
            _ => Duration::ZERO,
        }
    }

    fn sample(&mut self, now: Instant, rtt: Duration) {
        match self.minima.back_mut() {
            Some((start, min, max)) if now.saturating_duration_since(*start) < BASE_RTT_SLICE => {
                *min = (*min).min(rtt);
                *max = (*max).max(rtt);
            }
            _ => self.minima.push_back((now, rtt, rtt)),
        }
        while self
            .minima
            .front()
            .is_some_and(|(start, ..)| now.saturating_duration_since(*start) >= BASE_RTT_WINDOW)
        {
            self.minima.pop_front();
        }
    }

    /// RTT variation (jitter), RFC 6298 style.
    pub fn jitter(&self) -> Duration {
        self.rttvar
    }

    /// Fraction of the last (up to 64) resolved probes that were lost.
    pub fn loss(&self) -> f64 {
        let n = self.resolved.min(64);
        if n == 0 {
            return 0.0;
        }
        let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        1.0 - f64::from((self.history & mask).count_ones()) / f64::from(n)
    }

    /// Data was sent on this link: probe fast from now on, starting at once
    /// if the link was idle.
    pub fn on_data_sent(&mut self, now: Instant) {
        let idle = !self.active(now);
        self.last_data = Some(now);
        if idle {
            self.next_probe = self.next_probe.min(now);
        }
    }

    fn active(&self, now: Instant) -> bool {
        let recent = |t: Option<Instant>, window: Duration| {
            t.is_some_and(|t| now.saturating_duration_since(t) < window)
        };
        recent(self.last_data, self.config.active_window)
            || (self.status == LinkStatus::Down
                && (recent(self.down_since, DOWN_FAST_WINDOW)
                    || recent(self.last_reply, self.config.active_window)))
    }

    /// When the link went down, while it is down.
    pub fn down_since(&self) -> Option<Instant> {
        (self.status == LinkStatus::Down)
            .then_some(self.down_since)
            .flatten()
    }

    /// Whether data was sent on the link within the active window.
    pub fn carries_data(&self, now: Instant) -> bool {
        self.last_data
            .is_some_and(|t| now.saturating_duration_since(t) < self.config.active_window)
    }

    /// Up, and the last probe was lost.
    fn suspect(&self) -> bool {
        self.status == LinkStatus::Up && self.misses > 0
    }

    /// Consecutive losses that make the link down now.
    fn misses_needed(&self, now: Instant) -> u32 {
        let rumoured =
            (self.rumour).is_some_and(|t| now.saturating_duration_since(t) < RUMOUR_WINDOW);
        if rumoured {
            self.config.down_after_misses.min(CORROBORATED_MISSES)
        } else {
            self.config.down_after_misses
        }
    }

    /// Losses still needed to call the link down.
    fn undecided(&self, now: Instant) -> usize {
        self.misses_needed(now).saturating_sub(self.misses) as usize
    }

    /// The regular interval, shortened by this probe's share of
    /// [`INTERVAL_JITTER`].
    fn jittered(&self, interval: Duration, seq: u32) -> Duration {
        let h = crate::mix64(self.salt ^ u64::from(seq).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let share = (h >> 11) as f64 / (1u64 << 53) as f64;
        interval.mul_f64(1.0 - INTERVAL_JITTER * share)
    }

    fn interval(&self, now: Instant, seq: u32) -> Duration {
        if self.suspect() {
            // Enough probes in flight to decide, a few ms apart; then none
            // until one of them is answered or lost.
            if self.outstanding.len() < self.undecided(now) {
                SUSPECT_BURST_SPACING
            } else {
                self.probe_timeout()
            }
        } else if self.active(now) {
            self.jittered(self.config.probe_interval, seq)
        } else {
            self.jittered(self.config.idle_probe_interval, seq)
        }
    }

    fn probe_timeout(&self) -> Duration {
        // Before the first sample, wait as long as we ever do (RFC 6298's
        // initial RTO reasoning): a slow link is not a dead one.
        let Some(srtt) = self.srtt else {
            return MAX_PROBE_TIMEOUT;
        };
        (2 * srtt + 4 * self.rttvar)
            .max(MIN_PROBE_TIMEOUT)
            .min(MAX_PROBE_TIMEOUT)
    }

    /// A probe sequence number to send now, if one is due.
    pub fn poll_probe(&mut self, now: Instant) -> Option<u32> {
        if now < self.next_probe {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        if self.outstanding.len() == MAX_OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back(InFlight {
            seq,
            sent: now,
            deadline: now + self.probe_timeout(),
            stalled: false,
        });
        self.next_probe = now + self.interval(now, seq);
        Some(seq)
    }

    /// No probe can be sent now (no usable session): the next one is due an
    /// interval later, so the deadline moves on instead of staying past.
    pub fn defer_probe(&mut self, now: Instant) {
        if self.next_probe <= now {
            self.next_probe = now + self.interval(now, self.next_seq);
        }
    }

    /// Another node saw this link's far end go (a neighbour of it withdrew
    /// its link to it in an advert): an idle link that looks up, with no
    /// probe in flight, is probed at once rather than at its next idle
    /// probe, up to a second away. One probe early; what it finds decides,
    /// but for [`RUMOUR_WINDOW`] two lost probes in a row are enough.
    pub fn on_far_end_suspected(&mut self, now: Instant) {
        self.rumour = Some(now);
        if self.status == LinkStatus::Up && self.outstanding.is_empty() && !self.active(now) {
            self.next_probe = self.next_probe.min(now);
        }
    }

    /// The earliest time [`LinkHealth::handle_timeout`] or
    /// [`LinkHealth::poll_probe`] has work.
    pub fn next_deadline(&self) -> Instant {
        self.outstanding
            .iter()
            .map(|p| p.deadline)
            .fold(self.next_probe, Instant::min)
    }

    /// This node did not run for `stalled` until `now` (see
    /// [`HealthConfig::stall_threshold`]): every probe in flight gets that
    /// much longer, and at least its whole timeout from `now`, as if sent
    /// when this node resumed (its reply may be waiting, unread, in our
    /// socket, to be read after the timers that noticed the stall), and
    /// will give no RTT sample.
    pub fn on_local_stall(&mut self, now: Instant, stalled: Duration) {
        for p in &mut self.outstanding {
            p.deadline = (p.deadline + stalled).max(now + (p.deadline - p.sent));
            p.stalled = true;
        }
    }

    /// Counts probes unanswered past their timeout (fixed when each was
    /// sent) as lost.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<LinkChange> {
        let mut change = None;
        while let Some(pos) = self.outstanding.iter().position(|p| p.deadline <= now) {
            self.outstanding.remove(pos);
            // Every probe is a sample of the loss, whatever it was sent
            // for: each is lost or not independently of why it went.
            self.record(false);
            self.misses += 1;
            self.replies = 0;
            // Suspect: probes go at once until enough are in flight to
            // decide.
            if self.status == LinkStatus::Up && self.outstanding.len() < self.undecided(now) {
                self.next_probe = self.next_probe.min(now);
            }
            if self.status == LinkStatus::Up && self.misses >= self.misses_needed(now) {
                self.status = LinkStatus::Down;
                self.down_since = Some(now);
                while (self.failures.front())
                    .is_some_and(|t| now.saturating_duration_since(*t) >= FLAP_WINDOW)
                    || self.failures.len() >= FLAP_MEMORY
                {
                    self.failures.pop_front();
                }
                self.failures.push_back(now);
                change = Some(LinkChange::WentDown);
            }
        }
        change
    }

    /// A probe reply arrived on the direct path. Unknown or late sequence
    /// numbers are ignored (they were already counted as lost).
    pub fn on_reply(&mut self, now: Instant, seq: u32) -> Option<LinkChange> {
        let pos = self.outstanding.iter().position(|p| p.seq == seq)?;
        let InFlight { sent, stalled, .. } = self.outstanding.remove(pos)?;
        let rtt = now.saturating_duration_since(sent);
        match self.srtt {
            // Our own stall is in this one: it says nothing about the link.
            _ if stalled => {}
            None => {
                self.last_rtt = Some(rtt);
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
                self.sample(now, rtt);
            }
            Some(s) => {
                self.last_rtt = Some(rtt);
                let diff = s.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
                self.sample(now, rtt);
            }
        }
        self.record(true);
        self.misses = 0;
        self.replies += 1;
        self.last_reply = Some(now);
        if self.status == LinkStatus::Down {
            // A dead link answers: count it back up at the fast rate.
            self.next_probe = self.next_probe.min(now);
        }
        if self.status == LinkStatus::Down && self.replies >= self.config.up_after_replies {
            self.status = LinkStatus::Up;
            self.up_since = Some(now);
            // Loss is measured from here on; the outage is not loss.
            self.history = u64::MAX;
            return Some(LinkChange::WentUp);
        }
        None
    }

    fn record(&mut self, answered: bool) {
        self.history = (self.history << 1) | u64::from(answered);
        self.resolved = self.resolved.saturating_add(1);
    }
}

#[cfg(test)]
mod tests;
