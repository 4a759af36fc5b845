//! A vector whose items each have a deadline, with the earliest one kept in
//! a heap: the endpoint's peers, so that a hub with thousands of them finds
//! its next timer, and the peers due at it, without looking at every peer.
//!
//! An item's deadline is a pure function of the item (passed to
//! [`Table::refresh`]). Every write to an item goes through `IndexMut`,
//! [`Table::iter_mut`] or [`Table::push`], which mark the item: its deadline
//! is computed again at the next refresh, and its timers run at the next
//! [`Table::take_due`] even when nothing is due (a peer that got a session
//! gets its link probe at the next timer, as when every peer was scanned).
//! Debug builds check the heap against a scan of every item at each refresh.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::{Index, IndexMut};
use std::time::Instant;

/// The deadline is to be computed again.
const STALE: u8 = 1;
/// The item's timers are to run at the next `take_due`.
const TOUCHED: u8 = 2;

pub(crate) struct Table<T> {
    items: Vec<T>,
    flags: Vec<u8>,
    stale: Vec<u32>,
    touched: Vec<u32>,
    /// Each item's deadline as last computed; the heap holds an entry for
    /// every `Some` here (and stale entries, dropped when they surface).
    cached: Vec<Option<Instant>>,
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            flags: Vec::new(),
            stale: Vec::new(),
            touched: Vec::new(),
            cached: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<T> Table<T> {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// Every item, each marked as written.
    pub(crate) fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        for i in 0..self.items.len() {
            self.mark(i);
        }
        self.items.iter_mut()
    }

    /// An item for a write that changes neither its deadline nor anything
    /// its timers check (a counter, a session's nonce): not marked, so a
    /// flood to every peer does not make every peer's timers run. Debug
    /// builds check every deadline at the next refresh.
    pub(crate) fn quiet_mut(&mut self, i: usize) -> &mut T {
        &mut self.items[i]
    }

    pub(crate) fn push(&mut self, item: T) {
        self.items.push(item);
        self.flags.push(0);
        self.cached.push(None);
        self.mark(self.items.len() - 1);
    }

    fn mark(&mut self, i: usize) {
        let f = &mut self.flags[i];
        if *f & STALE == 0 {
            self.stale.push(i as u32);
        }
        if *f & TOUCHED == 0 {
            self.touched.push(i as u32);
        }
        *f = STALE | TOUCHED;
    }

    /// Computes the deadline of every item written since the last refresh.
    pub(crate) fn refresh(&mut self, deadline: impl Fn(&T) -> Option<Instant>) {
        for i in std::mem::take(&mut self.stale) {
            let i = i as usize;
            self.flags[i] &= !STALE;
            let d = deadline(&self.items[i]);
            if d != self.cached[i] {
                self.cached[i] = d;
                if let Some(t) = d {
                    self.heap.push(Reverse((t, i as u32)));
                }
            }
        }
        // Entries for deadlines since moved pile up while an item is written
        // often and never due (keepalive timers pushed back by traffic).
        if self.heap.len() > 2 * self.items.len() + 64 {
            self.heap = (self.cached.iter().enumerate())
                .filter_map(|(i, d)| d.map(|t| Reverse((t, i as u32))))
                .collect();
        }
        #[cfg(debug_assertions)]
        {
            for (i, item) in self.items.iter().enumerate() {
                assert_eq!(
                    self.cached[i],
                    deadline(item),
                    "item {i}: a write changed its deadline without marking it"
                );
            }
            let scan = self.items.iter().filter_map(&deadline).min();
            assert_eq!(self.earliest(), scan, "the deadline heap is out of step");
        }
    }

    /// The earliest deadline as of the last refresh.
    pub(crate) fn earliest(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, i))) = self.heap.peek() {
            if self.cached[i as usize] == Some(t) {
                return Some(t);
            }
            self.heap.pop();
        }
        None
    }

    /// The items whose timers are to run at `now`, in index order: those
    /// with a deadline at or before `now`, and those written since the last
    /// call. Call after [`Table::refresh`].
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<usize> {
        let mut due: Vec<usize> = self.touched.drain(..).map(|i| i as usize).collect();
        for &i in &due {
            self.flags[i] &= !TOUCHED;
        }
        while let Some(t) = self.earliest().filter(|&t| t <= now) {
            let Some(Reverse((_, i))) = self.heap.pop() else {
                break;
            };
            let i = i as usize;
            // Its entry is gone: computed again at the next refresh whether
            // or not running its timers writes it.
            self.cached[i] = None;
            if self.flags[i] & STALE == 0 {
                self.flags[i] |= STALE;
                self.stale.push(i as u32);
            }
            debug_assert!(t <= now);
            due.push(i);
        }
        due.sort_unstable();
        due.dedup();
        due
    }
}

impl<T> Index<usize> for Table<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.items[i]
    }
}

impl<T> IndexMut<usize> for Table<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        self.mark(i);
        &mut self.items[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(t0: Instant, ms: u64) -> Option<Instant> {
        Some(t0 + Duration::from_millis(ms))
    }

    #[test]
    fn the_earliest_deadline_follows_writes_and_due_items_come_back_once() {
        let t0 = Instant::now();
        let mut t: Table<Option<Instant>> = Table::default();
        for ms in [30, 10, 20] {
            t.push(at(t0, ms));
        }
        t.push(None);
        t.refresh(|d| *d);
        assert_eq!(t.earliest(), at(t0, 10));
        // Every item is new, so all four run at the first call.
        assert_eq!(t.take_due(t0), vec![0, 1, 2, 3]);
        t.refresh(|d| *d);
        assert_eq!(t.take_due(t0), Vec::<usize>::new());
        // Only item 1 is due at 15 ms; reading an item marks nothing.
        let _ = t[2];
        assert_eq!(t.take_due(t0 + Duration::from_millis(15)), vec![1]);
        // Item 1 ran and was not rescheduled: its deadline stays where it
        // was, so it is due again (the endpoint clears what it acted on).
        t.refresh(|d| *d);
        assert_eq!(t.earliest(), at(t0, 10));
        t[1] = at(t0, 40);
        t[0] = at(t0, 5);
        t.refresh(|d| *d);
        assert_eq!(t.earliest(), at(t0, 5));
        assert_eq!(t.take_due(t0 + Duration::from_millis(25)), vec![0, 1, 2]);
        t[0] = None;
        t[2] = None;
        t.refresh(|d| *d);
        assert_eq!(t.earliest(), at(t0, 40));
        for d in t.iter_mut() {
            *d = None;
        }
        t.refresh(|d| *d);
        assert_eq!(t.earliest(), None);
    }

    #[test]
    fn a_deadline_moved_often_does_not_grow_the_heap_without_bound() {
        let t0 = Instant::now();
        let mut t: Table<Option<Instant>> = Table::default();
        t.push(None);
        t.push(at(t0, 1_000_000));
        for ms in 0..10_000 {
            t[0] = at(t0, 100 + ms);
            t.refresh(|d| *d);
        }
        assert!(t.heap.len() <= 2 * t.len() + 65, "{}", t.heap.len());
        assert_eq!(t.earliest(), at(t0, 100 + 9_999));
    }
}
