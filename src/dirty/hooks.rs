//! The dirty hooks (`on_dirty_starting`, `dirty_post_fork`,
//! `dirty_worker_init`, `dirty_worker_exit`), called where Gunicorn 27 calls
//! them: the first, second and last in the dirty arbiter, the third in the
//! dirty worker once its apps are initialised. Their `arbiter` and `worker`
//! objects are `ferrocorn/dirty/_objects.py`'s. An exception is logged and
//! the process goes on; `sys.exit()` ends the arbiter (from
//! `on_dirty_starting`) or the worker (from `dirty_worker_init`).

use crate::hooks::{call_master, HookExit};
use crate::settings::Settings;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

fn objects(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("ferrocorn.dirty._objects")
}

/// The `cfg` and `log` objects of the configuration in force.
fn cfg_log(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
    crate::hooks::context::current(py)
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("the configuration objects are not installed"))
}

pub fn arbiter_object(py: Python<'_>, pid: i32, ppid: i32, socket_path: &str) -> PyResult<Py<PyAny>> {
    let (cfg, log) = cfg_log(py)?;
    Ok(objects(py)?.getattr("DirtyArbiter")?.call1((cfg, log, pid, ppid, socket_path))?.unbind())
}

pub fn worker_object(py: Python<'_>, age: u64, ppid: i32, apps: &[String], socket_path: &str) -> PyResult<Py<PyAny>> {
    let (cfg, log) = cfg_log(py)?;
    let apps = PyList::new(py, apps)?;
    Ok(objects(py)?.getattr("DirtyWorker")?.call1((age, ppid, apps, cfg, log, socket_path))?.unbind())
}

/// After a HUP: the objects see the new `cfg` and `log`.
pub fn refresh(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let (cfg, log) = cfg_log(py)?;
    obj.setattr("cfg", cfg)?;
    obj.setattr("log", log)
}

pub fn on_dirty_starting(py: Python<'_>, s: &Settings, arbiter: &Bound<'_, PyAny>) -> Result<(), HookExit> {
    call_master(py, "on_dirty_starting", &s.on_dirty_starting, || PyTuple::new(py, [arbiter]))
}

/// In the dirty arbiter, just after the fork (the worker has its pid).
pub fn dirty_post_fork(py: Python<'_>, s: &Settings, arbiter: &Bound<'_, PyAny>, worker: &Bound<'_, PyAny>) {
    let _ = call_master(py, "dirty_post_fork", &s.dirty_post_fork, || PyTuple::new(py, [arbiter, worker]));
}

pub fn dirty_worker_init(py: Python<'_>, s: &Settings, worker: &Bound<'_, PyAny>) -> Result<(), HookExit> {
    call_master(py, "dirty_worker_init", &s.dirty_worker_init, || PyTuple::new(py, [worker]))
}

pub fn dirty_worker_exit(py: Python<'_>, s: &Settings, arbiter: &Bound<'_, PyAny>, worker: &Bound<'_, PyAny>) {
    let _ = call_master(py, "dirty_worker_exit", &s.dirty_worker_exit, || PyTuple::new(py, [arbiter, worker]));
}
