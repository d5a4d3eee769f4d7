//! The `Date` header value, `util.http_date()`: RFC 7231 IMF-fixdate in GMT.

use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

/// `email.utils.formatdate(secs, usegmt=True)`, e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT` (29 bytes until the year 10000).
pub fn http_date(secs: u64) -> [u8; 29] {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = [b' '; 29];
    let weekday = DAYS[(days % 7) as usize];
    out[..3].copy_from_slice(weekday);
    out[3] = b',';
    put2(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize % 12]);
    let y = year % 10_000;
    put2(&mut out[12..14], y / 100);
    put2(&mut out[14..16], y % 100);
    put2(&mut out[17..19], rem / 3600);
    out[19] = b':';
    put2(&mut out[20..22], rem / 60 % 60);
    out[22] = b':';
    put2(&mut out[23..25], rem % 60);
    out[26..29].copy_from_slice(b"GMT");
    out
}

fn put2(dst: &mut [u8], v: u64) {
    if let [a, b] = dst {
        *a = b'0' + (v / 10 % 10) as u8;
        *b = b'0' + (v % 10) as u8;
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31); Howard
/// Hinnant's `civil_from_days`, for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The current `Date` value, formatted at most once per second.
#[derive(Clone, Debug)]
pub struct DateCache {
    secs: u64,
    text: [u8; 29],
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache { secs: u64::MAX, text: [b' '; 29] }
    }
}

impl DateCache {
    pub fn new() -> Self {
        DateCache::default()
    }

    /// The date for now.
    pub fn get(&mut self) -> &[u8] {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.at(now)
    }

    /// The date last formatted (by `get` or `at`).
    pub fn last(&self) -> [u8; 29] {
        self.text
    }

    /// The date for `secs` since the epoch (reformatted only when it changes).
    pub fn at(&mut self, secs: u64) -> &[u8] {
        if secs != self.secs {
            self.secs = secs;
            self.text = http_date(secs);
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_email_utils_formatdate() {
        // Values from Python: email.utils.formatdate(t, usegmt=True).
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&http_date(1_798_761_599), b"Thu, 31 Dec 2026 23:59:59 GMT");
        assert_eq!(&http_date(4_107_542_400), b"Mon, 01 Mar 2100 00:00:00 GMT");
    }

    #[test]
    fn cache_reformats_only_on_change() {
        let mut c = DateCache::new();
        assert_eq!(c.at(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(c.at(1), b"Thu, 01 Jan 1970 00:00:01 GMT");
        assert_eq!(c.get().len(), 29);
    }
}
