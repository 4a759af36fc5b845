//! Mesh-wide agreement on quarantines, without trusting any one accuser
//! (sans-IO).
//!
//! A node that quarantines a peer floods a signed accusation
//! ([`crate::control::Accusation`]) and refreshes it every
//! [`REFRESH`] while the quarantine holds; it withdraws it when the
//! quarantine ends early. Every node keeps the accusations it receives in
//! a [`Book`] and quarantines an accused node itself only while accusations
//! from [`QuorumConfig::quorum`] distinct accusers hold (accusers it does
//! not quarantine itself; an operator's release discounts the accusations
//! held at that moment). One member, however malicious, therefore gets
//! nobody quarantined beyond its own node.
//!
//! Each accusation holds for [`QuorumConfig::hold`] after its latest
//! refresh, and never past the end its accuser gave it: an accuser that
//! goes silent or away stops counting within the hold. Per accuser at most
//! [`QuorumConfig::max_per_accuser`] accusations hold at once (a node
//! spraying accusations gets the rest refused), and every new accused
//! counts as evidence against the accuser (`crate::ids`, scenario
//! `accusations`): an operator sees a member that accuses too many.
//! Sequence numbers per (accuser, accused) and the signed end stop replays.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::control::Accusation;
use crate::wire::NodeId;

/// An accuser sends its accusations again this often.
pub const REFRESH: Duration = Duration::from_secs(10);
/// Most accusations (and withdrawals remembered) held at once.
const MAX_ENTRIES: usize = 16_384;
/// News (new accusations, refreshes, withdrawals) taken from one accuser
/// per second, and in a burst: 8 accusations refreshed every 10 s need 0.8.
const ACCUSER_RATE: f64 = 1.0;
const ACCUSER_BURST: f64 = 10.0;
/// A withdrawal is remembered at most this long (to refuse replays of what
/// it withdrew; beyond, the accusation's own end refuses them).
const TOMBSTONE_MAX: Duration = Duration::from_secs(3600);

/// Agreement settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumConfig {
    /// Distinct accusers needed to quarantine a node this node has no
    /// evidence against itself.
    pub quorum: usize,
    /// How long an accusation holds after its latest refresh.
    pub hold: Duration,
    /// Most accusations one accuser holds at once.
    pub max_per_accuser: usize,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        Self {
            quorum: 3,
            hold: REFRESH * 3 + Duration::from_secs(5),
            max_per_accuser: 8,
        }
    }
}

/// One accusation held (or a withdrawal remembered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its sequence number.
    pub seq: u64,
    /// When the accuser's quarantine began (Unix seconds).
    pub since_unix: u64,
    /// The scenario the accuser named.
    pub scenario: String,
    /// When it lapses unless refreshed (or, withdrawn, is forgotten).
    pub until: Instant,
    /// Withdrawn: remembered only to refuse replays.
    pub withdrawn: bool,
    /// An operator released the accused while this held: it does not
    /// count until the accuser starts a new quarantine.
    pub discounted: bool,
    /// When this node first received this quarantine's accusation.
    pub first_seen: Instant,
    /// The message, as signed (sent on to neighbours that come up).
    pub message: Accusation,
}

/// What a received accusation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// News: held (or withdrawn), to be flooded on. `new_accused`: the
    /// accuser held nothing against the accused before.
    New {
        /// First accusation of this pair.
        new_accused: bool,
    },
    /// Already held, or older than what is held: not flooded.
    Stale,
    /// Refused (the reason names a counter); not flooded.
    Refused(&'static str),
}

/// The accusations one node holds.
#[derive(Debug, Clone, Default)]
pub struct Book {
    config: QuorumConfig,
    /// By (accused, accuser).
    held: BTreeMap<(NodeId, NodeId), Held>,
    /// Each accuser's allowance of news: tokens, as of when.
    allowance: BTreeMap<NodeId, (f64, Instant)>,
}

