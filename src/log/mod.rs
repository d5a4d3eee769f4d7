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
mod level;
mod open_error;
mod sink;

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

/// USR1 / logrotate: reopen both logs by path. Both are attempted; the
/// first failure is returned and that log keeps its old file.
pub fn reopen() -> Result<(), OpenError> {
    let error = ERROR_LOG.reopen();
    let access = ACCESS_LOG.reopen();
    error.and(access)
}

/// Changes the threshold without touching the destination.
pub fn set_level(level: Level) {
    ERROR_LOG.set_level(level);
}

pub fn enabled(level: Level) -> bool {
    ERROR_LOG.enabled(level)
}

/// What the macros call.
pub fn emit(level: Level, args: fmt::Arguments<'_>) {
    ERROR_LOG.log(level, args);
}

/// `wsgi.errors.write()`: bytes to the error log destination as they are.
pub fn write_raw(bytes: &[u8]) {
    ERROR_LOG.write_raw(bytes);
}

/// One access-log line. A line that cannot be rendered is skipped and the
/// reason goes to the error log (Gunicorn prints a traceback instead).
pub fn access(format: &AccessFormat, record: &AccessRecord<'_>) {
    if let Err(e) = ACCESS_LOG.log(format, record) {
        emit(Level::Error, format_args!("Error formatting access log line with {:?}: {}", format.as_str(), e));
    }
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

#[allow(unused_imports)]
pub(crate) use {critical, debug, error, info, warning};

#[cfg(test)]
mod tests;
