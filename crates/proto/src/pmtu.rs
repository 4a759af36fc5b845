//! Path MTU discovery on one direct underlay link.
//!
//! `listen.underlay-mtu` says how large a datagram the local network takes;
//! the path to a peer may take less (a tunnel, PPPoE, a provider's 1400-byte
//! link in the middle), and where no router reports it (ICMP filtered, or
//! a link that silently drops what it cannot carry) full-size packets
//! vanish: the classic black hole. Each link therefore measures its path
//! with padded probes, in the spirit of RFC 8899 (packetization-layer PMTU
//! discovery): probes are control messages inside the session (kind 10),
//! answered by the peer (kind 11), so they are authenticated and cannot be
//! faked by an off-path sender.
//!
//! The search probes the configured ceiling first (most paths carry it: one
//! probe and done), and only if that fails [`TRIES`] times, halves the
//! interval between the largest size that passed (at least
//! [`MIN_PATH_MTU`]) and the smallest that failed, down to
//! [`PRECISION`] bytes. Until a probe has failed the link is assumed to
//! carry the ceiling, as before discovery existed; once one has, data
//! larger than what passed is refused with [`crate::endpoint::SendOutcome::TooBig`]
//! (the agent answers with ICMP "packet too big", so TCP shrinks its
//! segments). A link below its ceiling tries the ceiling again every
//! [`RAISE_AFTER`] (RFC 8899's raise timer), without assuming it meanwhile.
//!
//! A path can also shrink while the link stays up (the underlay's route
//! moves onto a tunnel). Small probes still pass, so the link looks
//! healthy while every full-size packet vanishes. Once the search is
//! complete, a link that carries datagrams larger than [`MIN_PATH_MTU`]
//! therefore confirms the size in use every [`CONFIRM_EVERY`] with one
//! probe of exactly that size (RFC 8899's confirmation timer, §5.2). When
//! [`TRIES`] confirmation probes in a row are lost, the path is a black
//! hole at that size: data drops to [`MIN_PATH_MTU`] at once and the
//! search runs again below the size that failed. An idle link, or one
//! carrying only small packets, sends no confirmation probes.
//!
//! Sizes are whole IP datagrams (outer IP and UDP headers included).

use std::time::{Duration, Instant};

/// The smallest path MTU assumed to work without probing (IPv6's minimum).
pub const MIN_PATH_MTU: usize = 1280;
/// Probes of one size before that size counts as too big.
pub const TRIES: u8 = 3;
/// The search stops when the largest size that passed and the smallest
/// that failed are this close.
pub const PRECISION: usize = 8;
/// A link below its ceiling probes the ceiling again this often.
pub const RAISE_AFTER: Duration = Duration::from_secs(600);
/// While datagrams larger than [`MIN_PATH_MTU`] are sent on a link whose
/// search is complete, the size in use is confirmed this often.
pub const CONFIRM_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Probe {
    seq: u32,
    size: usize,
    deadline: Instant,
    tries: u8,
    /// A confirmation of the size in use, not a search probe.
    confirm: bool,
}

/// Path MTU state of one direct link.
#[derive(Debug, Clone)]
pub struct PathMtu {
    ceiling: usize,
    /// Largest size known to pass.
    confirmed: usize,
    /// Smallest size known not to pass (in this search).
    failed: Option<usize>,
    /// Data is held to this once a probe failed (`None`: the ceiling).
    limit: Option<usize>,
    /// The last probe sent; `in_flight` while unanswered and not timed out.
    probe: Option<Probe>,
    in_flight: bool,
    /// Searching below the ceiling finished: try the ceiling at `next_at`.
    raise_pending: bool,
    next_seq: u32,
    next_at: Instant,
    /// The size in use is next confirmed at this time (`None` while
    /// searching).
    confirm_at: Option<Instant>,
    /// A datagram larger than [`MIN_PATH_MTU`] went out since the last
    /// confirmation passed.
    big_sent: bool,
}

impl PathMtu {
    /// A link whose local network takes datagrams of `ceiling` bytes; the
    /// first probe is due at once.
    pub fn new(ceiling: usize, now: Instant) -> Self {
        Self {
            ceiling,
            confirmed: MIN_PATH_MTU.min(ceiling),
            failed: None,
            limit: None,
            probe: None,
            in_flight: false,
            raise_pending: false,
            next_seq: 1,
            next_at: now,
            confirm_at: None,
            big_sent: false,
        }
        .settled(now)
    }

