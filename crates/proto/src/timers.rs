//! WireGuard's timers (whitepaper §6): the protocol constants, and
//! [`PeerTimers`], the per-peer state machine that decides when to
//! retransmit an initiation, start a new handshake, send a keepalive and
//! erase keys. The endpoint feeds it what happened (`on_*`) and runs what
//! [`PeerTimers::take_due`] says is due; it holds no sessions itself.

use std::time::{Duration, Instant};

/// The initiator starts a new handshake when a session is this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session is never used, for sending or receiving, past this age.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Give up retrying a handshake after this long.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Retransmit a handshake initiation after this long without a response.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Send a keepalive when data arrived and nothing was sent for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The initiator rekeys after this many messages on a session.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Random extra delay, up to this much, on handshake retransmissions.
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(334);
/// All key material of a peer is erased after this long without a new handshake.
pub const ZERO_KEYS_AFTER: Duration = Duration::from_secs(3 * 180);

/// Whether a session established at `established` may still carry packets.
pub fn usable(established: Instant, now: Instant) -> bool {
    now.saturating_duration_since(established) < REJECT_AFTER_TIME
}

/// Whether the initiator of a session established at `established` should
/// rekey before sending (age or message count).
pub fn rekey_before_send(established: Instant, sent: u64, now: Instant) -> bool {
    now.saturating_duration_since(established) >= REKEY_AFTER_TIME || sent >= REKEY_AFTER_MESSAGES
}

/// Whether the initiator of a session established at `established` should
/// rekey on receiving: the session will be rejected before a handshake
/// started later could complete.
pub fn rekey_on_receive(established: Instant, now: Instant) -> bool {
    now.saturating_duration_since(established)
        >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
}

/// The timers of one peer.
#[derive(Debug, Clone, Default)]
pub struct PeerTimers {
    persistent_keepalive: Option<Duration>,
    /// When the current run of handshake attempts began.
    attempt_started: Option<Instant>,
    retransmit_at: Option<Instant>,
    keepalive_at: Option<Instant>,
    new_handshake_at: Option<Instant>,
    persistent_at: Option<Instant>,
    last_handshake: Option<Instant>,
    /// When a packet for an unknown session last made us re-handshake.
    last_resync: Option<Instant>,
}

/// What [`PeerTimers::take_due`] found due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Due {
    /// Send the initiation again.
    pub retransmit: bool,
    /// Stop: the handshake was retried for [`REKEY_ATTEMPT_TIME`]; drop the
    /// pending handshake and the queued packets.
    pub give_up: bool,
    /// Data was sent and nothing came back: start a new handshake (if none
    /// is in progress).
    pub new_handshake: bool,
    /// Send a keepalive (passive, or the persistent one).
    pub keepalive: bool,
    /// Erase every session: no handshake for [`ZERO_KEYS_AFTER`].
    pub zero_keys: bool,
}

impl PeerTimers {
    /// Timers for a peer with this persistent keepalive interval.
    pub fn new(persistent_keepalive: Option<Duration>) -> Self {
        Self {
            persistent_keepalive,
            ..Self::default()
        }
    }

    /// Changes the persistent keepalive interval (from the next send on).
    pub fn set_persistent_keepalive(&mut self, interval: Option<Duration>) {
        self.persistent_keepalive = interval;
    }

    /// When the last handshake completed.
    pub fn last_handshake(&self) -> Option<Instant> {
        self.last_handshake
    }

    /// An initiation went out; `jitter` is the random extra delay of the
    /// retransmission (below [`REKEY_TIMEOUT_JITTER_MAX`]).
    pub fn on_initiation_sent(&mut self, now: Instant, jitter: Duration) {
        self.attempt_started.get_or_insert(now);
        self.retransmit_at = Some(now + REKEY_TIMEOUT + jitter);
    }

    /// A handshake completed. An initiator stops retransmitting; a
    /// responder keeps its own attempt (if any) running until its session
    /// is confirmed.
    pub fn on_handshake_complete(&mut self, now: Instant, initiator: bool) {
        self.last_handshake = Some(now);
        if initiator {
            self.attempt_started = None;
            self.retransmit_at = None;
        }
    }

    /// A packet carrying data (or the queue after a handshake) was sent.
    pub fn on_data_sent(&mut self, now: Instant) {
        self.keepalive_at = None;
        if self.new_handshake_at.is_none() {
            self.new_handshake_at = Some(now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT);
        }
        if let Some(d) = self.persistent_keepalive {
            self.persistent_at = Some(now + d);
        }
    }

    /// An authenticated packet with `len` bytes of plaintext arrived.
    pub fn on_packet_received(&mut self, now: Instant, len: usize) {
        self.new_handshake_at = None;
        if len > 0 && self.keepalive_at.is_none() {
            self.keepalive_at = Some(now + KEEPALIVE_TIMEOUT);
        }
    }

    /// Whether a packet for a session we lost may start a handshake now: at
    /// most once per [`REKEY_TIMEOUT`] (recorded when it may).
    pub fn take_resync(&mut self, now: Instant) -> bool {
        let recent = self
            .last_resync
            .is_some_and(|t| now.saturating_duration_since(t) < REKEY_TIMEOUT);
        if !recent {
            self.last_resync = Some(now);
        }
        !recent
    }

    /// Forgets every pending timer (the peer's sessions were torn down); the
    /// time of the last handshake and of the last resync stay.
    pub fn stop(&mut self) {
        self.attempt_started = None;
        self.retransmit_at = None;
        self.keepalive_at = None;
        self.new_handshake_at = None;
        self.persistent_at = None;
    }

