//! The access log destination: `--access-logfile` (`"-"` is stdout, unset
//! disables it), one write per line.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use super::super::open_error::OpenError;
use super::super::sink::{Sink, Target};
use super::format::{AccessFormat, RenderError};
use super::record::AccessRecord;

/// Line buffers that grew past this (a huge header in a `{..}i` atom) are
/// released rather than kept per thread.
const KEEP_CAPACITY: usize = 16 * 1024;

thread_local! {
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub struct AccessLog {
    enabled: AtomicBool,
    sink: Sink,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog::new()
    }
}

impl AccessLog {
    /// Disabled, as Gunicorn is without `--access-logfile`.
    pub const fn new() -> AccessLog {
        AccessLog { enabled: AtomicBool::new(false), sink: Sink::new(libc::STDOUT_FILENO) }
    }

    /// `None` disables the log; `"-"` is stdout; anything else a path.
    pub fn configure(&self, target: Option<&str>) -> Result<(), OpenError> {
        match target {
            None => {
                self.enabled.store(false, Ordering::Release);
                self.sink.set_target(Target::Std)
            }
            Some(t) => {
                self.sink.set_target(Target::from_setting(t))?;
                self.enabled.store(true, Ordering::Release);
                Ok(())
            }
        }
    }

    /// Lets the caller skip building a record at all (Gunicorn's
    /// `access_log_enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub fn reopen(&self) -> Result<(), OpenError> {
        self.sink.reopen()
    }

    pub fn chown(&self, uid: libc::uid_t, gid: libc::gid_t) -> std::io::Result<()> {
        self.sink.chown(uid, gid)
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// Renders and writes one line. Nothing is written if rendering fails;
    /// the caller decides where to report that.
    pub fn log(&self, format: &AccessFormat, rec: &AccessRecord<'_>) -> Result<(), RenderError> {
        if !self.enabled() {
            return Ok(());
        }
        self.log_with(format, rec, |_| {})
    }

    /// Renders one line, writes it to the file when the log is enabled,
    /// and hands it (without its newline) to `also` (syslog).
    pub fn log_with(
        &self,
        format: &AccessFormat,
        rec: &AccessRecord<'_>,
        also: impl Fn(&[u8]),
    ) -> Result<(), RenderError> {
        let mut fallback = Vec::new();
        let result = LINE.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => self.render_and_write(format, rec, &mut buf, &also),
            Err(_) => self.render_and_write(format, rec, &mut fallback, &also),
        });
        // Thread-local storage is gone during thread teardown.
        result.unwrap_or_else(|_| self.render_and_write(format, rec, &mut fallback, &also))
    }

    fn render_and_write(
        &self,
        format: &AccessFormat,
        rec: &AccessRecord<'_>,
        buf: &mut Vec<u8>,
        also: &dyn Fn(&[u8]),
    ) -> Result<(), RenderError> {
        buf.clear();
        let result = format.render(rec, buf);
        if result.is_ok() {
            also(buf);
            buf.push(b'\n');
            if self.enabled() {
                self.sink.write(buf);
            }
        }
        if buf.capacity() > KEEP_CAPACITY {
            *buf = Vec::new();
        }
        result
    }

    /// A line rendered elsewhere; `line` should end with `\n`.
    pub fn write_line(&self, line: &[u8]) {
        if self.enabled() {
            self.sink.write(line);
        }
    }
}
