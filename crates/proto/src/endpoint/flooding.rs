//! Reliable flooding: the bookkeeping that makes a lost advert cost a
//! retransmission timeout instead of its origin's next refresh.
//!
//! As OSPF and IS-IS flood: every advert sent to a neighbour waits on that
//! neighbour's retransmission list until the neighbour acknowledges it
//! (origin and sequence number, many to one acknowledgement message, sent
//! [`ACK_DELAY`] after the first is owed), or sends the same or a newer
//! advert of that origin itself (an implicit acknowledgement). Unanswered,
//! it goes again after a timeout of twice the link's RTT (at least
//! [`RTO_MIN`]), doubling at each try, at most [`MAX_RETRIES`] times: by
//! then the link is down by its probes, and the sync when it comes back
//! repairs the rest. A sync request (sent when a link comes up) is
//! retransmitted alike until the answer's acknowledgement says it arrived.
//!
//! A neighbour that acknowledged anything within the last timeout, and
//! nothing sent after a given advert, is alive and still working through
//! what it was sent (a relay checking the signatures of a sync dump of
//! thousands of adverts acknowledges them over hundreds of milliseconds):
//! that advert waits for it, as TCP restarts its retransmission timer on
//! every acknowledgement of new data, for at most [`PROGRESS_WAIT_MAX`]
//! after it was sent. A fixed timeout sent half of such a dump again, into
//! the backlog that delayed the acknowledgements. An advert sent before
//! one the neighbour acknowledged is taken as lost at its timeout.
//!
//! Bounded work: one entry per (neighbour, origin), replaced by a newer
//! advert; at most [`RETRANSMIT_BURST`] retransmissions per neighbour per
//! pass, passes at most every [`PASS_INTERVAL`].
//!
//! A node asking for a sync first sends a *summary* of the adverts it holds
//! (origin and sequence number, 16 bytes each, in parts of
//! [`MAX_ACK_ENTRIES`]); the answer leaves out every advert the summary
//! lists at the same or a higher sequence number. As OSPF's database
//! description exchange: a link back up after a flap costs the summary
//! and what changed meanwhile, not the whole database (a stub's sync with
//! a relay at 10,000 nodes: 8 kB instead of ~400 kB). A summary part that
//! is lost only makes the answer larger.
//!
//! This part only keeps the lists and says what is due; the gossip part
//! (`super::gossip`) sends.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::control::{Ack, MAX_ACK_ENTRIES};
use crate::wire::NodeId;

use super::api::PeerId;

/// Acknowledgements owed to a neighbour wait this long to share a message.
pub(crate) const ACK_DELAY: Duration = Duration::from_millis(20);
/// Shortest retransmission timeout.
const RTO_MIN: Duration = Duration::from_millis(250);
/// Longest retransmission timeout, backoff included.
const RTO_MAX: Duration = Duration::from_secs(8);
/// An advert unacknowledged by a neighbour that acknowledges others waits
/// at most this long after it was first sent.
const PROGRESS_WAIT_MAX: Duration = Duration::from_secs(4);
/// Retransmissions of one advert to one neighbour before it is abandoned.
const MAX_RETRIES: u8 = 6;
/// Most retransmissions to one neighbour per pass (the rest wait a pass).
const RETRANSMIT_BURST: usize = 64;
/// Passes over the retransmission lists run at most this often.
const PASS_INTERVAL: Duration = Duration::from_millis(50);
/// A sync request repeated within this long of the dump that answered it
/// is only acknowledged: the dump's adverts are on the retransmission list.
const SYNC_REPEAT: Duration = Duration::from_secs(10);
/// Most summary entries kept from one neighbour (the rest are taken as not
/// held: the answer only grows).
const MAX_SUMMARY: usize = 65_536;
/// Most summary entries kept over all neighbours.
const MAX_SUMMARIES: usize = 1 << 20;