    /// The earliest timer; `has_keys` says whether any session exists (key
    /// erasure is a timer only then).
    pub fn deadline(&self, has_keys: bool) -> Option<Instant> {
        let keys = has_keys
            .then_some(self.last_handshake)
            .flatten()
            .map(|t| t + ZERO_KEYS_AFTER);
        [
            self.retransmit_at,
            self.keepalive_at,
            self.new_handshake_at,
            self.persistent_at,
            keys,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The timers due at `now`, each cleared or rescheduled as it fires.
    pub fn take_due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        if self.retransmit_at.is_some_and(|t| t <= now) {
            let gave_up = self
                .attempt_started
                .is_some_and(|t| now.saturating_duration_since(t) >= REKEY_ATTEMPT_TIME);
            if gave_up {
                self.retransmit_at = None;
                self.attempt_started = None;
                due.give_up = true;
            } else {
                due.retransmit = true;
            }
        }
        if self.new_handshake_at.is_some_and(|t| t <= now) {
            self.new_handshake_at = None;
            due.new_handshake = true;
        }
        let keepalive_due = self.keepalive_at.is_some_and(|t| t <= now);
        let persistent_due = self.persistent_at.is_some_and(|t| t <= now);
        if keepalive_due || persistent_due {
            self.keepalive_at = None;
            due.keepalive = true;
        }
        if self.persistent_at.is_none() || persistent_due {
            self.persistent_at = self.persistent_keepalive.map(|d| now + d);
        }
        if self
            .last_handshake
            .is_some_and(|t| now.saturating_duration_since(t) >= ZERO_KEYS_AFTER)
        {
            self.last_handshake = None;
            due.zero_keys = true;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_handshake_gives_up_after_the_attempt_time() {
        let t0 = Instant::now();
        let mut t = PeerTimers::new(None);
        t.on_initiation_sent(t0, Duration::ZERO);
        assert_eq!(t.deadline(false), Some(t0 + REKEY_TIMEOUT));
        assert_eq!(t.take_due(t0 + Duration::from_secs(1)), Due::default());
        let mut at = t0;
        loop {
            at += REKEY_TIMEOUT;
            let due = t.take_due(at);
            if due.give_up {
                break;
            }
            assert!(due.retransmit);
            t.on_initiation_sent(at, Duration::ZERO);
        }
        assert_eq!(at - t0, REKEY_ATTEMPT_TIME);
        assert_eq!(t.deadline(false), None, "nothing left to retry");
    }

    #[test]
    fn data_without_an_answer_asks_for_a_new_handshake_and_received_data_for_a_keepalive() {
        let t0 = Instant::now();
        let mut t = PeerTimers::new(None);
        t.on_data_sent(t0);
        let at = t0 + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT;
        assert_eq!(t.deadline(false), Some(at));
        // An answer in time cancels it.
        t.on_packet_received(t0 + Duration::from_secs(1), 100);
        assert_eq!(
            t.deadline(false),
            Some(t0 + Duration::from_secs(1) + KEEPALIVE_TIMEOUT),
            "received data is answered by a keepalive"
        );
        assert!(
            t.take_due(t0 + Duration::from_secs(1) + KEEPALIVE_TIMEOUT)
                .keepalive
        );
        // A keepalive received (no data) asks for nothing.
        let mut t = PeerTimers::new(None);
        t.on_packet_received(t0, 0);
        assert_eq!(t.deadline(false), None);
        t.on_data_sent(t0);
        assert!(t.take_due(at).new_handshake);
    }

    #[test]
    fn persistent_keepalive_repeats_and_keys_are_erased_only_with_sessions() {
        let t0 = Instant::now();
        let every = Duration::from_secs(25);
        let mut t = PeerTimers::new(Some(every));
        assert!(!t.take_due(t0).keepalive, "first run only schedules");
        assert!(t.take_due(t0 + every).keepalive);
        assert_eq!(t.deadline(false), Some(t0 + 2 * every));
        let mut t = PeerTimers::new(None);
        t.on_handshake_complete(t0, false);
        assert_eq!(t.deadline(false), None);
        assert_eq!(t.deadline(true), Some(t0 + ZERO_KEYS_AFTER));
        assert!(t.take_due(t0 + ZERO_KEYS_AFTER).zero_keys);
        assert_eq!(t.last_handshake(), None);
    }

    #[test]
    fn resyncs_are_spaced_by_the_rekey_timeout() {
        let t0 = Instant::now();
        let mut t = PeerTimers::new(None);
        assert!(t.take_resync(t0));
        assert!(!t.take_resync(t0 + Duration::from_secs(4)));
        assert!(t.take_resync(t0 + REKEY_TIMEOUT));
    }

    #[test]
    fn the_initiator_rekeys_by_age_or_count_and_before_rejection() {
        let t0 = Instant::now();
        assert!(!rekey_before_send(t0, 0, t0 + Duration::from_secs(119)));
        assert!(rekey_before_send(t0, 0, t0 + REKEY_AFTER_TIME));
        assert!(rekey_before_send(t0, REKEY_AFTER_MESSAGES, t0));
        assert!(!rekey_on_receive(t0, t0 + Duration::from_secs(164)));
        assert!(rekey_on_receive(t0, t0 + Duration::from_secs(165)));
        assert!(usable(t0, t0 + Duration::from_secs(179)));
        assert!(!usable(t0, t0 + REJECT_AFTER_TIME));
    }
}
