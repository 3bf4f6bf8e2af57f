//! The few OS calls the engine needs that std does not offer: timer slack (so the
//! pacer's sleeps wake on time), per-thread CPU time (so the pacer can report what its
//! precision costs), and process resource use (CPU and peak RSS for the result).
//!
//! Linux-first; on other Unix systems the calls that exist are used and the rest
//! report zero.

#![allow(unsafe_code)]

use std::time::Duration;

/// Asks the kernel to wake this thread's sleeps within `slack_ns` of the requested
/// time (Linux `PR_SET_TIMERSLACK`; the default slack is 50 µs). Best effort.
pub fn set_thread_timer_slack(slack_ns: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes a plain integer and only affects the
    // calling thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, slack_ns as libc::c_ulong, 0, 0, 0);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = slack_ns;
}

/// CPU time consumed by the calling thread so far.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time and peak memory of the whole process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    pub user: Duration,
    pub system: Duration,
    pub max_rss_bytes: u64,
}

/// Reads `getrusage(RUSAGE_SELF)`.
pub fn process_usage() -> ProcessUsage {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid and writable; RUSAGE_SELF is a constant.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return ProcessUsage::default();
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    ProcessUsage {
        user: tv(ru.ru_utime),
        system: tv(ru.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss_bytes: (ru.ru_maxrss as u64) * 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time() > before);
    }

    #[test]
    fn process_usage_reports_memory() {
        let u = process_usage();
        assert!(u.max_rss_bytes > 1024 * 1024, "{u:?}");
    }
}
