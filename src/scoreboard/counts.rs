//! What a worker counts in its slot, as plain numbers: requests by status
//! class, a latency histogram, and why it is about to exit.

use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in microseconds
/// (Prometheus client libraries' default buckets, 5 ms to 10 s); one more
/// bucket past the last counts everything slower (`+Inf`).
pub const BUCKET_BOUNDS_US: [u64; 11] =
    [5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000];
pub const BUCKETS: usize = BUCKET_BOUNDS_US.len() + 1;

/// Status classes 1xx..5xx, then anything outside 100..=599 (an ASGI app
/// may send one).
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

pub fn status_class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => STATUS_CLASSES.len() - 1,
    }
}

/// The bucket a request of this duration falls in: the first whose bound
/// is at least the duration (Prometheus buckets are `le`, inclusive).
pub fn bucket(elapsed: Duration) -> usize {
    let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    BUCKET_BOUNDS_US.partition_point(|&bound| bound < us)
}

/// Request counters as numbers: one worker's slot read back, or a sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub status: [u64; STATUS_CLASSES.len()],
    /// Per bucket, not cumulative (the renderer accumulates).
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
    /// Requests interrupted by `--request-timeout`.
    pub timeouts: u64,
}

impl RequestCounts {
    pub fn add(&mut self, other: &RequestCounts) {
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a = a.wrapping_add(b);
        }
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a = a.wrapping_add(b);
        }
        self.sum_us = self.sum_us.wrapping_add(other.sum_us);
        self.timeouts = self.timeouts.wrapping_add(other.timeouts);
    }

    /// Requests recorded (the histogram's count).
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |n, b| n.wrapping_add(*b))
    }
}

/// Why a worker said it is about to exit, written into its slot before it
/// stops (the master cannot tell these from a clean exit otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitReason {
    None = 0,
    MaxRequests = 1,
    /// `--reload` saw a source file change.
    Reload = 2,
}

impl ExitReason {
    pub fn from_u32(n: u32) -> ExitReason {
        match n {
            1 => ExitReason::MaxRequests,
            2 => ExitReason::Reload,
            _ => ExitReason::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket(Duration::from_micros(0)), 0);
        assert_eq!(bucket(Duration::from_millis(5)), 0);
        assert_eq!(bucket(Duration::from_micros(5_001)), 1);
        assert_eq!(bucket(Duration::from_millis(10)), 1);
        assert_eq!(bucket(Duration::from_secs(10)), 10);
        assert_eq!(bucket(Duration::from_secs(11)), 11);
        assert_eq!(bucket(Duration::MAX), BUCKETS - 1);
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(100), 0);
        assert_eq!(status_class(200), 1);
        assert_eq!(status_class(304), 2);
        assert_eq!(status_class(499), 3);
        assert_eq!(status_class(503), 4);
        assert_eq!(status_class(99), 5);
        assert_eq!(status_class(600), 5);
    }

    #[test]
    fn counts_add_up() {
        let mut a = RequestCounts::default();
        a.status[1] = 2;
        a.buckets[0] = 2;
        a.sum_us = 10;
        let mut b = a;
        b.buckets[11] = 1;
        b.status[4] = 1;
        a.add(&b);
        assert_eq!(a.status[1], 4);
        assert_eq!(a.status[4], 1);
        assert_eq!(a.count(), 5);
        assert_eq!(a.sum_us, 20);
    }
}
