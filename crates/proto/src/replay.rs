//! The anti-replay window: a ring of 64-bit blocks, as in wireguard-go's
//! `replay` package and RFC 6479.
//!
//! [`ReplayWindow::check`] is read-only and runs *before* decryption;
//! [`ReplayWindow::update`] marks a counter only *after* its tag verified, so a
//! forged packet can never move the window.

/// Bits per ring block.
const BLOCK_BITS: u64 = 64;
/// Blocks in the ring (a power of two).
const RING_BLOCKS: u64 = 64;
/// Counters this far behind the newest are still accepted once.
pub const WINDOW_SIZE: u64 = (RING_BLOCKS - 1) * BLOCK_BITS;
/// Counters at or above this are never accepted (WireGuard's `RejectAfterMessages`).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// A sliding window over received counters.
#[derive(Clone)]
pub struct ReplayWindow {
    last: u64,
    ring: [u64; RING_BLOCKS as usize],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("last", &self.last)
            .finish()
    }
}

impl ReplayWindow {
    /// An empty window.
    pub const fn new() -> Self {
        Self {
            last: 0,
            ring: [0; RING_BLOCKS as usize],
        }
    }

    /// Whether `counter` would be accepted (not seen, not too old, in range).
    pub fn check(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        if counter > self.last {
            return true;
        }
        if self.last - counter > WINDOW_SIZE {
            return false;
        }
        let block = ((counter / BLOCK_BITS) % RING_BLOCKS) as usize;
        self.ring[block] & (1 << (counter % BLOCK_BITS)) == 0
    }

    /// Marks `counter` as received. Returns false if it was a replay or out of
    /// the window (in which case nothing changes).
    pub fn update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        let index_block = counter / BLOCK_BITS;
        if counter > self.last {
            let current = self.last / BLOCK_BITS;
            let diff = (index_block - current).min(RING_BLOCKS);
            for i in 1..=diff {
                self.ring[((current + i) % RING_BLOCKS) as usize] = 0;
            }
            self.last = counter;
        }
        self.ring[(index_block % RING_BLOCKS) as usize] |= 1 << (counter % BLOCK_BITS);
        true
    }

    /// The highest counter accepted so far.
    pub fn last(&self) -> u64 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of wireguard-go's `replay_test.go` (itself from the Linux
    /// kernel's WireGuard selftest), scaled to this window size.
    #[test]
    fn replay_table() {
        let t = WINDOW_SIZE + 1;
        let rej = REJECT_AFTER_MESSAGES;
        let mut r = ReplayWindow::new();
        let table: &[(u64, bool)] = &[
            (0, true),
            (1, true),
            (1, false),
            (9, true),
            (8, true),
            (7, true),
            (7, false),
            (t, true),
            (t - 1, true),
            (t - 1, false),
            (t - 2, true),
            (2, true),
            (2, false),
            (t + 16, true),
            (3, false),
            (t + 16, false),
            (t * 4, true),
            (t * 4 - (t - 1), true),
            (10, false),
            (t * 4 - t, false),
            (t * 4 - (t + 1), false),
            (t * 4 - (t - 2), true),
            (t * 4 + 1 - t, false),
            (0, false),
            (rej, false),
            (rej - 1, true),
            (rej, false),
            (rej - 1, false),
            (rej - 2, true),
            (rej + 1, false),
            (rej + 2, false),
            (rej - 2, false),
            (rej - 3, true),
            (0, false),
        ];
        for (i, &(counter, expected)) in table.iter().enumerate() {
            assert_eq!(r.update(counter), expected, "row {i}: counter {counter}");
        }
    }

    #[test]
    fn window_is_at_least_2048() {
        const { assert!(WINDOW_SIZE >= 2048) };
        let mut r = ReplayWindow::new();
        assert!(r.update(3000));
        // Everything 1..=2048 behind is still accepted exactly once.
        for c in (3000 - 2048)..3000 {
            assert!(r.check(c), "{c}");
            assert!(r.update(c));
            assert!(!r.update(c));
        }
    }

    #[test]
    fn bulk_in_order_and_reverse() {
        let mut r = ReplayWindow::new();
        for c in 1..=WINDOW_SIZE * 3 {
            assert!(r.update(c));
        }
        for c in 0..=WINDOW_SIZE * 3 {
            assert!(!r.update(c));
        }
        let mut r = ReplayWindow::new();
        let top = WINDOW_SIZE * 3 + 1;
        for c in (WINDOW_SIZE * 2 + 1..=top).rev() {
            assert!(r.update(c), "{c}");
        }
        assert!(!r.update(WINDOW_SIZE * 2));
    }

    #[test]
    fn check_never_marks() {
        let mut r = ReplayWindow::new();
        assert!(r.check(5));
        assert!(r.check(5));
        assert!(r.update(5));
        assert!(!r.check(5));
    }
}