/// What a neighbour said it holds, ahead of its sync request.
#[derive(Debug)]
struct Held {
    /// When its first part arrived: a summary older than [`SYNC_REPEAT`]
    /// is stale, and a new part starts afresh.
    since: Instant,
    adverts: HashMap<NodeId, u64>,
}

/// Something sent and not acknowledged yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    seq: u64,
    /// When it was first sent.
    sent: Instant,
    due: Instant,
    tries: u8,
    rto: Duration,
}

impl Pending {
    fn new(seq: u64, now: Instant, rto: Duration) -> Self {
        Self {
            seq,
            sent: now,
            due: now + rto,
            tries: 0,
            rto,
        }
    }

    /// Counts a retransmission at `now` and schedules the next one; false
    /// when the retries are used up.
    fn again(&mut self, now: Instant) -> bool {
        self.tries += 1;
        let backoff = self.rto.saturating_mul(1 << self.tries.min(6)).min(RTO_MAX);
        self.due = now + backoff;
        self.tries <= MAX_RETRIES
    }
}

/// Acknowledgements owed to one neighbour.
#[derive(Debug, Default)]
struct Owed {
    entries: Vec<(NodeId, u64)>,
    sync: bool,
}

/// What a pass found due.
#[derive(Debug, Default)]
pub(crate) struct Due {
    /// Adverts to send again: to whom, whose, which sequence number.
    pub adverts: Vec<(PeerId, NodeId, u64)>,
    /// Neighbours to send our sync request again.
    pub syncs: Vec<PeerId>,
    /// Acknowledgements to send.
    pub acks: Vec<(PeerId, Ack)>,
}

/// Retransmission lists and owed acknowledgements of one node.
#[derive(Debug, Default)]
pub(crate) struct Flooding {
    unacked: BTreeMap<PeerId, BTreeMap<NodeId, Pending>>,
    syncs: BTreeMap<PeerId, Pending>,
    owed: BTreeMap<PeerId, Owed>,
    /// When each neighbour last acknowledged anything, and the latest
    /// first-send time of what it acknowledged.
    progress: BTreeMap<PeerId, (Instant, Instant)>,
    /// Each neighbour's acknowledgement delay: smoothed, and its variation.
    ack_delay: BTreeMap<PeerId, (Duration, Duration)>,
    /// When each neighbour's sync request was last answered with a dump.
    dumped: BTreeMap<PeerId, Instant>,
    /// Summaries received, waiting for their sync requests.
    summaries: BTreeMap<PeerId, Held>,
    /// When the next retransmission pass runs.
    pass_at: Option<Instant>,
    /// When owed acknowledgements go out.
    ack_at: Option<Instant>,
}

impl Flooding {
    /// The retransmission timeout of a link with smoothed RTT `rtt`.
    pub fn rto(rtt: Option<Duration>) -> Duration {
        rtt.map_or(RTO_MIN, |r| 2 * r + 2 * ACK_DELAY).max(RTO_MIN)
    }

    /// The retransmission timeout towards `peer`, whose link has smoothed
    /// RTT `rtt`: at least [`Flooding::rto`], and at least its smoothed
    /// acknowledgement delay plus four times its variation (RFC 6298's
    /// estimator, sampled from first transmissions only): a neighbour
    /// busy checking signatures acknowledges late, and is not sent again
    /// what it is still working through.
    pub fn rto_to(&self, peer: PeerId, rtt: Option<Duration>) -> Duration {
        let measured = (self.ack_delay.get(&peer)).map_or(Duration::ZERO, |(s, v)| *s + 4 * *v);
        Self::rto(rtt).max(measured).min(RTO_MAX)
    }

    fn schedule_pass(&mut self, at: Instant) {
        self.pass_at = Some(self.pass_at.map_or(at, |t| t.min(at)));
    }

    /// An advert went to `peer`: it waits for an acknowledgement.
    pub fn sent(&mut self, peer: PeerId, origin: NodeId, seq: u64, now: Instant, rto: Duration) {
        let p = Pending::new(seq, now, rto);
        self.unacked.entry(peer).or_default().insert(origin, p);
        self.schedule_pass(p.due);
    }