    /// Starts the confirmation timer once the search is complete.
    fn settled(mut self, now: Instant) -> Self {
        self.settle(now);
        self
    }

    fn settle(&mut self, now: Instant) {
        if self.target().is_none() && self.confirm_at.is_none() {
            self.confirm_at = Some(now + CONFIRM_EVERY);
        }
    }

    /// Counts a datagram of `size` bytes sent on this link: large ones
    /// keep the size in use confirmed.
    pub fn on_data_sent(&mut self, size: usize) {
        if size > MIN_PATH_MTU {
            self.big_sent = true;
        }
    }

    /// The largest datagram to send on this link now: the ceiling until a
    /// probe failed, then the largest size that passed.
    pub fn mtu(&self) -> usize {
        self.limit.unwrap_or(self.ceiling)
    }

    /// Whether the search is still going.
    pub fn searching(&self) -> bool {
        self.target().is_some()
    }

    /// The next size to probe, if any.
    fn target(&self) -> Option<usize> {
        match self.failed {
            None => (self.confirmed < self.ceiling).then_some(self.ceiling),
            Some(failed) => {
                let hi = failed - 1;
                (hi >= self.confirmed + PRECISION).then(|| (self.confirmed + hi).div_ceil(2))
            }
        }
    }

    /// A probe to send now, `(sequence, datagram size)`, if one is due.
    /// `timeout`: how long to wait for its answer (a few RTTs).
    pub fn poll_probe(&mut self, now: Instant, timeout: Duration) -> Option<(u32, usize)> {
        if self.in_flight {
            return None;
        }
        if now >= self.next_at {
            if self.raise_pending {
                // The raise timer: try the ceiling again (data stays limited).
                self.raise_pending = false;
                self.failed = None;
                self.confirm_at = None;
            }
            match self.target() {
                Some(size) => return Some(self.send(now, timeout, size, false)),
                None if self.limit.is_some() => {
                    self.raise_pending = true;
                    self.next_at = now + RAISE_AFTER;
                }
                None => {}
            }
        }
        // The search is complete: confirm the size in use while it is used.
        let confirm =
            self.target().is_none() && self.big_sent && self.confirm_at.is_some_and(|t| now >= t);
        confirm.then(|| self.send(now, timeout, self.mtu(), true))
    }

    fn send(
        &mut self,
        now: Instant,
        timeout: Duration,
        size: usize,
        confirm: bool,
    ) -> (u32, usize) {
        let tries = self
            .probe
            .filter(|p| p.size == size && p.confirm == confirm)
            .map_or(1, |p| p.tries + 1);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        self.probe = Some(Probe {
            seq,
            size,
            deadline: now + timeout,
            tries,
            confirm,
        });
        self.in_flight = true;
        (seq, size)
    }

