//! `--request-timeout`'s last resort: a worker whose handler could not be
//! interrupted (stuck in C code) says so in its slot once the grace period
//! is over, and the master recycles it as the memory guard does, the
//! replacement first, then TERM, so the worker's other requests may finish
//! within `--graceful-timeout` (after which the master kills it).

use super::stats::StopAsked;
use super::{Arbiter, Interrupt};
use pyo3::prelude::*;
use std::time::Instant;

impl Arbiter {
    pub(super) fn replace_stuck(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        if self.settings.request_timeout.is_zero() {
            return Ok(());
        }
        let asked: Vec<i32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.retiring_since.is_none() && self.board.slot(w.slot).replacement_asked())
            .map(|(pid, _)| *pid)
            .collect();
        if asked.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        for pid in &asked {
            crate::log::warning!(
                "Worker (pid:{pid}) has a request it could not interrupt past --request-timeout: replacing it"
            );
            if let Some(w) = self.workers.get_mut(pid) {
                w.retiring_since = Some(now);
                w.stop_asked = Some(StopAsked::RequestTimeout);
            }
        }
        self.manage_workers(py)?;
        for pid in asked {
            super::kill(pid, libc::SIGTERM);
        }
        Ok(())
    }
}
