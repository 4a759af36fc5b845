//! Token buckets for handshake work under load, as wireguard-go's
//! ratelimiter: each source address may have so many initiation fragments
//! a second looked at (MAC checked, cookie reply sent), and all sources
//! together so many, so that a flood costs the node a bounded amount of
//! hashing whatever its source addresses.
//!
//! Bounded in memory and in time: at most `max_sources` addresses are
//! remembered. Idle ones (a full bucket) are forgotten in one sweep, at
//! most every [`SWEEP_INTERVAL`], when a new address finds the table full;
//! a new address that still finds no room counts as over the total. So a
//! flood from more addresses than the table holds costs one lookup per
//! datagram and a sweep ten times a second, never a scan per datagram, and
//! the addresses already in the table (those of real peers among them)
//! keep their share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// At most so many events in each second (a fixed window): the answer
/// budgets of punches and member lookups.
#[derive(Debug, Default, Clone, Copy)]
pub struct PerSecond {
    /// The second being counted, and the events in it.
    window: Option<(Instant, u32)>,
}

impl PerSecond {
    /// Takes one event from the budget of `limit` a second; false when
    /// this second's is spent.
    pub fn take(&mut self, now: Instant, limit: u32) -> bool {
        let (start, n) = match self.window {
            Some((s, n)) if now.saturating_duration_since(s) < Duration::from_secs(1) => (s, n),
            _ => (now, 0),
        };
        if n >= limit {
            return false;
        }
        self.window = Some((start, n + 1));
        true
    }
}

/// How often a full table may be swept of idle addresses.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// A token bucket measured in nanoseconds of credit.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    credit_ns: u64,
    last: Instant,
}

impl Bucket {
    fn new(now: Instant, capacity_ns: u64) -> Self {
        Self {
            credit_ns: capacity_ns,
            last: now,
        }
    }

    /// Refills for the time since the last call and takes `cost_ns` if it
    /// can.
    fn take(&mut self, now: Instant, cost_ns: u64, capacity_ns: u64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = now;
        self.credit_ns = (self.credit_ns as u128 + elapsed).min(capacity_ns as u128) as u64;
        if self.credit_ns >= cost_ns {
            self.credit_ns -= cost_ns;
            true
        } else {
            false
        }
    }

    fn full_at(&self, capacity_ns: u64) -> Instant {
        self.last + Duration::from_nanos(capacity_ns.saturating_sub(self.credit_ns))
    }
}

