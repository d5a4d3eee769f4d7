//! A Gunicorn worker class run under ferrocorn's master: `-k
//! package.module.Class` naming a subclass of `gunicorn.workers.base.Worker`
//! that ferrocorn does not serve natively (aiohttp's `GunicornWebWorker`, a
//! `SyncWorker` or `UvicornWorker` subclass that overrides methods).
//!
//! The master forks as for any worker, and runs the hooks it runs for
//! every worker (`post_fork`, `worker_exit`); then the class takes over in
//! `ferrocorn/_foreign.py`, with what Gunicorn's arbiter gives it (`cfg`,
//! `log`, `sockets`, `age`, `ppid`, `timeout`, an `app` whose `wsgi()`
//! loads APP_MODULE). Its `init_process()` sets up signals, the app and
//! `post_worker_init` itself, as under Gunicorn; its `notify()` beats the
//! scoreboard, so `--timeout`, TTIN/TTOU, HUP, USR2, the control socket
//! and the metrics endpoint work on it as on ferrocorn's own workers.

use super::WorkerCtx;
use crate::scoreboard::SlotHandle;
use pyo3::prelude::*;
use pyo3::types::PyList;

/// The prefix `python_class::adopt` gives `worker_class` for such a class,
/// so that `WorkerKind::resolve` knows it without importing anything.
pub const PREFIX: &str = "python:";

/// The worker's heartbeat, as Gunicorn's `WorkerTmp.notify()` is called.
#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct Beat {
    slot: SlotHandle,
    /// Wall-clock seconds of the last beat (`WorkerTmp.last_update()`).
    last: std::sync::atomic::AtomicU64,
}

fn wall_clock() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[pymethods]
impl Beat {
    fn notify(&self) {
        self.slot.beat();
        self.last.store(wall_clock().to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    fn last_update(&self) -> f64 {
        f64::from_bits(self.last.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Runs the class in this (forked) worker; returns the exit status.
pub fn run(py: Python<'_>, ctx: &mut WorkerCtx) -> PyResult<i32> {
    let Some(path) = ctx.settings.worker_class.trim().strip_prefix(PREFIX).map(str::to_owned) else {
        crate::log::error!("worker class {} is not a Python class path", ctx.settings.worker_class);
        return Ok(super::WORKER_BOOT_ERROR);
    };
    let Some((cfg, log)) = crate::hooks::context::current(py) else {
        crate::log::error!("the configuration objects for {path} are missing");
        return Ok(super::WORKER_BOOT_ERROR);
    };
    let listeners = PyList::empty(py);
    for l in &ctx.listeners {
        listeners.append((l.fd(), l.to_string()))?;
    }
    let beat = Bound::new(py, Beat { slot: ctx.slot.clone(), last: wall_clock().to_bits().into() })?;
    ctx.slot.mark_booted();
    // Gunicorn's arbiter gives its workers half the timeout, the most they
    // may go between notify() calls.
    let timeout = ctx.settings.timeout.as_secs_f64() / 2.0;
    let preloaded = ctx.app.take().unwrap_or_else(|| py.None());
    let status = py.import("ferrocorn._foreign")?.getattr("run")?.call1((
        path,
        ctx.age,
        ctx.ppid,
        listeners,
        timeout,
        ctx.max_requests,
        ctx.app_uri.as_str(),
        preloaded,
        beat,
        cfg,
        log,
    ))?;
    Ok(status.extract::<i32>().unwrap_or(-1))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Beat>()
}
