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

#[derive(Debug, Clone, Copy)]
struct Probe {
    seq: u32,
    size: usize,
    deadline: Instant,
    tries: u8,
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
        if self.in_flight || now < self.next_at {
            return None;
        }
        if self.raise_pending {
            // The raise timer: try the ceiling again (data stays limited).
            self.raise_pending = false;
            self.failed = None;
        }
        let Some(size) = self.target() else {
            if self.limit.is_some() {
                self.raise_pending = true;
                self.next_at = now + RAISE_AFTER;
            }
            return None;
        };
        let tries = self
            .probe
            .filter(|p| p.size == size)
            .map_or(1, |p| p.tries + 1);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        self.probe = Some(Probe {
            seq,
            size,
            deadline: now + timeout,
            tries,
        });
        self.in_flight = true;
        Some((seq, size))
    }

    /// Counts an unanswered probe past its deadline: retried, or after
    /// [`TRIES`] the size is too big. True if [`PathMtu::mtu`] changed.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let Some(p) = self.probe.filter(|p| self.in_flight && p.deadline <= now) else {
            return false;
        };
        self.in_flight = false;
        self.next_at = now;
        if p.tries < TRIES {
            return false;
        }
        self.probe = None;
        self.failed = Some(self.failed.map_or(p.size, |f| f.min(p.size)));
        let before = self.mtu();
        self.limit = Some(self.confirmed);
        self.mtu() != before
    }

    /// The peer answered probe `seq`. True if [`PathMtu::mtu`] changed.
    pub fn on_ack(&mut self, now: Instant, seq: u32) -> bool {
        let Some(p) = self.probe.filter(|p| self.in_flight && p.seq == seq) else {
            return false;
        };
        self.in_flight = false;
        self.probe = None;
        self.next_at = now;
        self.confirmed = self.confirmed.max(p.size);
        let before = self.mtu();
        if self.confirmed >= self.ceiling {
            self.limit = None;
            self.failed = None;
        } else if self.limit.is_some() {
            self.limit = Some(self.confirmed);
        }
        self.mtu() != before
    }

    /// When [`PathMtu::poll_probe`] or [`PathMtu::handle_timeout`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.in_flight {
            return self.probe.map(|p| p.deadline);
        }
        (self.target().is_some() || self.limit.is_some()).then_some(self.next_at)
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
