//! Drops by reason against their own habit: every 10 s the endpoint's drop
//! counters are read, each reason's increase feeds a learned habit
//! (`proto::ids::Habit`), and a window far above what is usual for that
//! reason is remembered for 10 minutes, for `meshctl status` and `meshctl
//! doctor` ("drops out of their normal range").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proto::ids::Habit;

/// Counters are read this often (the habit's window).
const EVERY: Duration = Duration::from_secs(10);
/// A window is unusual only with at least this many more drops than usual
/// (10 a second).
const FLOOR: f64 = 100.0;
/// An unusual window is reported this long.
const REMEMBER: Duration = Duration::from_secs(600);

/// One reason's unusual window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unusual {
    /// Drops in that window.
    pub count: f64,
    /// What is usual for that reason per window, as learned then.
    pub usual: f64,
    /// When it was seen.
    pub at: Instant,
}

/// The habits of every drop reason.
#[derive(Debug, Default)]
pub struct DropWatch {
    last: BTreeMap<&'static str, (u64, Habit)>,
    unusual: BTreeMap<&'static str, Unusual>,
    read_at: Option<Instant>,
}

impl DropWatch {
    /// Whether 10 s have passed since the counters were last read.
    pub fn due(&self, now: Instant) -> bool {
        self.read_at
            .is_none_or(|t| now.saturating_duration_since(t) >= EVERY)
    }

    /// Reads the counters (`reason`, total since start) if 10 s have passed.
    pub fn observe(&mut self, now: Instant, totals: impl IntoIterator<Item = (&'static str, u64)>) {
        if !self.due(now) {
            return;
        }
        self.read_at = Some(now);
        for (reason, total) in totals {
            let (last, habit) = (self.last)
                .entry(reason)
                .or_insert_with(|| (total, Habit::new(FLOOR)));
            let n = total.saturating_sub(*last) as f64;
            *last = total;
            if habit.add(now, n) {
                let u = Unusual {
                    count: habit.current(),
                    usual: habit.usual(),
                    at: now,
                };
                self.unusual.insert(reason, u);
            }
        }
        self.unusual
            .retain(|_, u| now.saturating_duration_since(u.at) < REMEMBER);
    }

    /// Reasons with an unusual window in the last 10 minutes.
    pub fn unusual(&self) -> impl Iterator<Item = (&'static str, &Unusual)> {
        self.unusual.iter().map(|(r, u)| (*r, u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_far_above_its_habit_is_reported_and_its_habit_is_not() {
        let t = Instant::now();
        let mut w = DropWatch::default();
        let mut total = 0;
        // Ten minutes of 30 no-route drops a window: the habit.
        for i in 0..60u32 {
            total += 30;
            w.observe(t + EVERY * i, [("no_route", total), ("decrypt", 0)]);
        }
        assert_eq!(w.unusual().count(), 0);
        // 3,000 decrypt failures in one window: unusual; no_route is not.
        w.observe(
            t + EVERY * 60,
            [("no_route", total + 30), ("decrypt", 3000)],
        );
        let found: Vec<_> = w.unusual().collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "decrypt");
        assert!(
            found[0].1.count >= 3000.0 && found[0].1.usual < 1.0,
            "{found:?}"
        );
        // Reads closer together than 10 s are skipped; after 10 minutes the
        // report is gone.
        w.observe(
            t + EVERY * 60 + Duration::from_secs(1),
            [("decrypt", 9_999_999)],
        );
        w.observe(
            t + EVERY * 121,
            [("no_route", total + 30), ("decrypt", 3000)],
        );
        assert_eq!(w.unusual().count(), 0);
    }
}
