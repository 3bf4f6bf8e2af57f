//! The event scheduler: virtual time and the queue of pending events.
//!
//! A discrete-event simulation is a loop of "pop the earliest event, advance the clock
//! to it, handle it (which schedules more events)". [`Scheduler`] is that queue and that
//! clock. Events are ordered by `(time, seq)`, where `seq` is an insertion counter, so
//! events due at the same instant pop in the order they were scheduled: the run is a
//! pure function of the seed and the inputs, never of heap internals.
//!
//! There is no cancellation. A handler that wants to "cancel" a timer bumps a generation
//! (or epoch) counter in its own state and carries the generation in the event; when the
//! stale event pops, the handler sees the mismatch and ignores it. This keeps the heap a
//! plain heap (no tombstones, no index maps) and makes cancellation O(1).
//!
//! The heap is `std::collections::BinaryHeap` over entries ordered by the key only
//! (`E` needs no `Ord`). `benches/engine.rs` measures it in the hold model (10k pending
//! events, each pop schedules one more).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use mesh_core::time::Time;

/// A queue of events of type `E` keyed on virtual time, and the virtual clock.
///
/// `now` starts at [`Time::ZERO`] and only moves forward, to the time of each popped
/// event.
#[derive(Debug)]
pub struct Scheduler<E> {
    heap: BinaryHeap<Entry<E>>,
    now: Time,
    next_seq: u64,
    processed: u64,
    peak_len: usize,
}

/// One pending event. Ordered by `key` only, reversed, so the std max-heap pops the
/// earliest `(time, seq)` first.
#[derive(Debug)]
struct Entry<E> {
    /// `time << 64 | seq`: one integer comparison orders by time, then insertion.
    key: u128,
    ev: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

// === impl Scheduler ===

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Scheduler<E> {
    /// An empty scheduler at time zero.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty scheduler at time zero with room for `capacity` pending events before
    /// the heap reallocates.
    pub fn with_capacity(capacity: usize) -> Self {
        Scheduler {
            heap: BinaryHeap::with_capacity(capacity),
            now: Time::ZERO,
            next_seq: 0,
            processed: 0,
            peak_len: 0,
        }
    }

    /// The current virtual time: the time of the last popped event (zero before the
    /// first pop).
    pub fn now(&self) -> Time {
        self.now
    }

    /// Schedules `ev` at `at`.
    ///
    /// An `at` in the past is clamped to `now` (the event runs next among those due now,
    /// after the ones already scheduled for `now`): time never goes backwards. Scheduling
    /// in the past is a bug in the caller, so debug builds assert against it.
    pub fn schedule_at(&mut self, at: Time, ev: E) {
        debug_assert!(
            at >= self.now,
            "event scheduled in the past: at {} ns < now {} ns",
            at.0,
            self.now.0
        );
        let at = at.max(self.now);
        let key = (u128::from(at.0) << 64) | u128::from(self.next_seq);
        self.next_seq += 1;
        self.heap.push(Entry { key, ev });
        self.peak_len = self.peak_len.max(self.heap.len());
    }

    /// Schedules `ev` `delay_ns` nanoseconds from now (saturating at the end of time).
    pub fn schedule_in(&mut self, delay_ns: u64, ev: E) {
        let at = Time(self.now.0.saturating_add(delay_ns));
        self.schedule_at(at, ev);
    }

    /// Removes the earliest event, advances `now` to its time and returns both. `None`
    /// when nothing is pending (the clock stays where it is).
    pub fn pop(&mut self) -> Option<(Time, E)> {
        let Entry { key, ev } = self.heap.pop()?;
        let at = Time((key >> 64) as u64);
        self.now = at;
        self.processed += 1;
        Some((at, ev))
    }

    /// The time of the earliest pending event, without removing it.
    pub fn peek_time(&self) -> Option<Time> {
        self.heap.peek().map(|e| Time((e.key >> 64) as u64))
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The largest number of events ever pending at once.
    pub fn peak_len(&self) -> usize {
        self.peak_len
    }

    /// Number of events popped so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order_and_advances_now() {
        let mut s = Scheduler::new();
        s.schedule_at(Time(30), "c");
        s.schedule_at(Time(10), "a");
        s.schedule_at(Time(20), "b");
        assert_eq!(s.peek_time(), Some(Time(10)));
        assert_eq!(s.pop(), Some((Time(10), "a")));
        assert_eq!(s.now(), Time(10));
        s.schedule_in(5, "a2");
        assert_eq!(s.pop(), Some((Time(15), "a2")));
        assert_eq!(s.pop(), Some((Time(20), "b")));
        assert_eq!(s.pop(), Some((Time(30), "c")));
        assert_eq!(s.pop(), None);
        assert_eq!(s.now(), Time(30));
        assert_eq!(s.processed(), 4);
        assert_eq!(s.peak_len(), 3);
        assert!(s.is_empty());
    }

    #[test]
    fn equal_times_pop_in_insertion_order() {
        let mut s = Scheduler::new();
        for i in 0..100u32 {
            s.schedule_at(Time(7), i);
        }
        s.schedule_at(Time(3), 1000);
        assert_eq!(s.pop(), Some((Time(3), 1000)));
        let order: Vec<u32> = std::iter::from_fn(|| s.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn the_past_is_clamped_to_now() {
        let mut s = Scheduler::new();
        s.schedule_at(Time(100), 1);
        s.pop();
        s.schedule_at(Time(50), 2);
        assert_eq!(s.pop(), Some((Time(100), 2)));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "in the past")]
    fn the_past_is_a_bug_in_debug_builds() {
        let mut s = Scheduler::new();
        s.schedule_at(Time(100), 1);
        s.pop();
        s.schedule_at(Time(50), 2);
    }

    #[test]
    fn schedule_in_saturates() {
        let mut s = Scheduler::new();
        s.schedule_at(Time(u64::MAX - 1), ());
        s.pop();
        s.schedule_in(10, ());
        assert_eq!(s.peek_time(), Some(Time(u64::MAX)));
    }

    proptest::proptest! {
        /// Whatever the schedule, events pop sorted by time, ties in insertion order,
        /// and the clock never goes back.
        #[test]
        fn pops_sorted_by_time_then_insertion(
            steps in proptest::collection::vec((0u64..50, proptest::bool::ANY), 1..300)
        ) {
            let mut s = Scheduler::new();
            let mut popped = Vec::new();
            for (i, &(delay, pop_now)) in steps.iter().enumerate() {
                s.schedule_in(delay, i);
                if pop_now {
                    popped.extend(s.pop());
                }
            }
            while let Some(p) = s.pop() {
                popped.push(p);
            }
            proptest::prop_assert_eq!(popped.len(), steps.len());
            // Every event is scheduled at or after `now`, so the whole pop sequence is
            // sorted by (time, insertion index).
            for w in popped.windows(2) {
                proptest::prop_assert!(w[0] < w[1], "out of order: {:?}", w);
            }
        }
    }
}
