//! Local-time stamps in the two shapes Gunicorn prints.
//!
//! Both are rebuilt at most once per second per thread: the access log
//! stamps every request, and `localtime_r` takes a process-wide lock in
//! glibc, so the cache keeps it off the hot path.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest stamp either shape can produce (a 64-bit year included).
const STAMP_CAP: usize = 64;

/// Python formats month names in the C locale (it never sets LC_TIME), so
/// they are fixed English abbreviations whatever the process locale says.
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Seconds since the epoch, floored as `time.localtime(time.time())` does.
pub fn now_secs() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // A clock before 1970: floor towards minus infinity like Python.
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                -whole
            } else {
                -whole - 1
            }
        }
    }
}

/// Broken-down local time, as `struct tm` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i64,
    /// 1..=12
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Seconds east of UTC (`tm_gmtoff`), which is what `%z` prints.
    pub utc_offset: i64,
}

impl LocalTime {
    /// Local time honouring `TZ`, via `localtime_r` (glibc reads `TZ` the
    /// first time; Python's `time` module does the same on import).
    pub fn at(secs: i64) -> LocalTime {
        let Some(t) = libc::time_t::try_from(secs).ok() else {
            return LocalTime::EPOCH;
        };
        // SAFETY: `tm` is plain data, fully written by localtime_r on
        // success; on failure we never read it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to locals that outlive the call.
        let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
        if !ok {
            return LocalTime::EPOCH;
        }
        let clamp = |v: libc::c_int| u8::try_from(v).unwrap_or(0);
        LocalTime {
            year: i64::from(tm.tm_year) + 1900,
            month: clamp(tm.tm_mon.saturating_add(1)),
            day: clamp(tm.tm_mday),
            hour: clamp(tm.tm_hour),
            minute: clamp(tm.tm_min),
            second: clamp(tm.tm_sec),
            // c_long is 32 bits on some targets.
            #[allow(clippy::useless_conversion)]
            utc_offset: i64::from(tm.tm_gmtoff),
        }
    }

    /// Shown only if localtime_r cannot represent the instant, which needs
    /// a clock billions of years off; a stamp is still better than none.
    const EPOCH: LocalTime = LocalTime { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0, utc_offset: 0 };

    fn month_abbr(&self) -> &'static str {
        MONTHS.get(usize::from(self.month).wrapping_sub(1)).copied().unwrap_or("???")
    }

    /// `%z`: glibc prints whole minutes of the offset as `+hhmm`.
    fn write_offset(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let sign = if self.utc_offset < 0 { '-' } else { '+' };
        let minutes = self.utc_offset.unsigned_abs() / 60;
        write!(out, "{}{:02}{:02}", sign, minutes / 60, minutes % 60)
    }

    /// Gunicorn's error-log `datefmt`: `[%Y-%m-%d %H:%M:%S %z]`.
    pub fn write_error_stamp(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        write!(
            out,
            "[{}-{:02}-{:02} {:02}:{:02}:{:02} ",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )?;
        self.write_offset(out)?;
        out.write_all(b"]")
    }

    /// Gunicorn's access-log `now()`: `[%d/%b/%Y:%H:%M:%S %z]`.
    pub fn write_clf_stamp(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        write!(
            out,
            "[{:02}/{}/{}:{:02}:{:02}:{:02} ",
            self.day,
            self.month_abbr(),
            self.year,
            self.hour,
            self.minute,
            self.second
        )?;
        self.write_offset(out)?;
        out.write_all(b"]")
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Error,
    Clf,
}

struct Cached {
    secs: i64,
    len: usize,
    buf: [u8; STAMP_CAP],
}

impl Cached {
    const EMPTY: Cached = Cached { secs: i64::MIN, len: 0, buf: [0; STAMP_CAP] };