    /// Our sync request went to `peer`.
    pub fn sync_sent(&mut self, peer: PeerId, now: Instant, rto: Duration) {
        let p = Pending::new(0, now, rto);
        self.syncs.insert(peer, p);
        self.schedule_pass(p.due);
    }

    /// Our sync request goes to `peer` at `at` (by [`Flooding::due`]), then
    /// again until acknowledged.
    pub fn sync_at(&mut self, peer: PeerId, at: Instant, rto: Duration) {
        let p = Pending {
            due: at,
            ..Pending::new(0, at, rto)
        };
        self.syncs.insert(peer, p);
        self.schedule_pass(at);
    }

    /// `peer` has the advert `origin`/`seq` (or a newer one of `origin`).
    pub fn heard(&mut self, peer: PeerId, origin: NodeId, seq: u64) {
        if let Some(list) = self.unacked.get_mut(&peer) {
            if list.get(&origin).is_some_and(|p| p.seq <= seq) {
                list.remove(&origin);
            }
        }
    }

    /// Whether `origin`'s advert `seq` (or a newer one) is on its way to
    /// `peer`, sent and not acknowledged yet.
    pub fn in_flight(&self, peer: PeerId, origin: NodeId, seq: u64) -> bool {
        (self.unacked.get(&peer))
            .and_then(|list| list.get(&origin))
            .is_some_and(|p| p.seq >= seq)
    }