    /// Counts an unanswered probe past its deadline: retried, or after
    /// [`TRIES`] the size is too big. True if [`PathMtu::mtu`] changed.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let Some(p) = self.probe.filter(|p| self.in_flight && p.deadline <= now) else {
            return false;
        };
        self.in_flight = false;
        if !p.confirm {
            self.next_at = now;
        }
        if p.tries < TRIES {
            return false;
        }
        self.probe = None;
        let before = self.mtu();
        if p.confirm {
            // A black hole at the size in use: back to the size every path
            // carries, and search again below the one that failed.
            self.confirmed = MIN_PATH_MTU.min(self.ceiling);
            self.failed = Some(p.size);
            self.limit = Some(self.confirmed);
            self.raise_pending = false;
            self.next_at = now;
            self.confirm_at = None;
            self.big_sent = false;
        } else {
            self.failed = Some(self.failed.map_or(p.size, |f| f.min(p.size)));
            self.limit = Some(self.confirmed);
        }
        self.settle(now);
        self.mtu() != before
    }

    /// The peer answered probe `seq`. True if [`PathMtu::mtu`] changed.
    pub fn on_ack(&mut self, now: Instant, seq: u32) -> bool {
        let Some(p) = self.probe.filter(|p| self.in_flight && p.seq == seq) else {
            return false;
        };
        self.in_flight = false;
        self.probe = None;
        if p.confirm {
            self.confirm_at = Some(now + CONFIRM_EVERY);
            self.big_sent = false;
            return false;
        }
        self.next_at = now;
        self.confirmed = self.confirmed.max(p.size);
        let before = self.mtu();
        if self.confirmed >= self.ceiling {
            self.limit = None;
            self.failed = None;
        } else if self.limit.is_some() {
            self.limit = Some(self.confirmed);
        }
        self.settle(now);
        self.mtu() != before
    }

    /// When [`PathMtu::poll_probe`] or [`PathMtu::handle_timeout`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.in_flight {
            return self.probe.map(|p| p.deadline);
        }
        let search = (self.target().is_some() || self.limit.is_some()).then_some(self.next_at);
        let confirm = self
            .confirm_at
            .filter(|_| self.big_sent && self.target().is_none());
        search.into_iter().chain(confirm).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(100);

    /// Runs the search against a path that carries `path` bytes, answering
    /// instantly; returns the final MTU and the probes sent.
    fn search(ceiling: usize, path: usize) -> (PathMtu, Vec<usize>) {
        let mut now = Instant::now();
        let mut m = PathMtu::new(ceiling, now);
        let mut sent = Vec::new();
        for _ in 0..200 {
            if let Some((seq, size)) = m.poll_probe(now, T) {
                sent.push(size);
                if size <= path {
                    m.on_ack(now, seq);
                }
            }
            now += T;
            m.handle_timeout(now);
            if !m.searching() && !m.in_flight {
                break;
            }
        }
        (m, sent)
    }

    #[test]
    fn a_path_that_carries_the_ceiling_costs_one_probe() {
        let (m, sent) = search(1500, 1500);
        assert_eq!(sent, vec![1500]);
        assert_eq!(m.mtu(), 1500);
        assert!(!m.searching());
        assert_eq!(m.next_deadline(), None, "nothing more to do");
    }

    #[test]
    fn a_narrower_path_is_found_within_the_precision_and_never_overstated() {
        for path in [1280, 1300, 1404, 1420, 1492, 1499] {
            let (m, sent) = search(1500, path);
            assert!(
                m.mtu() <= path && m.mtu() + PRECISION > path,
                "path {path}: found {} after {sent:?}",
                m.mtu()
            );
            // The ceiling three times, then a binary search.
            assert_eq!(&sent[..3], &[1500, 1500, 1500]);
            assert!(sent.len() < 3 * 8, "path {path}: {} probes", sent.len());
        }
    }

    #[test]
    fn data_uses_the_ceiling_until_a_probe_fails_then_what_passed() {
        let now = Instant::now();
        let mut m = PathMtu::new(1500, now);
        assert_eq!(m.mtu(), 1500);
        for i in 0..TRIES {
            let t = now + T * u32::from(i);
            let (_, size) = m.poll_probe(t, T).unwrap();
            assert_eq!(size, 1500);
            assert_eq!(m.mtu(), 1500);
            m.handle_timeout(t + T);
        }
        assert_eq!(m.mtu(), MIN_PATH_MTU);
        let (seq, size) = m.poll_probe(now + T * 3, T).unwrap();
        assert!(size > MIN_PATH_MTU && size < 1500);
        assert!(m.on_ack(now + T * 3, seq));
        assert_eq!(m.mtu(), size);
    }

    #[test]
    fn below_the_ceiling_it_tries_the_ceiling_again_after_the_raise_timer() {
        let (mut m, _) = search(1500, 1400);
        let found = m.mtu();
        let now = Instant::now() + Duration::from_secs(100);
        assert_eq!(m.poll_probe(now, T), None);
        let at = m.next_deadline().unwrap();
        assert!(at >= now + RAISE_AFTER);
        let (seq, size) = m.poll_probe(at, T).unwrap();
        assert_eq!(size, 1500);
        assert_eq!(m.mtu(), found, "data stays limited while it is tried");
        // The path grew: the ceiling passes and data uses it.
        assert!(m.on_ack(at, seq));
        assert_eq!(m.mtu(), 1500);
    }

    /// Steps `m` for `secs` seconds in 100 ms steps over a path that carries
    /// `path` bytes, sending a datagram of `data` bytes each step (`None`:
    /// idle). Returns the probes sent, each with its time since the start,
    /// and when the MTU first changed.
    fn run(
        m: &mut PathMtu,
        start: Instant,
        secs: u64,
        path: usize,
        data: Option<usize>,
    ) -> (Vec<(Duration, usize)>, Option<Duration>) {
        let mut sent = Vec::new();
        let mut changed = None;
        let mut now = start;
        while now < start + Duration::from_secs(secs) {
            if let Some(d) = data {
                m.on_data_sent(d);
            }
            if let Some((seq, size)) = m.poll_probe(now, T) {
                sent.push((now - start, size));
                if size <= path && m.on_ack(now, seq) {
                    changed.get_or_insert(now - start);
                }
            }
            now += T;
            if m.handle_timeout(now) {
                changed.get_or_insert(now - start);
            }
        }
        (sent, changed)
    }

    #[test]
    fn a_path_that_shrinks_while_carrying_data_is_noticed_and_searched_again() {
        let (mut m, _) = search(1500, 1500);
        let start = Instant::now() + Duration::from_secs(1);
        // Full-size data over a path that carries it: one confirmation
        // every CONFIRM_EVERY, each at the size in use, nothing changes.
        let (sent, changed) = run(&mut m, start, 30, 1500, Some(1500));
        assert_eq!(changed, None);
        assert!(sent.iter().all(|&(_, size)| size == 1500), "{sent:?}");
        assert_eq!(sent.len() as u64, 30 / CONFIRM_EVERY.as_secs(), "{sent:?}");
        // The path shrinks to 1400 while the link stays up: the next
        // confirmation and its retries are lost, data drops to the minimum
        // at once, and the search finds the new size.
        let start = start + Duration::from_secs(30);
        let (sent, changed) = run(&mut m, start, 20, 1400, Some(1400));
        let changed = changed.expect("the shrink was never noticed");
        assert!(
            changed <= CONFIRM_EVERY + T * 4 * u32::from(TRIES),
            "noticed after {changed:?}: {sent:?}"
        );
        assert!(
            m.mtu() <= 1400 && m.mtu() + PRECISION > 1400,
            "found {} after {sent:?}",
            m.mtu()
        );
    }

    #[test]
    fn an_idle_link_or_one_with_small_packets_sends_no_confirmations() {
        let (mut m, _) = search(1500, 1500);
        let start = Instant::now() + Duration::from_secs(1);
        assert_eq!(run(&mut m, start, 60, 1500, None).0, vec![]);
        assert_eq!(m.next_deadline(), None);
        let start = start + Duration::from_secs(60);
        assert_eq!(run(&mut m, start, 60, 1500, Some(MIN_PATH_MTU)).0, vec![]);
        // One large datagram: a confirmation is due at once (the timer ran
        // out while idle).
        m.on_data_sent(1500);
        assert!(m.next_deadline().is_some());
        let (sent, _) = run(&mut m, start + Duration::from_secs(60), 1, 1500, None);
        assert_eq!(sent, vec![(Duration::ZERO, 1500)]);
    }

    #[test]
    fn a_lost_confirmation_below_the_ceiling_does_not_bring_the_raise_timer_forward() {
        let (mut m, _) = search(1500, 1400);
        let found = m.mtu();
        let start = Instant::now() + Duration::from_secs(1);
        // The path shrinks further, to 1300: the confirmations at `found`
        // are lost and the search runs again below it.
        let (sent, changed) = run(&mut m, start, 20, 1300, Some(found));
        assert!(changed.is_some(), "{sent:?}");
        assert!(m.mtu() <= 1300 && m.mtu() + PRECISION > 1300, "{sent:?}");
        // No probe of the ceiling in there: the raise timer is 10 minutes.
        assert!(sent.iter().all(|&(_, size)| size < 1500), "{sent:?}");
    }

    #[test]
    fn late_and_unknown_answers_change_nothing() {
        let now = Instant::now();
        let mut m = PathMtu::new(1500, now);
        let (seq, _) = m.poll_probe(now, T).unwrap();
        assert!(!m.on_ack(now, seq + 1));
        m.handle_timeout(now + T);
        assert!(!m.on_ack(now + T, seq), "timed out already");
        assert_eq!(m.mtu(), 1500);
    }
}