impl Book {
    /// An empty book.
    pub fn new(config: QuorumConfig) -> Self {
        Self {
            config,
            held: BTreeMap::new(),
            allowance: BTreeMap::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> QuorumConfig {
        self.config
    }

    /// Whether `a` is no news (a copy or an older one): worth no
    /// signature check.
    pub fn is_stale(&self, a: &Accusation) -> bool {
        (self.held.get(&(a.accused, a.accuser))).is_some_and(|h| h.seq >= a.seq)
    }

    /// Takes one token of `accuser`'s allowance; whether there was one.
    fn allow(&mut self, now: Instant, accuser: NodeId) -> bool {
        let (tokens, at) = self
            .allowance
            .entry(accuser)
            .or_insert((ACCUSER_BURST, now));
        let dt = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + dt * ACCUSER_RATE).min(ACCUSER_BURST);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    /// Takes an accusation whose signature and certificate were checked.
    pub fn take(&mut self, now: Instant, now_unix: u64, a: &Accusation) -> Taken {
        if a.accuser == a.accused {
            return Taken::Refused("self_accusation");
        }
        let key = (a.accused, a.accuser);
        let previous = self.held.get(&key).cloned();
        let previous = previous.as_ref();
        if previous.is_some_and(|h| h.seq >= a.seq) {
            return Taken::Stale;
        }
        if !a.withdrawn && a.expires_unix <= now_unix {
            return Taken::Refused("expired");
        }
        let new_accused = previous.is_none_or(|h| h.withdrawn);
        if !a.withdrawn && new_accused {
            let live = (self.held.iter())
                .filter(|((_, by), h)| *by == a.accuser && !h.withdrawn && h.until > now)
                .count();
            if live >= self.config.max_per_accuser {
                return Taken::Refused("too_many");
            }
        }
        if !self.allow(now, a.accuser) {
            return Taken::Refused("rate");
        }
        if previous.is_none() && self.held.len() >= MAX_ENTRIES {
            self.expire(now);
            if self.held.len() >= MAX_ENTRIES {
                return Taken::Refused("book_full");
            }
        }
        let left = Duration::from_secs(a.expires_unix.saturating_sub(now_unix));
        let (until, first_seen, discounted) = match previous {
            Some(h) if !h.withdrawn && h.since_unix == a.since_unix => {
                (now + left.min(self.config.hold), h.first_seen, h.discounted)
            }
            _ => (now + left.min(self.config.hold), now, false),
        };
        let until = if a.withdrawn {
            // Remembered while what it withdrew could still be replayed.
            previous
                .map_or(now, |h| h.until)
                .max(now + left.min(TOMBSTONE_MAX))
        } else {
            until
        };
        self.held.insert(
            key,
            Held {
                seq: a.seq,
                since_unix: a.since_unix,
                scenario: a.scenario.clone(),
                until,
                withdrawn: a.withdrawn,
                discounted,
                first_seen,
                message: a.clone(),
            },
        );
        Taken::New {
            new_accused: new_accused && !a.withdrawn,
        }
    }

    /// Until when `accused` stays quarantined by agreement, as held now:
    /// the time the quorum-th freshest accusation lapses, counting only
    /// accusers `counts` accepts (`None`: no quorum).
    pub fn quorum_until(
        &self,
        now: Instant,
        accused: NodeId,
        counts: impl Fn(NodeId) -> bool,
    ) -> Option<Instant> {
        let mut untils: Vec<Instant> = self
            .live(now, accused)
            .filter(|(by, h)| !h.discounted && counts(*by))
            .map(|(_, h)| h.until)
            .collect();
        let q = self.config.quorum.max(1);
        if untils.len() < q {
            return None;
        }
        untils.sort_unstable_by(|a, b| b.cmp(a));
        Some(untils[q - 1])
    }

    /// Live accusations of `accused`: accuser and what is held.
    pub fn live(&self, now: Instant, accused: NodeId) -> impl Iterator<Item = (NodeId, &Held)> {
        (self
            .held
            .range((accused, NodeId(0))..=(accused, NodeId(u64::MAX))))
        .filter(move |(_, h)| !h.withdrawn && h.until > now)
        .map(|((_, by), h)| (*by, h))
    }

    /// Every live accusation: (accused, accuser, what is held), by accused.
    pub fn all(&self, now: Instant) -> impl Iterator<Item = (NodeId, NodeId, &Held)> {
        (self.held.iter())
            .filter(move |(_, h)| !h.withdrawn && h.until > now)
            .map(|((accused, by), h)| (*accused, *by, h))
    }

    /// The nodes accused now.
    pub fn accused(&self, now: Instant) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.all(now).map(|(a, _, _)| a).collect();
        v.dedup();
        v
    }

    /// An operator released `accused`: the accusations held now no longer
    /// count (a new quarantine by their accusers does).
    pub fn release(&mut self, now: Instant, accused: NodeId) {
        for (_, h) in (self
            .held
            .range_mut((accused, NodeId(0))..=(accused, NodeId(u64::MAX))))
        .filter(|(_, h)| !h.withdrawn && h.until > now)
        {
            h.discounted = true;
        }
    }

    /// Whether nothing is held (withdrawals remembered included).
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Forgets what has lapsed.
    pub fn expire(&mut self, now: Instant) {
        self.held.retain(|_, h| h.until > now);
        let full = Duration::from_secs_f64(ACCUSER_BURST / ACCUSER_RATE);
        (self.allowance).retain(|_, (_, at)| now.saturating_duration_since(*at) < full);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: NodeId = NodeId(100);

    fn acc(by: u64, seq: u64, since: u64, expires: u64) -> Accusation {
        Accusation {
            accuser: NodeId(by),
            accused: X,
            seq,
            since_unix: since,
            expires_unix: expires,
            withdrawn: false,
            scenario: "scan".into(),
            cert: Vec::new(),
            signature: [0; 64],
        }
    }

    const T0: u64 = 1_800_000_000;

    #[test]
    fn a_quorum_of_distinct_accusers_is_needed_and_one_accuser_repeating_is_not_one() {
        let t = Instant::now();
        let mut b = Book::new(QuorumConfig::default());
        let all = |_| true;
        assert_eq!(
            b.take(t, T0, &acc(1, 1, T0, T0 + 60)),
            Taken::New { new_accused: true }
        );
        // The same accuser again (a refresh), and a replay: one accuser.
        assert_eq!(
            b.take(t, T0, &acc(1, 2, T0, T0 + 60)),
            Taken::New { new_accused: false }
        );
        assert_eq!(b.take(t, T0, &acc(1, 2, T0, T0 + 60)), Taken::Stale);
        assert_eq!(b.take(t, T0, &acc(1, 1, T0, T0 + 60)), Taken::Stale);
        b.take(t, T0, &acc(2, 1, T0, T0 + 60));
        assert_eq!(b.quorum_until(t, X, all), None);
        b.take(t, T0, &acc(3, 1, T0, T0 + 20));
        // Three: until the third freshest lapses (20 s, its own end).
        assert_eq!(b.quorum_until(t, X, all), Some(t + Duration::from_secs(20)));
        // An accuser we do not trust (quarantined itself) does not count.
        assert_eq!(b.quorum_until(t, X, |n| n != NodeId(2)), None);
        // A withdrawal ends its part at once, and a replay of what it
        // withdrew is refused.
        let mut w = acc(3, 2, T0, 0);
        w.withdrawn = true;
        assert_eq!(b.take(t, T0, &w), Taken::New { new_accused: false });
        assert_eq!(b.quorum_until(t, X, all), None);
        assert_eq!(b.take(t, T0, &acc(3, 1, T0, T0 + 20)), Taken::Stale);
    }

    #[test]
    fn accusations_lapse_without_refresh_and_expired_ones_are_refused() {
        let t = Instant::now();
        let mut b = Book::new(QuorumConfig::default());
        for by in 1..=3 {
            b.take(t, T0, &acc(by, 1, T0, T0 + 3600));
        }
        let hold = QuorumConfig::default().hold;
        assert_eq!(b.quorum_until(t, X, |_| true), Some(t + hold));
        // Two accusers refresh; the third went silent: no quorum after
        // its hold.
        let later = t + hold - Duration::from_secs(1);
        for by in 1..=2 {
            b.take(later, T0 + 34, &acc(by, 2, T0, T0 + 3600));
        }
        assert!(b.quorum_until(later, X, |_| true).is_some());
        assert_eq!(b.quorum_until(t + hold, X, |_| true), None);
        b.expire(t + hold);
        assert_eq!(b.live(t + hold, X).count(), 2);
        assert_eq!(
            b.take(t, T0 + 100, &acc(4, 1, T0, T0 + 100)),
            Taken::Refused("expired")
        );
        assert_eq!(
            b.take(t, T0, &acc(100, 1, T0, T0 + 100)),
            Taken::Refused("self_accusation")
        );
    }

    #[test]
    fn one_accuser_holds_a_bounded_number_of_accusations() {
        let t = Instant::now();
        let mut b = Book::new(QuorumConfig::default());
        let mut taken = 0;
        for target in 0..20 {
            let mut a = acc(1, 1, T0, T0 + 60);
            a.accused = NodeId(1000 + target);
            if b.take(t, T0, &a) == (Taken::New { new_accused: true }) {
                taken += 1;
            } else {
                assert_eq!(b.take(t, T0, &a), Taken::Refused("too_many"));
            }
        }
        assert_eq!(taken, QuorumConfig::default().max_per_accuser);
    }

    #[test]
    fn an_accuser_sending_news_too_fast_is_refused_beyond_its_allowance() {
        let t = Instant::now();
        let mut b = Book::new(QuorumConfig::default());
        let refused = (1..=40)
            .filter(|seq| b.take(t, T0, &acc(1, *seq, T0, T0 + 60)) == Taken::Refused("rate"))
            .count();
        assert_eq!(refused, 30);
        // A second later, one more.
        let later = t + Duration::from_secs(1);
        assert_eq!(
            b.take(later, T0, &acc(1, 41, T0, T0 + 60)),
            Taken::New { new_accused: false }
        );
    }

    #[test]
    fn a_release_discounts_what_is_held_until_a_new_quarantine() {
        let t = Instant::now();
        let mut b = Book::new(QuorumConfig::default());
        for by in 1..=3 {
            b.take(t, T0, &acc(by, 1, T0, T0 + 3600));
        }
        assert!(b.quorum_until(t, X, |_| true).is_some());
        b.release(t, X);
        assert_eq!(b.quorum_until(t, X, |_| true), None);
        // Refreshes of the same quarantines stay discounted...
        for by in 1..=3 {
            b.take(t, T0 + 10, &acc(by, 2, T0, T0 + 3600));
        }
        assert_eq!(b.quorum_until(t, X, |_| true), None);
        // ...new quarantines count again.
        for by in 1..=3 {
            b.take(t, T0 + 20, &acc(by, 3, T0 + 20, T0 + 3600));
        }
        assert!(b.quorum_until(t, X, |_| true).is_some());
    }
}
