//! A node's CPU: `k` cores serving work first come, first served.
//!
//! Every decision the mesh makes costs CPU time (see [`crate::cost`]), and so does the
//! app. [`CpuQueue`] turns "this much work arrived now" into "it completes then", so
//! queueing delay and saturation emerge from load instead of being assumed. A job runs
//! on the core that frees up first; jobs are never split or preempted.
//!
//! The model is exact FCFS when submissions come in nondecreasing `now`, which a
//! discrete-event loop guarantees. It keeps only each core's free-at time, so a submit
//! is a scan of at most [`MAX_CORES`] integers and no events are needed for the queue
//! itself: the caller schedules one completion event at the returned time.

use mesh_core::time::Time;

/// The most cores a [`CpuQueue`] models.
pub const MAX_CORES: u32 = 64;

/// A k-core FCFS processor.
#[derive(Debug, Clone)]
pub struct CpuQueue {
    cores: u32,
    /// When each core finishes the work already given to it (ns); only `..cores` used.
    free_at_ns: [u64; MAX_CORES as usize],
    accepted_ns: u64,
    dropped_ns: u64,
    jobs: u64,
    wait_sum_ns: u64,
    wait_max_ns: u64,
}

/// Queueing-delay statistics: how long jobs waited for a core before starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDelay {
    /// Jobs submitted.
    pub jobs: u64,
    /// Total waiting time over all jobs (ns).
    pub sum_ns: u64,
    /// Longest single wait (ns).
    pub max_ns: u64,
}

impl QueueDelay {
    /// Mean wait per job in ns (0 with no jobs).
    pub fn mean_ns(&self) -> f64 {
        if self.jobs == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.jobs as f64
        }
    }
}

/// A snapshot to measure utilization over a window: take one with [`CpuQueue::mark`],
/// later pass it to [`CpuQueue::utilization_since`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMark {
    at: Time,
    executed_ns: u64,
}

// === impl CpuQueue ===

impl CpuQueue {
    /// An idle processor with `cores` cores, clamped to `1..=MAX_CORES`.
    pub fn new(cores: u32) -> Self {
        debug_assert!(
            (1..=MAX_CORES).contains(&cores),
            "cores = {cores}, want 1..={MAX_CORES}"
        );
        CpuQueue {
            cores: cores.clamp(1, MAX_CORES),
            free_at_ns: [0; MAX_CORES as usize],
            accepted_ns: 0,
            dropped_ns: 0,
            jobs: 0,
            wait_sum_ns: 0,
            wait_max_ns: 0,
        }
    }

    /// Number of cores.
    pub fn cores(&self) -> u32 {
        self.cores
    }

    /// Submits `work_ns` of CPU work arriving at `now`; returns when it completes.
    ///
    /// The job starts on the earliest-free core, at `max(now, that core's free time)`.
    /// Call with nondecreasing `now` for exact FCFS.
    pub fn submit(&mut self, now: Time, work_ns: u64) -> Time {
        let free = &mut self.free_at_ns[..self.cores as usize];
        let mut best = 0;
        for (i, &t) in free.iter().enumerate().skip(1) {
            if t < free[best] {
                best = i;
            }
        }
        let start_ns = free[best].max(now.0);
        let done_ns = start_ns.saturating_add(work_ns);
        free[best] = done_ns;
        let wait_ns = start_ns - now.0;
        self.jobs += 1;
        self.accepted_ns = self.accepted_ns.saturating_add(work_ns);
        self.wait_sum_ns = self.wait_sum_ns.saturating_add(wait_ns);
        self.wait_max_ns = self.wait_max_ns.max(wait_ns);
        Time(done_ns)
    }

    /// When the next submission arriving at `now` would start (its queueing delay is
    /// this minus `now`).
    pub fn next_start(&self, now: Time) -> Time {
        let min = self.free_at_ns[..self.cores as usize]
            .iter()
            .min()
            .copied()
            .unwrap_or(0);
        Time(min.max(now.0))
    }

    /// Total work accepted by [`submit`](Self::submit), in ns (including work later
    /// dropped by a [`reset`](Self::reset)).
    pub fn busy_ns(&self) -> u64 {
        self.accepted_ns
    }

    /// Work accepted but not yet executed at `now` (queued, or the unfinished part of
    /// running jobs), in ns summed over cores.
    pub fn backlog_ns(&self, now: Time) -> u64 {
        self.free_at_ns[..self.cores as usize]
            .iter()
            .map(|t| t.saturating_sub(now.0))
            .sum()
    }

    /// Work executed up to `now`, in ns summed over cores.
    pub fn executed_ns(&self, now: Time) -> u64 {
        self.accepted_ns - self.dropped_ns - self.backlog_ns(now)
    }

    /// A snapshot for [`utilization_since`](Self::utilization_since).
    pub fn mark(&self, now: Time) -> CpuMark {
        CpuMark {
            at: now,
            executed_ns: self.executed_ns(now),
        }
    }

    /// Fraction of core time busy between `mark` and `now`, in `[0, 1]`
    /// (0 for an empty window).
    pub fn utilization_since(&self, now: Time, mark: CpuMark) -> f64 {
        let window_ns = now.0.saturating_sub(mark.at.0);
        if window_ns == 0 {
            return 0.0;
        }
        let busy = self.executed_ns(now).saturating_sub(mark.executed_ns);
        busy as f64 / (window_ns as f64 * f64::from(self.cores))
    }