    fn refresh(&mut self, secs: i64, shape: Shape) {
        let lt = LocalTime::at(secs);
        let mut cursor = std::io::Cursor::new(&mut self.buf[..]);
        let written = match shape {
            Shape::Error => lt.write_error_stamp(&mut cursor),
            Shape::Clf => lt.write_clf_stamp(&mut cursor),
        };
        // Cannot overflow STAMP_CAP; if it somehow did, an empty stamp
        // beats a truncated one.
        self.len = match written {
            Ok(()) => usize::try_from(cursor.position()).unwrap_or(0),
            Err(_) => 0,
        };
        self.secs = secs;
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

thread_local! {
    static ERROR_STAMP: RefCell<Cached> = const { RefCell::new(Cached::EMPTY) };
    static CLF_STAMP: RefCell<Cached> = const { RefCell::new(Cached::EMPTY) };
}

fn append_cached(key: &'static std::thread::LocalKey<RefCell<Cached>>, shape: Shape, secs: i64, out: &mut Vec<u8>) {
    let done = key.try_with(|cell| match cell.try_borrow_mut() {
        Ok(mut c) => {
            if c.secs != secs {
                c.refresh(secs, shape);
            }
            out.extend_from_slice(c.bytes());
            true
        }
        Err(_) => false,
    });
    // During thread teardown the cache is gone; format without it.
    if done != Ok(true) {
        let mut c = Cached::EMPTY;
        c.refresh(secs, shape);
        out.extend_from_slice(c.bytes());
    }
}

/// Appends `[%Y-%m-%d %H:%M:%S %z]` for `secs`.
pub fn append_error_stamp(secs: i64, out: &mut Vec<u8>) {
    append_cached(&ERROR_STAMP, Shape::Error, secs, out);
}

/// Appends `[%d/%b/%Y:%H:%M:%S %z]` for `secs`.
pub fn append_clf_stamp(secs: i64, out: &mut Vec<u8>) {
    append_cached(&CLF_STAMP, Shape::Clf, secs, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt(utc_offset: i64) -> LocalTime {
        LocalTime { year: 2026, month: 11, day: 5, hour: 3, minute: 4, second: 9, utc_offset }
    }

    fn render(f: impl Fn(&LocalTime, &mut Vec<u8>) -> std::io::Result<()>, t: LocalTime) -> String {
        let mut v = Vec::new();
        assert!(f(&t, &mut v).is_ok());
        String::from_utf8_lossy(&v).into_owned()
    }

    #[test]
    fn shapes_match_strftime() {
        let e = |t: &LocalTime, v: &mut Vec<u8>| t.write_error_stamp(v);
        let c = |t: &LocalTime, v: &mut Vec<u8>| t.write_clf_stamp(v);
        assert_eq!(render(e, lt(0)), "[2026-11-05 03:04:09 +0000]");
        assert_eq!(render(c, lt(0)), "[05/Nov/2026:03:04:09 +0000]");
        assert_eq!(render(c, lt(-12600)), "[05/Nov/2026:03:04:09 -0330]");
        assert_eq!(render(e, lt(19800)), "[2026-11-05 03:04:09 +0530]");
    }

    // Expected strings come from
    // `TZ=XST+03:30 python -c 'import time; print(time.strftime(fmt, time.localtime(1795649106)))'`.
    // glibc reads TZ once per process, so the check runs in a fresh copy of
    // this test binary; a POSIX TZ string needs no tzdata on the host.
    #[test]
    fn localtime_honours_tz() {
        if std::env::var_os(CHILD_MARKER).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { panic!("no current_exe") };
        let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let out = std::process::Command::new(exe)
            .args([&format!("{module}::tz_child"), "--exact", "--nocapture", "--test-threads=1"])
            .env("TZ", "XST+03:30")
            .env(CHILD_MARKER, "1")
            .output();
        let Ok(out) = out else { panic!("could not run child test") };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(
                "STAMPS [2026-11-25 19:55:06 -0330]|[25/Nov/2026:19:55:06 -0330]|[25/Nov/2026:19:55:06 -0330]"
            ),
            "{text}"
        );
    }

    const CHILD_MARKER: &str = "FERROCORN_CLOCK_TEST_CHILD";

    #[test]
    fn tz_child() {
        if std::env::var_os(CHILD_MARKER).is_none() {
            return;
        }
        let mut v = b"STAMPS ".to_vec();
        append_error_stamp(1795649106, &mut v);
        v.push(b'|');
        append_clf_stamp(1795649106, &mut v);
        v.push(b'|');
        append_clf_stamp(1795649106, &mut v);
        println!("{}", String::from_utf8_lossy(&v));
    }
}
