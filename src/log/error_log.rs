//! Gunicorn's error log: `%(asctime)s [%(process)d] [%(levelname)s] %(message)s`,
//! or with `--error-log-json` one JSON object per record.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::clock;
use super::level::Level;
use super::open_error::OpenError;
use super::sink::{Sink, Target};

pub struct ErrorLog {
    level: AtomicU8,
    json: AtomicBool,
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
        ErrorLog {
            level: AtomicU8::new(Level::Info as u8),
            json: AtomicBool::new(false),
            sink: Sink::new(libc::STDERR_FILENO),
        }
    }

    /// `target` is the `--error-logfile` value: `"-"` for stderr, else a
    /// path opened for appending.
    pub fn configure(&self, level: Level, target: &str) -> Result<(), OpenError> {
        self.sink.set_target(Target::from_setting(target))?;
        self.set_level(level);
        Ok(())
    }

    /// `--error-log-json`.
    pub fn set_json(&self, on: bool) {
        self.json.store(on, Ordering::Relaxed);
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
        if self.json.load(Ordering::Relaxed) {
            json_record(std::time::SystemTime::now(), std::process::id(), Some(level), &fmt::format(args), &mut line);
        } else {
            format_record(clock::now_secs(), std::process::id(), level, args, &mut line);
        }
        self.sink.write(&line);
    }

    /// `wsgi.errors`: the application's bytes, unprefixed, to the same
    /// destination (Gunicorn writes them straight to the handler stream).
    /// In a JSON log each write is a record of its own (without a
    /// severity, which the application did not give), so the log stays
    /// one object per line.
    pub fn write_raw(&self, bytes: &[u8]) {
        if !self.json.load(Ordering::Relaxed) {
            self.sink.write(bytes);
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return;
        }
        let mut line = Vec::with_capacity(text.len() + 96);
        json_record(std::time::SystemTime::now(), std::process::id(), None, text, &mut line);
        self.sink.write(&line);
    }
}

/// One error record as JSON: OpenTelemetry's log data model field names
/// (`severity_text` in Gunicorn's level names). A traceback stays in its
/// record's `body`, newlines escaped.
pub fn json_record(at: std::time::SystemTime, pid: u32, level: Option<Level>, message: &str, out: &mut Vec<u8>) {
    let mut o = super::json::Object::begin(out);
    o.timestamp("timestamp", at);
    if let Some(level) = level {
        o.str("severity_text", level.as_str().chars());
        o.int("severity_number", level.otel_severity());
    }
    o.int("process.pid", pid);
    o.str("body", message.chars());
    o.end();
    out.push(b'\n');
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
    fn json_records_are_one_line_each() {
        let mut out = Vec::new();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_649_106);
        json_record(at, 7, Some(Level::Warning), "Traceback:\n  \"boom\"\u{1b}", &mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"timestamp\":\"2026-11-25T23:25:06.000000Z\",\"severity_text\":\"WARNING\",\"severity_number\":13,\
             \"process.pid\":7,\"body\":\"Traceback:\\n  \\\"boom\\\"\\u001b\"}\n"
        );
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
