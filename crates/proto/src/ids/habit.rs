//! A learned habit: the usual count of something per window, and whether
//! the window in progress has left it (`super`'s peers' denials; the
//! agent's drop reasons).

use std::time::{Duration, Instant};

/// Length of a window of a peer's habit.
const HABIT_WINDOW: Duration = Duration::from_secs(10);
/// Weight of the newest window in the habit (about 20 windows' memory).
const HABIT_ALPHA: f64 = 0.05;
/// Windows of history before a departure from the habit is judged.
const HABIT_MIN_WINDOWS: u32 = 12;
/// A window leaves the habit above mean + this many deviations...
const HABIT_SIGMAS: f64 = 6.0;
/// Flagged windows are kept out of the habit (a surge does not teach
/// that surges are normal) until this many in a row: then the new level
/// is learned, as a changed habit.
const HABIT_MAX_STREAK: u32 = 6;
/// A habit is kept this long after its peer's last denied packet.
const HABIT_MEMORY: Duration = Duration::from_secs(600);

/// A learned habit: an online (exponentially weighted) mean and variance
/// of a count per [`HABIT_WINDOW`], so a sudden surge is flagged against
/// what is normal for that source, without a hand-set threshold. Here, a
/// peer's packets the policy denies (a client retrying a denied service
/// all day is its habit; ten times that is news); the agent keeps one per
/// drop reason.
#[derive(Debug, Clone, Default)]
pub struct Habit {
    /// A window is unusual only above the usual by this much too.
    pub(super) floor: f64,
    start: Option<Instant>,
    last: Option<Instant>,
    count: f64,
    mean: f64,
    var: f64,
    windows: u32,
    flagged: bool,
    /// Flagged windows in a row.
    streak: u32,
}

impl Habit {
    /// A habit that flags a window above mean + 6 σ + `floor`, once it has
    /// two minutes of history.
    pub fn new(floor: f64) -> Self {
        Self {
            floor,
            ..Self::default()
        }
    }

    /// The usual count per window (10 s).
    pub fn usual(&self) -> f64 {
        self.mean
    }

    /// The count of the window in progress.
    pub fn current(&self) -> f64 {
        self.count
    }

    fn update(&mut self, x: f64) {
        let d = x - self.mean;
        self.mean += HABIT_ALPHA * d;
        self.var = (1.0 - HABIT_ALPHA) * (self.var + HABIT_ALPHA * d * d);
        self.windows = self.windows.saturating_add(1);
    }

    /// Closes the windows that ended by `now` (quiet ones count as 0, at
    /// most 100 of them).
    fn roll(&mut self, now: Instant) {
        let Some(start) = self.start else {
            self.start = Some(now);
            return;
        };
        let n = now.saturating_duration_since(start).as_nanos() / HABIT_WINDOW.as_nanos();
        if n == 0 {
            return;
        }
        if self.flagged && self.streak < HABIT_MAX_STREAK {
            self.streak += 1;
        } else {
            self.streak = 0;
            self.update(self.count);
        }
        for _ in 1..n.min(100) {
            self.update(0.0);
        }
        self.count = 0.0;
        self.flagged = false;
        self.start = Some(start + HABIT_WINDOW * u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Counts `n` more in the window of `now`; true when this window just
    /// left the habit (once per window).
    pub fn add(&mut self, now: Instant, n: f64) -> bool {
        self.roll(now);
        self.last = Some(now);
        self.count += n;
        if self.flagged || self.windows < HABIT_MIN_WINDOWS {
            return false;
        }
        let limit = self.mean + HABIT_SIGMAS * self.var.sqrt() + self.floor;
        self.flagged = self.count > limit;
        self.flagged
    }

    pub(super) fn remembered(&self, now: Instant) -> bool {
        self.last
            .is_some_and(|t| now.saturating_duration_since(t) < HABIT_MEMORY)
    }
}