    /// An acknowledgement from `peer`.
    pub fn on_ack(&mut self, peer: PeerId, ack: &Ack, now: Instant) {
        let acked: Vec<Pending> = (self.unacked.get(&peer))
            .map(|list| {
                (ack.entries.iter())
                    .filter_map(|(origin, seq)| list.get(origin).filter(|p| p.seq <= *seq))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let newest = acked.iter().map(|p| p.sent).max();
        // One delay sample per message: the longest a first transmission
        // it acknowledges waited.
        let sample = (acked.iter())
            .filter(|p| p.tries == 0)
            .map(|p| now.saturating_duration_since(p.sent))
            .max();
        if let Some(d) = sample {
            let e = self.ack_delay.entry(peer);
            e.and_modify(|(srtt, var)| {
                *var = (3 * *var + srtt.abs_diff(d)) / 4;
                *srtt = (7 * *srtt + d) / 8;
            })
            .or_insert((d, d / 2));
        }
        if let Some(sent) = newest {
            let e = self.progress.entry(peer).or_insert((now, sent));
            *e = (now, e.1.max(sent));
        }
        if ack.sync {
            self.syncs.remove(&peer);
        }
        for &(origin, seq) in &ack.entries {
            self.heard(peer, origin, seq);
        }
    }

    /// We owe `peer` an acknowledgement of `origin`/`seq`; a full message's
    /// worth goes out at once (returned), the rest after [`ACK_DELAY`].
    pub fn owe(&mut self, peer: PeerId, origin: NodeId, seq: u64, now: Instant) -> Option<Ack> {
        let o = self.owed.entry(peer).or_default();
        o.entries.push((origin, seq));
        if o.entries.len() >= MAX_ACK_ENTRIES {
            let entries = std::mem::take(&mut o.entries);
            let sync = std::mem::take(&mut o.sync);
            return Some(Ack { sync, entries });
        }
        self.ack_soon(now);
        None
    }

    /// We owe `peer` word that its sync request arrived. True if the
    /// request is to be answered with a dump (not a repeat of one answered
    /// moments ago). A request that a new summary preceded is a new one
    /// (a stub syncing with a relay newly designated for it, moments after
    /// its link came up): a request sent again carries no summary.
    pub fn owe_sync(&mut self, peer: PeerId, now: Instant) -> bool {
        self.owed.entry(peer).or_default().sync = true;
        self.ack_soon(now);
        let repeat = !self.summaries.contains_key(&peer)
            && (self.dumped.get(&peer))
                .is_some_and(|t| now.saturating_duration_since(*t) < SYNC_REPEAT);
        if !repeat {
            self.dumped.insert(peer, now);
        }
        !repeat
    }

    fn ack_soon(&mut self, now: Instant) {
        let at = now + ACK_DELAY;
        self.ack_at = Some(self.ack_at.map_or(at, |t| t.min(at)));
    }

    /// `peer` is gone: forgets everything about it.
    pub fn remove(&mut self, peer: PeerId) {
        self.forget(peer);
        self.ack_delay.remove(&peer);
        self.summaries.remove(&peer);
    }

    /// A part of `peer`'s summary: adverts it holds, by origin and sequence.
    pub fn on_summary(&mut self, peer: PeerId, entries: &[(NodeId, u64)], now: Instant) {
        let fresh = |h: &Held| now.saturating_duration_since(h.since) < SYNC_REPEAT;
        self.summaries.retain(|_, h| fresh(h));
        let total: usize = self.summaries.values().map(|h| h.adverts.len()).sum();
        let held = self.summaries.entry(peer).or_insert_with(|| Held {
            since: now,
            adverts: HashMap::new(),
        });
        let room = MAX_SUMMARY
            .saturating_sub(held.adverts.len())
            .min(MAX_SUMMARIES.saturating_sub(total));
        for &(origin, seq) in entries.iter().take(room) {
            held.adverts.insert(origin, seq);
        }
    }

    /// What `peer`'s summary says it holds, taken to answer its sync
    /// request: the highest sequence number of each origin (empty when no
    /// fresh summary came).
    pub fn take_summary(&mut self, peer: PeerId, now: Instant) -> HashMap<NodeId, u64> {
        (self.summaries.remove(&peer))
            .filter(|h| now.saturating_duration_since(h.since) < SYNC_REPEAT)
            .map(|h| h.adverts)
            .unwrap_or_default()
    }

    /// Forgets what is in flight to and from `peer` (its link went down,
    /// or a sync starts afresh); its acknowledgement delay stays known.
    pub fn forget(&mut self, peer: PeerId) {
        self.unacked.remove(&peer);
        self.progress.remove(&peer);
        self.syncs.remove(&peer);
        self.owed.remove(&peer);
        self.dumped.remove(&peer);
    }

    /// Adverts waiting for an acknowledgement, over all neighbours.
    pub fn unacked_count(&self) -> usize {
        self.unacked.values().map(BTreeMap::len).sum::<usize>() + self.syncs.len()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.pass_at, self.ack_at].into_iter().flatten().min()
    }

    /// What is due at `now`: acknowledgements, and retransmissions (each
    /// counted as a try; one past its last try is dropped instead).
    pub fn due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        if self.ack_at.is_some_and(|t| t <= now) {
            self.ack_at = None;
            for (peer, o) in &mut self.owed {
                if o.sync || !o.entries.is_empty() {
                    let entries = std::mem::take(&mut o.entries);
                    let sync = std::mem::take(&mut o.sync);
                    due.acks.push((*peer, Ack { sync, entries }));
                }
            }
            self.owed.clear();
        }
        if self.pass_at.is_none_or(|t| t > now) {
            return due;
        }
        let mut next: Option<Instant> = None;
        let mut later = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for (peer, list) in &mut self.unacked {
            let mut burst = 0;
            let progress = self.progress.get(peer).copied();
            let measured = (self.ack_delay.get(peer)).map(|(s, v)| (*s + 4 * *v).min(RTO_MAX));
            list.retain(|origin, p| {
                if p.due > now {
                    later(p.due);
                    return true;
                }
                // Still acknowledging, and nothing sent after this yet:
                // wait a timeout past its latest acknowledgement.
                let busy = progress.filter(|(t, newest)| {
                    now.saturating_duration_since(*t) < p.rto
                        && p.sent >= *newest
                        && now.saturating_duration_since(p.sent) < PROGRESS_WAIT_MAX
                });
                if let Some((t, _)) = busy {
                    p.due = (t + p.rto).min(p.sent + PROGRESS_WAIT_MAX);
                    later(p.due);
                    return true;
                }
                // Sent before the neighbour's delay was known to be this
                // long: its first timeout is the measured one.
                if let Some(m) = measured.filter(|m| p.tries == 0 && *m > p.rto) {
                    p.rto = m;
                    p.due = p.sent + m;
                    if p.due > now {
                        later(p.due);
                        return true;
                    }
                }
                if burst == RETRANSMIT_BURST {
                    later(now + PASS_INTERVAL);
                    return true;
                }
                burst += 1;
                let keep = p.again(now);
                if keep {
                    due.adverts.push((*peer, *origin, p.seq));
                    later(p.due);
                }
                keep
            });
        }
        self.unacked.retain(|_, list| !list.is_empty());
        self.syncs.retain(|peer, p| {
            if p.due > now {
                later(p.due);
                return true;
            }
            let keep = p.again(now);
            if keep {
                due.syncs.push(*peer);
                later(p.due);
            }
            keep
        });
        self.pass_at = next.map(|t| t.max(now + PASS_INTERVAL));
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: usize) -> PeerId {
        PeerId::new(i, 0)
    }

