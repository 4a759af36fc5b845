//! Token buckets for handshake work under load, as wireguard-go's
//! ratelimiter: each source address may have so many initiation fragments
//! a second looked at (MAC checked, cookie reply sent), and all sources
//! together so many, so that a flood costs the node a bounded amount of
//! hashing whatever its source addresses.
//!
//! Bounded: at most `max_sources` addresses are remembered; idle ones (a
//! full bucket) are forgotten first, then the one idle longest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

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
    total: Option<Bucket>,
    total_cost_ns: u64,
    total_capacity_ns: u64,
    max_sources: usize,
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
        let (sc, tc) = (cost(source_rate), cost(total_rate));
        Self {
            per_source: HashMap::new(),
            source_cost_ns: sc,
            source_capacity_ns: sc * u64::from(source_burst.max(1)),
            total: None,
            total_cost_ns: tc,
            total_capacity_ns: tc * u64::from(total_burst.max(1)),
            max_sources: max_sources.max(1),
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
            self.make_room(now);
        }
        let cap = self.source_capacity_ns;
        let b = (self.per_source.entry(src)).or_insert_with(|| Bucket::new(now, cap));
        if !b.take(now, self.source_cost_ns, cap) {
            return Limit::Source;
        }
        let tcap = self.total_capacity_ns;
        let total = self.total.get_or_insert_with(|| Bucket::new(now, tcap));
        if total.take(now, self.total_cost_ns, tcap) {
            return Limit::Allowed;
        }
        // Not spent after all.
        b.credit_ns = (b.credit_ns + self.source_cost_ns).min(cap);
        Limit::Total
    }

    /// Forgets addresses whose bucket is full again (idle), or else the
    /// one idle longest.
    fn make_room(&mut self, now: Instant) {
        let cap = self.source_capacity_ns;
        self.per_source.retain(|_, b| b.full_at(cap) > now);
        if self.per_source.len() >= self.max_sources {
            if let Some(oldest) = (self.per_source.iter())
                .min_by_key(|(_, b)| b.last)
                .map(|(a, _)| *a)
            {
                self.per_source.remove(&oldest);
            }
        }
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
}
