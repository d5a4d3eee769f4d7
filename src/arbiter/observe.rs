//! What the master keeps of its workers when they are gone: the accounting
//! done when a worker is reaped, so its counters survive the reuse of its
//! scoreboard slot and its exit is counted by cause.

use super::stats::{self, Ended};
use super::Arbiter;

impl Arbiter {
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
