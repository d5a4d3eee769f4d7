//! Gunicorn's error log: `%(asctime)s [%(process)d] [%(levelname)s] %(message)s`.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use super::clock;
use super::level::Level;
use super::open_error::OpenError;
use super::sink::{Sink, Target};

pub struct ErrorLog {
    level: AtomicU8,
    sink: Sink,
}

impl Default for ErrorLog {
    fn default() -> Self {
        ErrorLog::new()
    }
}

impl ErrorLog {
    /// Stderr at info, Gunicorn's defaults, so messages logged before
    /// configuration still show up.
    pub const fn new() -> ErrorLog {
        ErrorLog { level: AtomicU8::new(Level::Info as u8), sink: Sink::new(libc::STDERR_FILENO) }
    }

    /// `target` is the `--error-logfile` value: `"-"` for stderr, else a
    /// path opened for appending.
    pub fn configure(&self, level: Level, target: &str) -> Result<(), OpenError> {
        self.sink.set_target(Target::from_setting(target))?;
        self.set_level(level);
        Ok(())
    }

    pub fn set_level(&self, level: Level) {
        self.level.store(level as u8, Ordering::Relaxed);
    }

    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Ordering::Relaxed))
    }

    pub fn enabled(&self, level: Level) -> bool {
        level >= self.level()
    }

    pub fn reopen(&self) -> Result<(), OpenError> {
        self.sink.reopen()
    }

    /// `--capture-output`: send the process's stdout and stderr to the
    /// error log file (and keep doing so across reopens).
    pub fn capture_output(&self) -> Result<(), OpenError> {
        self.sink.capture(&[libc::STDOUT_FILENO, libc::STDERR_FILENO])
    }

    pub fn chown(&self, uid: libc::uid_t, gid: libc::gid_t) -> std::io::Result<()> {
        self.sink.chown(uid, gid)
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// One record, one write. The pid is read now, so a record written
    /// right after fork carries the child's pid.
    pub fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        if !self.enabled(level) {
            return;
        }
        let mut line = Vec::with_capacity(128);
        format_record(clock::now_secs(), std::process::id(), level, args, &mut line);
        self.sink.write(&line);
    }

    /// `wsgi.errors`: the application's bytes, unprefixed, to the same
    /// destination (Gunicorn writes them straight to the handler stream).
    pub fn write_raw(&self, bytes: &[u8]) {
        self.sink.write(bytes);
    }
}

/// Multi-line messages (tracebacks) go out as they are, after one prefix,
/// exactly like `logging.Formatter` with the message containing newlines.
pub fn format_record(secs: i64, pid: u32, level: Level, args: fmt::Arguments<'_>, out: &mut Vec<u8>) {
    clock::append_error_stamp(secs, out);
    // Writing into a Vec cannot fail; a Display impl that errors just ends
    // the message early.
    let _ = write!(out, " [{}] [{}] ", pid, level.as_str());
    let _ = out.write_fmt(args);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn record_shape_matches_gunicorn() {
        let mut out = Vec::new();
        format_record(1795649106, 2625, Level::Info, format_args!("Starting gunicorn {}", "27.0.1"), &mut out);
        let text = String::from_utf8(out).unwrap();
        // Only the stamp depends on TZ; check everything around it.
        assert!(text.starts_with("[2026-11-2"), "{text}");
        assert!(text.ends_with("] [2625] [INFO] Starting gunicorn 27.0.1\n"), "{text}");
        assert_eq!(text.len(), "[2026-11-25 23:25:06 +0000] [2625] [INFO] Starting gunicorn 27.0.1\n".len());
    }

    #[test]
    fn level_filter_and_file_target() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-errlog-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("error.log");
        let log = ErrorLog::new();
        log.configure(Level::Warning, path.to_str().unwrap()).unwrap();
        log.log(Level::Info, format_args!("hidden"));
        log.log(Level::Error, format_args!("Traceback (most recent call last):\n  boom"));
        log.write_raw(b"raw bytes\n");
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let pid = format!("] [{}] [ERROR] Traceback (most recent call last):", std::process::id());
        assert!(lines[0].ends_with(&pid), "{text}");
        assert_eq!(lines[1], "  boom");
        assert_eq!(lines[2], "raw bytes");
        let _ = fs::remove_dir_all(&dir);
    }
}