    #[test]
    fn an_unacknowledged_advert_is_sent_again_with_backoff_then_abandoned() {
        let t0 = Instant::now();
        let mut f = Flooding::default();
        let rto = Flooding::rto(None);
        f.sent(peer(1), NodeId(7), 3, t0, rto);
        assert!(f.due(t0 + rto / 2).adverts.is_empty());
        let mut sent_at = Vec::new();
        while let Some(t) = f.poll_timeout() {
            if !f.due(t).adverts.is_empty() {
                sent_at.push(t - t0);
            }
            assert!(t - t0 < Duration::from_secs(60), "never abandoned");
        }
        assert_eq!(sent_at.len(), MAX_RETRIES as usize, "{sent_at:?}");
        // Each gap at least as long as the one before: backoff.
        let gaps: Vec<_> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        assert_eq!(sent_at[0], rto);
        assert_eq!(f.unacked_count(), 0);
    }

    #[test]
    fn acknowledgements_and_newer_copies_clear_the_list_older_ones_do_not() {
        let t0 = Instant::now();
        let mut f = Flooding::default();
        let rto = Flooding::rto(Some(Duration::from_millis(1)));
        f.sent(peer(1), NodeId(7), 5, t0, rto);
        f.sent(peer(1), NodeId(8), 5, t0, rto);
        f.sent(peer(2), NodeId(7), 5, t0, rto);
        f.heard(peer(1), NodeId(7), 4); // older: not an acknowledgement
        f.on_ack(
            peer(1),
            &Ack {
                sync: false,
                entries: vec![(NodeId(8), 5)],
            },
            t0,
        );
        f.heard(peer(2), NodeId(7), 6); // newer: implies it
        let due = f.due(t0 + rto);
        assert_eq!(due.adverts, vec![(peer(1), NodeId(7), 5)]);
    }

    fn ack(o: u64) -> Ack {
        Ack {
            sync: false,
            entries: vec![(NodeId(o), 1)],
        }
    }

    #[test]
    fn a_neighbour_still_acknowledging_a_burst_is_waited_for_within_bounds() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut f = Flooding::default();
        let rto = Flooding::rto(None);
        // A burst of three; the neighbour acknowledges one every 200 ms.
        for o in 1..=3 {
            f.sent(peer(1), NodeId(o), 1, t0, rto);
        }
        f.on_ack(peer(1), &ack(1), t0 + ms(200));
        assert!(f.due(t0 + rto).adverts.is_empty(), "still acknowledging");
        f.on_ack(peer(1), &ack(2), t0 + ms(400));
        assert!(f.due(t0 + ms(600)).adverts.is_empty());
        // Acknowledgements stop: the rest goes a timeout after the last
        // (or, later, the acknowledgement delay measured meanwhile).
        let again = (1..=40)
            .map(|i| t0 + ms(600) + ms(25) * i)
            .find(|t| !f.due(*t).adverts.is_empty())
            .expect("sent again");
        assert!(
            again >= t0 + ms(650) && again <= t0 + ms(1600),
            "{:?}",
            again - t0
        );

