//! Logging through a Python logger object, used only when the configuration
//! asks for Python logging (`--logger-class`, `--log-config`,
//! `logconfig_dict`, `--log-config-json`): then every error record goes to
//! the logger's `debug()`..`critical()` and every request to its `access()`,
//! as in Gunicorn. Otherwise ferrocorn's Rust writers are used and this
//! module holds nothing.

use super::level::Level;
use pyo3::prelude::*;
use std::sync::RwLock;

static LOGGER: RwLock<Option<Py<PyAny>>> = RwLock::new(None);

/// Installs (or, with `None`, removes) the Python logger for this process
/// and the workers it forks.
pub fn install(logger: Option<Py<PyAny>>) {
    let old = std::mem::replace(&mut *LOGGER.write().unwrap_or_else(|p| p.into_inner()), logger);
    // Dropping a Py needs the GIL to decref at once; PyO3 defers it
    // otherwise, which is also fine.
    drop(old);
}

pub fn active() -> bool {
    LOGGER.read().map(|l| l.is_some()).unwrap_or(false)
}

/// The logger object, for the access path and USR1.
pub fn logger(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    LOGGER.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|l| l.bind(py).clone())
}

fn method(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warning => "warning",
        Level::Error => "error",
        Level::Critical => "critical",
    }
}

/// One record, passed as an already formatted message (no `%` arguments,
/// so a `%` in it is printed as it is).
pub fn emit(level: Level, message: &str) {
    // A thread still logging while the interpreter shuts down cannot reach
    // the Python logger any more; the Rust log takes the record instead.
    let reached = Python::try_attach(|py| {
        let Some(logger) = logger(py) else { return };
        if let Err(e) = logger.call_method1(method(level), (message,)) {
            // The logger itself failed: say so where it cannot fail again.
            let text = crate::python::format_exception(py, &e);
            super::error_log().log(Level::Error, format_args!("The Python logger failed:\n{text}{message}"));
        }
    });
    if reached.is_none() {
        super::error_log().log(level, format_args!("{message}"));
    }
}

/// `logging.Handler` records from Python code (the `gunicorn.error`
/// logger) into ferrocorn's error log, with its prefix and pid.
#[pyfunction]
fn write_error_log(levelno: i64, message: &str) {
    let level = Level::from_u8(levelno.clamp(0, 255) as u8);
    super::ERROR_LOG.log(level, format_args!("{message}"));
    super::syslog::error(level, format_args!("{message}"));
}

/// `server.log.error()` and friends from hook code count as Gunicorn's
/// Statsd logger counts them (`gunicorn.log.<level>`).
#[pyfunction]
fn count_log_metric(level: &str) {
    if matches!(level, "critical" | "error" | "warning" | "exception") {
        super::statsd::increment(&format!("gunicorn.log.{level}"), 1);
    }
}

/// `gunicorn.access` records from Python code: the line as it is.
#[pyfunction]
fn write_access_log(line: &str) {
    super::syslog::access(line.as_bytes());
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    super::ACCESS_LOG.write_line(&bytes);
}

/// The error log's threshold, as a `logging` level number.
#[pyfunction]
fn error_log_level() -> i64 {
    i64::from(super::ERROR_LOG.level() as u8)
}

/// `Logger.reopen_files()` for the Rust-written logs.
#[pyfunction]
fn reopen_logs() -> PyResult<()> {
    let error = super::ERROR_LOG.reopen();
    let access = super::ACCESS_LOG.reopen();
    error.and(access).map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(write_error_log, m)?)?;
    m.add_function(wrap_pyfunction!(write_access_log, m)?)?;
    m.add_function(wrap_pyfunction!(count_log_metric, m)?)?;
    m.add_function(wrap_pyfunction!(error_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(reopen_logs, m)?)?;
    Ok(())
}
