//! A worker's life, the same under every worker type: how often it beats,
//! noticing that the master is gone, `--max-requests`, and the stop
//! (running, then draining until a deadline, then done).

use super::signals;
use crate::scoreboard::counts::ExitReason;
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest a worker may go between beats: Gunicorn's workers notify
/// every `timeout / 2`; without a timeout, half a second still keeps an
/// idle loop from waiting forever.
pub fn beat_interval(settings: &Settings) -> Duration {
    match settings.timeout {
        Duration::ZERO => Duration::from_millis(500),
        t => t / 2,
    }
}

/// The master that forked this worker is gone (the worker was re-parented):
/// time to stop, as Gunicorn's workers do.
pub fn parent_gone(ppid: i32) -> bool {
    // SAFETY: getppid cannot fail and touches no memory.
    let gone = ppid != unsafe { libc::getppid() };
    if gone {
        crate::log::info!("Parent changed, shutting down: <Worker {}>", std::process::id());
    }
    gone
}

/// `--max-requests` plus this worker's jitter, counted for every request
/// whichever thread serves it. The request that reaches the limit is still
/// served; the worker then stops as on TERM.
pub struct RequestBudget {
    served: AtomicU64,
    /// `u64::MAX` when unlimited.
    max: u64,
}

impl RequestBudget {
    pub fn new(max: u64) -> RequestBudget {
        RequestBudget { served: AtomicU64::new(0), max }
    }

    /// Counts one request (in the scoreboard too).
    pub fn count(&self, slot: &SlotHandle) {
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if self.served.fetch_add(1, Ordering::Relaxed) + 1 == self.max {
            crate::log::info!("Autorestarting worker after current request.");
            slot.set_exit_reason(ExitReason::MaxRequests);
            signals::stop();
        }
    }

    /// The limit is reached: responses announce `Connection: close`.
    pub fn exhausted(&self) -> bool {
        self.served.load(Ordering::Relaxed) >= self.max
    }
}

/// Where an event-driven worker is in its stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// Nothing new is accepted; what is in progress may finish until then.
    Draining {
        deadline: Instant,
    },
    Done,
}

impl Stop {
    /// The worker was asked to stop (TERM, max-requests) or its master is
    /// gone, and has not begun to.
    pub fn due(&self, ppid: i32) -> bool {
        *self == Stop::Running && (!signals::alive() || parent_gone(ppid))
    }

    /// Running → draining for `--graceful-timeout`.
    pub fn drain(&mut self, settings: &Settings) {
        signals::stop();
        *self = Stop::Draining { deadline: Instant::now() + settings.graceful_timeout };
    }

    pub fn is_running(&self) -> bool {
        *self == Stop::Running
    }
}
