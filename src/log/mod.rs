//! Gunicorn-compatible logging for every process of the pre-fork server.
//!
//! The process-wide error log is reached through [`configure`], [`reopen`]
//! and the `log::debug!` .. `log::critical!` macros; the access log through
//! [`configure_access`] and [`access`]. Each process (master and every
//! forked worker) has its own copy of this state; records carry the pid of
//! the process at the moment they are written.
//!
//! The macros expand to `$crate::log::...`, so this module must be mounted
//! as `crate::log`.

pub mod access;
pub mod clock;
mod error_log;
pub mod json;
mod level;
mod open_error;
pub mod python;
mod sink;
pub mod statsd;
pub mod syslog;

use std::fmt;

pub use access::{
    AccessFormat, AccessLog, AccessRecord, EnvValue, EnvironLookup, HeaderLookup, Nothing, RenderError, Text,
    DEFAULT_ACCESS_LOG_FORMAT,
};
pub use error_log::ErrorLog;
pub use level::{Level, UnknownLevel};
pub use open_error::OpenError;
pub use sink::{Sink, Target};

static ERROR_LOG: ErrorLog = ErrorLog::new();
static ACCESS_LOG: AccessLog = AccessLog::new();

pub fn error_log() -> &'static ErrorLog {
    &ERROR_LOG
}

pub fn access_log() -> &'static AccessLog {
    &ACCESS_LOG
}

/// `--log-level` and `--error-logfile` (`"-"` = stderr). On error the
/// previous destination stays in use.
pub fn configure(level: Level, target: &str) -> Result<(), OpenError> {
    ERROR_LOG.configure(level, target)
}

/// `--access-logfile`: `None` disables, `"-"` = stdout.
pub fn configure_access(target: Option<&str>) -> Result<(), OpenError> {
    ACCESS_LOG.configure(target)
}

/// `--capture-output`: point stdout and stderr at the error log file (no
/// effect when it is stderr). Flush Python's `sys.stdout`/`sys.stderr`
/// first, as Gunicorn does.
pub fn capture_output() -> Result<(), OpenError> {
    ERROR_LOG.capture_output()
}

/// USR1 / logrotate: reopen both logs by path (and a Python logger's files,
/// through its `reopen_files()`). All are attempted; the first failure is
/// returned and that log keeps its old file.
pub fn reopen() -> Result<(), OpenError> {
    let error = ERROR_LOG.reopen();
    let access = ACCESS_LOG.reopen();
    if python::active() {
        use pyo3::types::PyAnyMethods;
        let _ = pyo3::Python::try_attach(|py| {
            if let Some(logger) = python::logger(py) {
                if let Err(e) = logger.call_method0("reopen_files") {
                    let tb = crate::python::format_exception(py, &e);
                    ERROR_LOG.log(Level::Error, format_args!("reopening the Python logger's files failed\n{tb}"));
                }
            }
        });
    }
    error.and(access)
}

/// `--error-log-json`: records as JSON objects from now on.
pub fn set_error_json(on: bool) {
    ERROR_LOG.set_json(on);
}

/// Changes the threshold without touching the destination.
pub fn set_level(level: Level) {
    ERROR_LOG.set_level(level);
}

pub fn enabled(level: Level) -> bool {
    ERROR_LOG.enabled(level)
}

/// What the macros call: the Rust error log (and syslog), or the Python
/// logger when one is configured; statsd counts warnings and worse under
/// Gunicorn's metric names.
pub fn emit(level: Level, args: fmt::Arguments<'_>) {
    record(level, args, false);
}

/// An error with a traceback (Gunicorn's `log.exception()`): the same
/// record, counted as `gunicorn.log.exception` instead of `log.error`.
pub fn emit_exception(args: fmt::Arguments<'_>) {
    record(Level::Error, args, true);
}

fn record(level: Level, args: fmt::Arguments<'_>, exception: bool) {
    if ERROR_LOG.enabled(level) {
        if python::active() {
            python::emit(level, &fmt::format(args));
        } else {
            ERROR_LOG.log(level, args);
            syslog::error(level, args);
        }
    }
    let metric = match (level, exception) {
        (_, true) => "gunicorn.log.exception",
        (Level::Critical, _) => "gunicorn.log.critical",
        (Level::Error, _) => "gunicorn.log.error",
        (Level::Warning, _) => "gunicorn.log.warning",
        _ => return,
    };
    statsd::increment(metric, 1);
}

/// `wsgi.errors.write()`: bytes to the error log destination as they are.
pub fn write_raw(bytes: &[u8]) {
    ERROR_LOG.write_raw(bytes);
}

/// One access-log line. A line that cannot be rendered is skipped and the
/// reason goes to the error log (Gunicorn prints a traceback instead).
pub fn access(format: &AccessFormat, record: &AccessRecord<'_>) {
    if !access_wanted() {
        return;
    }
    if let Err(e) = ACCESS_LOG.log_with(format, record, syslog::access) {
        emit(Level::Error, format_args!("Error formatting access log line with {:?}: {}", format.as_str(), e));
    }
}

/// Whether a worker needs to render access lines at all: an access log
/// file, or access lines redirected to syslog.
pub fn access_wanted() -> bool {
    ACCESS_LOG.enabled() || syslog::wants_access()
}

#[allow(unused_macros)]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::emit($crate::log::Level::Debug, ::std::format_args!($($arg)+))
    };
}

#[allow(unused_macros)]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::emit($crate::log::Level::Info, ::std::format_args!($($arg)+))
    };
}

#[allow(unused_macros)]
macro_rules! warning {
    ($($arg:tt)+) => {
        $crate::log::emit($crate::log::Level::Warning, ::std::format_args!($($arg)+))
    };
}

#[allow(unused_macros)]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::emit($crate::log::Level::Error, ::std::format_args!($($arg)+))
    };
}

#[allow(unused_macros)]
macro_rules! critical {
    ($($arg:tt)+) => {
        $crate::log::emit($crate::log::Level::Critical, ::std::format_args!($($arg)+))
    };
}

/// `log.exception()`: an error record carrying a traceback.
#[allow(unused_macros)]
macro_rules! exception {
    ($($arg:tt)+) => {
        $crate::log::emit_exception(::std::format_args!($($arg)+))
    };
}

#[allow(unused_imports)]
pub(crate) use {critical, debug, error, exception, info, warning};

#[cfg(test)]
mod tests;