    /// Waiting-time statistics over every job submitted.
    pub fn queue_delay(&self) -> QueueDelay {
        QueueDelay {
            jobs: self.jobs,
            sum_ns: self.wait_sum_ns,
            max_ns: self.wait_max_ns,
        }
    }

    /// A crash: forgets all queued and running work, every core is free at `now`.
    /// Statistics are kept. Completions already scheduled by the caller still fire; the
    /// caller recognises them as stale by its own epoch counter.
    pub fn reset(&mut self, now: Time) {
        self.dropped_ns += self.backlog_ns(now);
        for t in &mut self.free_at_ns[..self.cores as usize] {
            *t = now.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_core_serializes() {
        let mut cpu = CpuQueue::new(1);
        assert_eq!(cpu.submit(Time(0), 10), Time(10));
        assert_eq!(cpu.submit(Time(0), 10), Time(20));
        assert_eq!(cpu.submit(Time(5), 10), Time(30));
        assert_eq!(cpu.submit(Time(100), 10), Time(110));
        let d = cpu.queue_delay();
        assert_eq!((d.jobs, d.sum_ns, d.max_ns), (4, 10 + 15, 15));
        assert_eq!(cpu.busy_ns(), 40);
        assert_eq!(cpu.backlog_ns(Time(105)), 5);
    }

    #[test]
    fn k_cores_run_k_jobs_in_parallel() {
        let mut cpu = CpuQueue::new(4);
        let done: Vec<Time> = (0..8).map(|_| cpu.submit(Time(0), 100)).collect();
        assert_eq!(done[..4], [Time(100); 4]);
        assert_eq!(done[4..], [Time(200); 4]);
        assert_eq!(cpu.next_start(Time(50)), Time(200));
        assert_eq!(cpu.backlog_ns(Time(50)), 4 * 150);
    }

    #[test]
    fn earliest_free_core_takes_the_job() {
        let mut cpu = CpuQueue::new(2);
        assert_eq!(cpu.submit(Time(0), 100), Time(100));
        assert_eq!(cpu.submit(Time(0), 30), Time(30));
        assert_eq!(cpu.submit(Time(10), 5), Time(35));
        assert_eq!(cpu.submit(Time(10), 5), Time(40));
    }

    #[test]
    fn utilization_over_a_window() {
        let mut cpu = CpuQueue::new(2);
        let m = cpu.mark(Time(0));
        cpu.submit(Time(0), 100);
        assert_eq!(cpu.utilization_since(Time(100), m), 0.5);
        assert_eq!(cpu.utilization_since(Time(50), m), 0.5);
        cpu.submit(Time(100), 100);
        cpu.submit(Time(100), 100);
        let m2 = cpu.mark(Time(100));
        assert_eq!(cpu.utilization_since(Time(200), m2), 1.0);
        assert_eq!(cpu.utilization_since(Time(400), m), 300.0 / 800.0);
        assert_eq!(cpu.utilization_since(Time(0), m), 0.0);
    }

    #[test]
    fn reset_forgets_queued_work() {
        let mut cpu = CpuQueue::new(1);
        cpu.submit(Time(0), 1_000);
        cpu.submit(Time(0), 1_000);
        cpu.reset(Time(500));
        assert_eq!(cpu.backlog_ns(Time(500)), 0);
        assert_eq!(cpu.executed_ns(Time(500)), 500);
        assert_eq!(cpu.submit(Time(600), 10), Time(610));
        assert_eq!(cpu.executed_ns(Time(1_000)), 510);
        assert_eq!(cpu.busy_ns(), 2_010);
    }

    #[test]
    fn cores_are_clamped() {
        assert_eq!(CpuQueue::new(MAX_CORES).cores(), MAX_CORES);
    }

    proptest::proptest! {
        /// Work is conserved and never starts early: each job completes at least its
        /// work after it arrived, and the backlog drains at no more than `cores` ns per ns.
        #[test]
        fn work_is_conserved(
            cores in 1u32..8,
            jobs in proptest::collection::vec((0u64..1_000, 0u64..5_000), 1..200)
        ) {
            let mut cpu = CpuQueue::new(cores);
            let (mut now, mut total, mut last) = (0u64, 0u64, 0u64);
            for &(gap, work) in &jobs {
                now += gap;
                let done = cpu.submit(Time(now), work).0;
                proptest::prop_assert!(done >= now + work);
                total += work;
                last = last.max(done);
            }
            proptest::prop_assert_eq!(cpu.busy_ns(), total);
            proptest::prop_assert_eq!(cpu.executed_ns(Time(now)) + cpu.backlog_ns(Time(now)), total);
            proptest::prop_assert_eq!(cpu.backlog_ns(Time(last)), 0);
            proptest::prop_assert_eq!(cpu.executed_ns(Time(last)), total);
            if cores == 1 {
                // One core: busy from the first arrival, so it finishes no later than
                // "all work back to back after the last arrival".
                proptest::prop_assert!(last <= now + total);
            }
        }
    }
}
