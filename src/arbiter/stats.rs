//! What the master counts about workers: the request totals of workers
//! already gone (their slots' counters, see `crate::scoreboard`), and why
//! each worker exited.

pub use crate::scoreboard::counts::{ExitReason, RequestCounts, BUCKET_BOUNDS_US, STATUS_CLASSES};
use std::time::Duration;

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
    /// A handler outlived `--request-timeout` and its grace period.
    RequestTimeout,
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
    /// A handler could not be interrupted by `--request-timeout`.
    RequestTimeout,
}

impl Cause {
    pub const ALL: [Cause; 7] = [
        Cause::Crash,
        Cause::Timeout,
        Cause::MaxRequests,
        Cause::MaxMemory,
        Cause::Reload,
        Cause::Terminated,
        Cause::RequestTimeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Cause::Crash => "crash",
            Cause::Timeout => "timeout",
            Cause::MaxRequests => "max_requests",
            Cause::MaxMemory => "max_memory",
            Cause::Reload => "reload",
            Cause::Terminated => "terminated",
            Cause::RequestTimeout => "request_timeout",
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
        Some(StopAsked::RequestTimeout) => return Some(Cause::RequestTimeout),
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
        assert_eq!(classify(Some(StopAsked::RequestTimeout), false, none, ok, true), Some(Cause::RequestTimeout));
        assert_eq!(classify(None, false, none, ok, true), Some(Cause::Terminated));
        assert_eq!(classify(None, false, none, Ended::Signaled(libc::SIGTERM), true), Some(Cause::Terminated));
        assert_eq!(classify(None, false, none, ok, false), None);
    }
}
