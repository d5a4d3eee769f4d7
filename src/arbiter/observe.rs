//! What the master knows about its workers, read in one place: a snapshot
//! of the pool (for the metrics endpoint and the control socket) and the
//! accounting done when a worker is reaped, so its counters are kept after
//! its scoreboard slot is reused.

use super::metrics::probes::Readiness;
use super::stats::{self, Ended, MasterStats, RequestCounts};
use super::Arbiter;
use crate::net::listener::Listener;
use crate::settings::Settings;
use std::collections::HashMap;
use std::time::Duration;

/// One worker as the master sees it now.
#[derive(Debug, Clone)]
pub struct WorkerView {
    pub pid: i32,
    /// Spawn order (Gunicorn's `age`).
    pub age: u64,
    /// Time since it was forked.
    pub uptime: Duration,
    pub booted: bool,
    pub aborted: bool,
    /// Asked to stop (reload, shrink, memory): no longer one of the pool.
    pub retiring: bool,
    /// Time since its last heartbeat.
    pub silent: Duration,
    pub requests: u64,
    pub in_flight: u64,
    /// Resident memory, when /proc tells.
    pub rss: Option<u64>,
    /// Its PSS and USS, when /proc tells.
    pub sharing: Option<super::memory::Sharing>,
}

/// The master's state for a metrics scrape or a control command.
pub struct Snapshot<'a> {
    pub pid: i32,
    /// Sorted by age, oldest first.
    pub workers: Vec<WorkerView>,
    /// The pool size the master keeps (`num_workers`).
    pub target: usize,
    /// Every request counted so far: workers gone and workers alive.
    pub requests: RequestCounts,
    pub stats: &'a MasterStats,
    pub listeners: &'a [Listener],
    pub settings: &'a Settings,
    /// The dirty arbiter and its workers, while one runs.
    pub dirty: Option<super::dirty::DirtyView>,
}

impl Snapshot<'_> {
    pub fn in_flight(&self) -> u64 {
        self.workers.iter().map(|w| w.in_flight).sum()
    }
}

/// Every request counted so far: the counts kept from workers gone plus
/// what the workers alive now (retiring ones too) have counted. A free
/// function so the loop can compute it while another field is borrowed.
pub(super) fn request_totals(
    workers: &HashMap<i32, super::Worker>,
    board: &crate::scoreboard::Scoreboard,
    gone: &RequestCounts,
) -> RequestCounts {
    let mut total = *gone;
    for w in workers.values() {
        total.add(&board.slot(w.slot).counts());
    }
    total
}

impl Arbiter {
    /// What `/readyz` answers now.
    pub(super) fn readiness(&self) -> Readiness {
        if self.stopping {
            return Readiness::Stopping;
        }
        let booted = self
            .workers
            .values()
            .filter(|w| w.retiring_since.is_none() && !w.aborted && self.board.slot(w.slot).booted())
            .count();
        match booted {
            0 => Readiness::NoWorkerReady { target: self.num_workers },
            booted => Readiness::Ready { booted, target: self.num_workers },
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot<'_> {
        // Counters before the in-flight gauges: a worker leaves a request's
        // in-flight count before it counts it, so read in this order a
        // finished request is never in both.
        let requests = request_totals(&self.workers, &self.board, &self.stats.gone);
        let now = crate::scoreboard::now_ms();
        let mut workers: Vec<WorkerView> = self
            .workers
            .iter()
            .map(|(pid, w)| {
                let slot = self.board.slot(w.slot);
                WorkerView {
                    pid: *pid,
                    age: w.age,
                    uptime: w.started.elapsed(),
                    booted: slot.booted(),
                    aborted: w.aborted,
                    retiring: w.retiring_since.is_some(),
                    silent: Duration::from_millis(slot.silent_for_ms(now)),
                    requests: slot.requests.load(std::sync::atomic::Ordering::Relaxed),
                    in_flight: slot.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                    rss: super::memory::rss_bytes(*pid).ok(),
                    sharing: super::memory::sharing(*pid).ok(),
                }
            })
            .collect();
        workers.sort_by_key(|w| w.age);
        Snapshot {
            pid: self.pid,
            workers,
            target: self.num_workers,
            requests,
            stats: &self.stats,
            listeners: &self.listeners,
            settings: &self.settings,
            dirty: self.dirty.view(),
        }
    }

    /// A worker was reaped (before its slot is released): its request
    /// counters join the master's totals and its exit is counted by cause.
    pub(super) fn account_exit(&mut self, pid: i32, worker: &super::Worker, status: i32) {
        let slot = self.board.slot(worker.slot);
        self.stats.gone.add(&slot.counts());
        let ended = Ended::from_wait_status(status);
        let cause = stats::classify(worker.stop_asked, worker.aborted, slot.exit_reason(), ended, self.num_workers > 0);
        if let Some(cause) = cause {
            crate::log::debug!("Worker (pid:{pid}) exited: restart cause {}", cause.label());
            self.stats.count_restart(cause);
        }
    }
}
