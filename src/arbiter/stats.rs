//! What the master counts about requests and workers: the request counters
//! workers keep in their scoreboard slots (status classes, a latency
//! histogram), read back as plain numbers; the totals of workers already
//! gone; and why each worker exited.

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

/// Why the master itself asked a worker to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAsked {
    /// HUP: the old generation makes way for the new one.
    Reload,
    /// The memory guard: its RSS passed `--max-worker-memory`.
    MaxMemory,
    /// TTOU or `worker remove`: the pool shrinks, nobody replaces it.
    Shrink,
    /// `worker kill PID` on the control socket.
    Kill,
}

/// Why a worker was restarted, as metrics and `show stats` count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Died of a signal the master did not send, or exited with an error.
    Crash,
    /// Silent for longer than `--timeout`: the master aborted it.
    Timeout,
    MaxRequests,
    MaxMemory,
    /// A HUP's new generation, or `--reload` after a code change.
    Reload,
    /// Stopped cleanly on request from outside the master's own decisions:
    /// `worker kill`, or a TERM/INT/QUIT sent to the worker directly.
    Terminated,
}

impl Cause {
    pub const ALL: [Cause; 6] =
        [Cause::Crash, Cause::Timeout, Cause::MaxRequests, Cause::MaxMemory, Cause::Reload, Cause::Terminated];

    pub fn label(self) -> &'static str {
        match self {
            Cause::Crash => "crash",
            Cause::Timeout => "timeout",
            Cause::MaxRequests => "max_requests",
            Cause::MaxMemory => "max_memory",
            Cause::Reload => "reload",
            Cause::Terminated => "terminated",
        }
    }
}

/// How a worker process ended, from waitpid's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

impl Ended {
    pub fn from_wait_status(status: i32) -> Ended {
        if libc::WIFSIGNALED(status) {
            Ended::Signaled(libc::WTERMSIG(status))
        } else {
            Ended::Exited(libc::WEXITSTATUS(status))
        }
    }
}

/// Why a reaped worker went, or None when its exit is no restart (the pool
/// shrank, or the pool is being emptied).
pub fn classify(
    asked: Option<StopAsked>,
    aborted: bool,
    said: ExitReason,
    ended: Ended,
    pool_wanted: bool,
) -> Option<Cause> {
    if aborted {
        return Some(Cause::Timeout);
    }
    match asked {
        Some(StopAsked::MaxMemory) => return Some(Cause::MaxMemory),
        Some(StopAsked::Reload) => return Some(Cause::Reload),
        Some(StopAsked::Kill) => return Some(Cause::Terminated),
        Some(StopAsked::Shrink) => return None,
        None => {}
    }
    match said {
        ExitReason::MaxRequests => return Some(Cause::MaxRequests),
        ExitReason::Reload => return Some(Cause::Reload),
        ExitReason::None => {}
    }
    let clean = match ended {
        Ended::Exited(code) => code == 0,
        Ended::Signaled(sig) => matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGQUIT),
    };
    match (clean, pool_wanted) {
        (false, _) => Some(Cause::Crash),
        // A clean exit nobody here asked for while the pool is wanted: the
        // worker was told to stop from outside, and will be replaced.
        (true, true) => Some(Cause::Terminated),
        // WINCH (or a pool of 0): workers leave and are not replaced.
        (true, false) => None,
    }
}

/// What the master keeps across worker lifetimes, so counters never go
/// backwards when a worker exits and its slot is reused.
#[derive(Debug)]
pub struct MasterStats {
    /// Wall-clock start, for `show stats`' uptime (Gunicorn's start_time).
    pub started: std::time::SystemTime,
    /// Requests of workers already reaped.
    pub gone: RequestCounts,
    pub restarts: [u64; Cause::ALL.len()],
    pub spawned: u64,
    pub reloads: u64,
}

impl MasterStats {
    pub fn new() -> MasterStats {
        MasterStats {
            started: std::time::SystemTime::now(),
            gone: RequestCounts::default(),
            restarts: [0; Cause::ALL.len()],
            spawned: 0,
            reloads: 0,
        }
    }

    pub fn count_restart(&mut self, cause: Cause) {
        if let Some(i) = Cause::ALL.iter().position(|c| *c == cause) {
            self.restarts[i] += 1;
        }
    }

    pub fn restarts(&self, cause: Cause) -> u64 {
        Cause::ALL.iter().position(|c| *c == cause).map_or(0, |i| self.restarts[i])
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed().unwrap_or_default()
    }
}

impl Default for MasterStats {
    fn default() -> Self {
        MasterStats::new()
    }
}

/// TERM and KILL signals the master sent to workers (Gunicorn's
/// `workers_killed`, counted where it counts them: in the one function that
/// signals workers). A counter rather than a field because that function is
/// called from `&self` methods all over the loop.
static WORKERS_KILLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn note_signal_sent(sig: libc::c_int) {
    if sig == libc::SIGTERM || sig == libc::SIGKILL {
        WORKERS_KILLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub fn workers_killed() -> u64 {
    WORKERS_KILLED.load(std::sync::atomic::Ordering::Relaxed)
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
    fn causes() {
        let none = ExitReason::None;
        let ok = Ended::Exited(0);
        assert_eq!(classify(None, true, none, Ended::Signaled(libc::SIGKILL), true), Some(Cause::Timeout));
        assert_eq!(classify(None, false, none, Ended::Signaled(libc::SIGKILL), true), Some(Cause::Crash));
        assert_eq!(classify(None, false, none, Ended::Exited(1), true), Some(Cause::Crash));
        assert_eq!(classify(None, false, ExitReason::MaxRequests, ok, true), Some(Cause::MaxRequests));
        assert_eq!(classify(None, false, ExitReason::Reload, ok, true), Some(Cause::Reload));
        assert_eq!(classify(Some(StopAsked::Reload), false, none, ok, true), Some(Cause::Reload));
        assert_eq!(
            classify(Some(StopAsked::MaxMemory), false, none, Ended::Signaled(libc::SIGKILL), true),
            Some(Cause::MaxMemory)
        );
        assert_eq!(classify(Some(StopAsked::Shrink), false, none, ok, true), None);
        assert_eq!(classify(Some(StopAsked::Kill), false, none, ok, true), Some(Cause::Terminated));
        assert_eq!(classify(None, false, none, ok, true), Some(Cause::Terminated));
        assert_eq!(classify(None, false, none, Ended::Signaled(libc::SIGTERM), true), Some(Cause::Terminated));
        assert_eq!(classify(None, false, none, ok, false), None);
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