        // A neighbour acknowledging a long burst, all but one: that one
        // waits at most PROGRESS_WAIT_MAX, or the measured delay's
        // timeout if that is longer (at most RTO_MAX).
        let t2 = t0 + ms(2000);
        for o in 10..60 {
            f.sent(peer(3), NodeId(o), 1, t2, rto);
        }
        let mut first = None;
        for step in 1..=200u32 {
            let now = t2 + ms(50) * step;
            if step % 4 == 0 && step <= 160 {
                f.on_ack(peer(3), &ack(10 + u64::from(step / 4)), now);
            }
            if f.due(now).adverts.contains(&(peer(3), NodeId(10), 1)) {
                first = Some(now - t2);
                break;
            }
        }
        let first = first.expect("never sent again");
        let bound = PROGRESS_WAIT_MAX.max(f.rto_to(peer(3), None));
        assert!(first > PROGRESS_WAIT_MAX - rto, "{first:?}");
        assert!(first <= bound + PASS_INTERVAL, "{first:?} > {bound:?}");
    }

    #[test]
    fn an_advert_sent_before_one_acknowledged_goes_at_its_timeout() {
        let ms = Duration::from_millis;
        let t1 = Instant::now();
        let mut f = Flooding::default();
        let rto = Flooding::rto(None);
        f.sent(peer(2), NodeId(4), 1, t1, rto);
        f.sent(peer(2), NodeId(5), 1, t1 + ms(10), rto);
        // Acknowledged 90 ms after it was sent: a timeout of 90 + 4 × 45.
        f.on_ack(peer(2), &ack(5), t1 + ms(100));
        assert_eq!(f.rto_to(peer(2), None), ms(270));
        assert!(f.due(t1 + rto).adverts.is_empty());
        // (Passes are at least PASS_INTERVAL apart.)
        assert_eq!(
            f.due(t1 + rto + PASS_INTERVAL).adverts,
            vec![(peer(2), NodeId(4), 1)]
        );
    }

    #[test]
    fn a_slow_neighbour_gets_a_timeout_from_its_acknowledgement_delay() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut f = Flooding::default();
        let rto = Flooding::rto(None);
        // Every advert acknowledged 600 ms after it went (a busy relay).
        for o in 1..=5u64 {
            let at = t0 + ms(1000) * u32::try_from(o).unwrap();
            f.sent(peer(4), NodeId(o), 1, at, f.rto_to(peer(4), None));
            f.on_ack(peer(4), &ack(o), at + ms(600));
        }
        let slow = f.rto_to(peer(4), None);
        assert!(slow > ms(600) && slow <= RTO_MAX, "{slow:?}");
        // An advert sent now is not sent again at the 250 ms floor.
        let t = t0 + ms(10_000);
        f.sent(peer(4), NodeId(9), 1, t, slow);
        assert!(f.due(t + rto).adverts.is_empty());
        assert_eq!(f.due(t + slow).adverts, vec![(peer(4), NodeId(9), 1)]);
        // Gone: forgotten. Only a link going down keeps what was learnt.
        f.forget(peer(4));
        assert_eq!(f.rto_to(peer(4), None), slow);
        f.remove(peer(4));
        assert_eq!(f.rto_to(peer(4), None), rto);
    }

    #[test]
    fn acknowledgements_are_batched_and_a_full_message_goes_at_once() {
        let t0 = Instant::now();
        let mut f = Flooding::default();
        for i in 0..MAX_ACK_ENTRIES as u64 - 1 {
            assert!(f.owe(peer(1), NodeId(i), i, t0).is_none());
        }
        let full = f.owe(peer(1), NodeId(99), 1, t0).expect("a full message");
        assert_eq!(full.entries.len(), MAX_ACK_ENTRIES);
        assert!(f.owe(peer(1), NodeId(100), 1, t0).is_none());
        assert!(f.owe_sync(peer(2), t0), "a first sync request is answered");
        assert!(!f.owe_sync(peer(2), t0), "its repeat only acknowledged");
        // A new summary first: a new request, answered.
        let t1 = t0 + Duration::from_secs(1);
        f.on_summary(peer(2), &[(NodeId(7), 3)], t1);
        assert!(f.owe_sync(peer(2), t1), "a request after a new summary");
        assert_eq!(f.take_summary(peer(2), t1).get(&NodeId(7)), Some(&3));
        assert!(!f.owe_sync(peer(2), t1), "and its repeat only acknowledged");
        assert!(f.due(t0).acks.is_empty(), "held for the delay");
        let mut acks = f.due(t0 + ACK_DELAY).acks;
        acks.sort_by_key(|(p, _)| *p);
        assert_eq!(acks.len(), 2);
        assert_eq!(acks[0].1.entries, vec![(NodeId(100), 1)]);
        assert!(acks[1].1.sync && acks[1].1.entries.is_empty());
    }

    #[test]
    fn a_sync_request_is_repeated_until_its_answer_is_acknowledged() {
        let t0 = Instant::now();
        let mut f = Flooding::default();
        let rto = Flooding::rto(None);
        f.sync_sent(peer(3), t0, rto);
        assert_eq!(f.due(t0 + rto).syncs, vec![peer(3)]);
        f.on_ack(
            peer(3),
            &Ack {
                sync: true,
                entries: vec![],
            },
            t0,
        );
        assert_eq!(f.unacked_count(), 0);
        // One planned behind a summary goes when it is due, not before,
        // and is repeated until acknowledged.
        let lead = Duration::from_millis(20);
        f.sync_at(peer(4), t0 + lead, rto);
        assert!(f.due(t0).syncs.is_empty());
        assert_eq!(f.due(t0 + lead).syncs, vec![peer(4)]);
        assert!(f.due(t0 + lead + rto).syncs.is_empty());
        assert_eq!(f.due(t0 + lead + 2 * rto).syncs, vec![peer(4)]);
    }

    #[test]
    fn a_summary_is_kept_for_its_request_bounded_and_not_past_its_time() {
        let t0 = Instant::now();
        let mut f = Flooding::default();
        let entries: Vec<(NodeId, u64)> = (0..100).map(|i| (NodeId(i), i + 1)).collect();
        f.on_summary(peer(1), &entries[..64], t0);
        f.on_summary(peer(1), &entries[64..], t0 + Duration::from_millis(1));
        let held = f.take_summary(peer(1), t0 + Duration::from_millis(2));
        assert_eq!(held.len(), 100);
        assert_eq!(held[&NodeId(7)], 8);
        // Taken once.
        assert!(f
            .take_summary(peer(1), t0 + Duration::from_millis(3))
            .is_empty());
        // Stale by the time the request comes.
        f.on_summary(peer(2), &entries, t0);
        assert!(f.take_summary(peer(2), t0 + SYNC_REPEAT).is_empty());
        // A neighbour's summary is bounded; so are all of them together.
        let many: Vec<(NodeId, u64)> = (0..MAX_SUMMARY as u64 + 10)
            .map(|i| (NodeId(i), 1))
            .collect();
        f.on_summary(peer(3), &many, t0);
        f.on_summary(peer(3), &many[..5], t0);
        assert_eq!(f.take_summary(peer(3), t0).len(), MAX_SUMMARY);
        for p in 0..(MAX_SUMMARIES / MAX_SUMMARY + 2) {
            f.on_summary(peer(10 + p), &many, t0);
        }
        let total: usize = (f.summaries.values()).map(|h| h.adverts.len()).sum();
        assert_eq!(total, MAX_SUMMARIES);
        // Gone with the neighbour.
        f.remove(peer(10));
        assert!(f.take_summary(peer(10), t0).is_empty());
    }
}
