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
//!
//! Items can be removed: the slot is free for the next push, and its
//! generation moves on, so a handle to the old item (index and generation)
//! never reaches the new one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::{Index, IndexMut};
use std::time::Instant;

/// The deadline is to be computed again.
const STALE: u8 = 1;
/// The item's timers are to run at the next `take_due`.
const TOUCHED: u8 = 2;

pub(crate) struct Table<T> {
    items: Vec<Option<T>>,
    /// Each slot's generation: bumped when its item is removed.
    gens: Vec<u32>,
    /// Free slots, reused first.
    free: Vec<u32>,
    live: usize,
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
            gens: Vec::new(),
            free: Vec::new(),
            live: 0,
            flags: Vec::new(),
            stale: Vec::new(),
            touched: Vec::new(),
            cached: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<T> Table<T> {
    /// Items held.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Slots, free ones included (indices are below this).
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.items.len()
    }

    /// Slot `i`'s generation.
    pub(crate) fn gen(&self, i: usize) -> u32 {
        self.gens[i]
    }

    /// The item in slot `i` if it holds one of generation `gen`.
    pub(crate) fn get(&self, i: usize, gen: u32) -> Option<&T> {
        (self.gens.get(i) == Some(&gen))
            .then(|| self.items[i].as_ref())
            .flatten()
    }

    /// Slot and generation of every item held, in slot order.
    pub(crate) fn handles(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        (self.items.iter().enumerate())
            .filter(|(_, item)| item.is_some())
            .map(|(i, _)| (i, self.gens[i]))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().flatten()
    }

    /// Every item, each marked as written.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        for i in 0..self.items.len() {
            if self.items[i].is_some() {
                self.mark(i);
            }
        }
        self.items.iter_mut().flatten()
    }

    /// An item for a write that changes neither its deadline nor anything
    /// its timers check (a counter, a session's nonce): not marked, so a
    /// flood to every peer does not make every peer's timers run. Debug
    /// builds check every deadline at the next refresh.
    pub(crate) fn quiet_mut(&mut self, i: usize) -> &mut T {
        self.items[i].as_mut().expect("a removed table item")
    }

    /// Adds an item: its slot and generation.
    pub(crate) fn push(&mut self, item: T) -> (usize, u32) {
        self.live += 1;
        let i = match self.free.pop() {
            Some(i) => {
                let i = i as usize;
                self.items[i] = Some(item);
                i
            }
            None => {
                self.items.push(Some(item));
                self.gens.push(0);
                self.flags.push(0);
                self.cached.push(None);
                self.items.len() - 1
            }
        };
        self.mark(i);
        (i, self.gens[i])
    }

    /// Removes the item in slot `i`: the slot is free, its generation
    /// moves on, and its deadline is gone.
    pub(crate) fn remove(&mut self, i: usize) -> Option<T> {
        let item = self.items.get_mut(i)?.take()?;
        self.live -= 1;
        self.gens[i] = self.gens[i].wrapping_add(1);
        self.cached[i] = None;
        // Whatever lists still name the slot skip it while it is free, and
        // its next item is marked afresh.
        self.flags[i] = 0;
        self.free.push(i as u32);
        Some(item)
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
            let d = self.items[i].as_ref().and_then(&deadline);
            if d != self.cached[i] {
                self.cached[i] = d;
                if let Some(t) = d {
                    self.heap.push(Reverse((t, i as u32)));
                }
            }
        }
        // Entries for deadlines since moved pile up while an item is written
        // often and never due (keepalive timers pushed back by traffic).
        if self.heap.len() > 2 * self.live + 64 {
            self.heap = (self.cached.iter().enumerate())
                .filter_map(|(i, d)| d.map(|t| Reverse((t, i as u32))))
                .collect();
        }
        #[cfg(debug_assertions)]
        {
            for (i, item) in self.items.iter().enumerate() {
                assert_eq!(
                    self.cached[i],
                    item.as_ref().and_then(&deadline),
                    "item {i}: a write changed its deadline without marking it"
                );
            }
            let scan = self.items.iter().flatten().filter_map(&deadline).min();
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
        due.retain(|&i| self.items[i].is_some());
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
        self.items[i].as_ref().expect("a removed table item")
    }
}

impl<T> IndexMut<usize> for Table<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        self.mark(i);
        self.items[i].as_mut().expect("a removed table item")
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

    #[test]
    fn a_removed_item_leaves_no_deadline_and_its_slot_comes_back_under_a_new_generation() {
        let t0 = Instant::now();
        let mut t: Table<Option<Instant>> = Table::default();
        let (a, ga) = t.push(at(t0, 10));
        let (b, _) = t.push(at(t0, 20));
        t.refresh(|d| *d);
        assert_eq!(t.take_due(t0), vec![a, b]);
        // Written (so listed to run) and then removed: it runs no more, and
        // its deadline is gone from the heap.
        t[a] = at(t0, 5);
        assert_eq!(t.remove(a), Some(at(t0, 5)));
        assert_eq!(t.remove(a), None);
        t.refresh(|d| *d);
        assert_eq!(t.earliest(), at(t0, 20));
        assert_eq!(t.take_due(t0 + Duration::from_millis(30)), vec![b]);
        assert_eq!((t.len(), t.slots()), (1, 2));
        assert!(t.get(a, ga).is_none());
        // The slot is reused, under another generation; the old handle
        // still finds nothing.
        let (c, gc) = t.push(at(t0, 40));
        assert_eq!(c, a);
        assert_ne!(gc, ga);
        assert!(t.get(a, ga).is_none());
        assert_eq!(t.get(c, gc), Some(&at(t0, 40)));
        t.refresh(|d| *d);
        // c is new; b ran at 30 ms without being rescheduled, so it is due.
        assert_eq!(t.take_due(t0 + Duration::from_millis(30)), vec![c, b]);
        assert_eq!(t.handles().collect::<Vec<_>>(), vec![(c, gc), (b, 0)]);
    }
}