/// One token bucket: `rate` events a second, in bursts of `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    bucket: Option<Bucket>,
    cost_ns: u64,
    capacity_ns: u64,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate` a second.
    pub fn new(rate: u32, burst: u32) -> Self {
        let cost_ns = cost(rate);
        Self {
            bucket: None,
            cost_ns,
            capacity_ns: cost_ns * u64::from(burst.max(1)),
        }
    }

    /// Takes a token at `now` if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let cap = self.capacity_ns;
        (self.bucket.get_or_insert_with(|| Bucket::new(now, cap))).take(now, self.cost_ns, cap)
    }

    /// Whether [`TokenBucket::allow`] would take one at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.bucket.is_none_or(|b| {
            let refill = now.saturating_duration_since(b.last).as_nanos();
            (b.credit_ns as u128 + refill).min(self.capacity_ns as u128) >= self.cost_ns as u128
        })
    }
}

/// How a datagram fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Within both limits.
    Allowed,
    /// Its source address spent its share.
    Source,
    /// All sources together spent theirs.
    Total,
}

/// Per-source and total rate limits.
#[derive(Debug)]
pub struct RateLimiter {
    per_source: HashMap<IpAddr, Bucket>,
    source_cost_ns: u64,
    source_capacity_ns: u64,
    total: TokenBucket,
    max_sources: usize,
    /// When the table was last swept.
    swept: Option<Instant>,
}

/// Nanoseconds of credit one event costs at `per_second`.
fn cost(per_second: u32) -> u64 {
    1_000_000_000 / u64::from(per_second.max(1))
}

impl RateLimiter {
    /// `source_rate` per second (bursts of `source_burst`) from each
    /// address, `total_rate` (bursts of `total_burst`) from all of them,
    /// remembering at most `max_sources` addresses.
    pub fn new(
        (source_rate, source_burst): (u32, u32),
        (total_rate, total_burst): (u32, u32),
        max_sources: usize,
    ) -> Self {
        let sc = cost(source_rate);
        Self {
            per_source: HashMap::new(),
            source_cost_ns: sc,
            source_capacity_ns: sc * u64::from(source_burst.max(1)),
            total: TokenBucket::new(total_rate, total_burst),
            max_sources: max_sources.max(1),
            swept: None,
        }
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.per_source.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.per_source.is_empty()
    }

    /// Counts one event from `src` at `now`: its source's share first (a
    /// source over its share spends nothing of the total), then the total.
    pub fn allow(&mut self, now: Instant, src: IpAddr) -> Limit {
        if !self.per_source.contains_key(&src) && self.per_source.len() >= self.max_sources {
            self.sweep(now);
            if self.per_source.len() >= self.max_sources {
                return Limit::Total;
            }
        }
        let cap = self.source_capacity_ns;
        let b = (self.per_source.entry(src)).or_insert_with(|| Bucket::new(now, cap));
        if !b.take(now, self.source_cost_ns, cap) {
            return Limit::Source;
        }
        if self.total.allow(now) {
            return Limit::Allowed;
        }
        // Not spent after all.
        b.credit_ns = (b.credit_ns + self.source_cost_ns).min(cap);
        Limit::Total
    }

    /// Forgets addresses whose bucket is full again (idle), unless the
    /// last sweep was less than [`SWEEP_INTERVAL`] ago.
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_INTERVAL)
        {
            return;
        }
        self.swept = Some(now);
        let cap = self.source_capacity_ns;
        self.per_source.retain(|_, b| b.full_at(cap) > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000u32 | n))
    }

    #[test]
    fn one_source_gets_its_burst_then_its_rate() {
        let t = Instant::now();
        let mut r = RateLimiter::new((20, 5), (1000, 1000), 16);
        let allowed = (0..10)
            .filter(|_| r.allow(t, ip(1)) == Limit::Allowed)
            .count();
        assert_eq!(allowed, 5, "the burst");
        assert_eq!(r.allow(t, ip(1)), Limit::Source);
        assert_eq!(
            r.allow(t, ip(2)),
            Limit::Allowed,
            "another source is not held back"
        );
        // 20 a second: one more every 50 ms.
        assert_eq!(
            r.allow(t + Duration::from_millis(50), ip(1)),
            Limit::Allowed
        );
        assert_eq!(r.allow(t + Duration::from_millis(60), ip(1)), Limit::Source);
        let over_a_second = (0..100)
            .filter(|i| r.allow(t + Duration::from_millis(100 + 10 * i), ip(1)) == Limit::Allowed)
            .count();
        assert!((19..=22).contains(&over_a_second), "{over_a_second}");
    }

    #[test]
    fn many_sources_share_the_total_and_the_table_stays_bounded() {
        let t = Instant::now();
        let mut r = RateLimiter::new((20, 5), (100, 10), 64);
        // One source over its share does not eat the others' total.
        for _ in 0..100 {
            r.allow(t, ip(99_999));
        }
        let allowed = (0..10_000u32)
            .filter(|i| r.allow(t, ip(*i)) == Limit::Allowed)
            .count();
        assert_eq!(
            allowed, 5,
            "the total burst less the flooder's 5, whatever the sources"
        );
        assert!(r.len() <= 64);
        // A second later, the total rate again.
        let later = t + Duration::from_secs(1);
        let allowed = (10_000..20_000u32)
            .filter(|i| r.allow(later, ip(*i)) == Limit::Allowed)
            .count();
        assert_eq!(allowed, 10);
        assert!(r.len() <= 64);
    }

    #[test]
    fn a_full_table_of_active_sources_turns_new_ones_away_until_a_sweep() {
        let t = Instant::now();
        let mut r = RateLimiter::new((20, 5), (1_000_000, 1_000_000), 4);
        for i in 0..4 {
            assert_eq!(r.allow(t, ip(i)), Limit::Allowed);
        }
        // Full of active sources: a new one counts as over the total, and
        // the known ones keep their share.
        assert_eq!(r.allow(t, ip(10)), Limit::Total);
        assert_eq!(r.allow(t, ip(0)), Limit::Allowed);
        // Their buckets refill in 250 ms (5 at 20/s); idle, they are swept.
        let later = t + Duration::from_millis(300);
        assert_eq!(r.allow(later, ip(10)), Limit::Allowed);
        assert_eq!(r.len(), 1);
        // A sweep at most every SWEEP_INTERVAL: sources that go idle just
        // after one wait for the next.
        for i in 20..23 {
            assert_eq!(r.allow(later, ip(i)), Limit::Allowed);
        }
        let idle = later + Duration::from_millis(260);
        assert_eq!(r.allow(idle, ip(30)), Limit::Allowed, "swept at 560 ms");
        for i in 31..34 {
            assert_eq!(r.allow(idle, ip(i)), Limit::Allowed);
        }
        let soon = idle + Duration::from_millis(260);
        assert_eq!(r.allow(soon, ip(40)), Limit::Allowed, "swept at 820 ms");
        for i in 41..44 {
            assert_eq!(r.allow(soon, ip(i)), Limit::Allowed);
        }
        let too_soon = soon + Duration::from_millis(50);
        assert_eq!(r.allow(too_soon, ip(50)), Limit::Total, "swept 50 ms ago");
    }
}
