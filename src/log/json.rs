//! JSON lines for the logs (`--access-log-json`, `--error-log-json`): one
//! object per record, field names from OpenTelemetry's semantic conventions
//! (HTTP attributes for requests, the log data model for error records).
//!
//! Every string is escaped here, whatever produced it: a client's header
//! with a quote, a newline or a terminal escape stays inside its string and
//! can neither end the record nor forge another one.

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `"text"` with JSON escapes: `"` and `\`, every C0 control, DEL
/// and the C1 controls (as `\u00XX`, so a terminal reading the log never
/// acts on them), and U+2028/U+2029 (which end a line in JavaScript).
pub fn string(chars: impl Iterator<Item = char>, out: &mut Vec<u8>) {
    out.push(b'"');
    let mut utf8 = [0u8; 4];
    for c in chars {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' => {
                let n = u32::from(c);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((n >> shift) & 0xf) as usize]);
                }
            }
            c if c.is_ascii() => out.push(c as u8),
            c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    out.push(b'"');
}

/// Writes one object field after field, with the commas between them.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    pub fn begin(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(key.chars(), self.out);
        self.out.push(b':');
    }

    pub fn str(&mut self, key: &str, chars: impl Iterator<Item = char>) {
        self.key(key);
        string(chars, self.out);
    }

    pub fn int(&mut self, key: &str, n: impl itoa_like::Int) {
        self.key(key);
        n.push_to(self.out);
    }

    /// Seconds with microseconds (`0.000412`): typed as a number.
    pub fn seconds(&mut self, key: &str, d: std::time::Duration) {
        self.key(key);
        push_decimal(d.as_secs(), d.subsec_micros(), self.out);
    }

    /// An array of strings (OpenTelemetry gives header values this way,
    /// one element per field line).
    pub fn strs<I: Iterator<Item = char>>(&mut self, key: &str, items: impl Iterator<Item = I>) {
        self.key(key);
        self.out.push(b'[');
        for (i, chars) in items.enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            string(chars, self.out);
        }
        self.out.push(b']');
    }

    /// `timestamp`: UTC, RFC 3339 with microseconds.
    pub fn timestamp(&mut self, key: &str, at: SystemTime) {
        self.key(key);
        self.out.push(b'"');
        push_rfc3339(at, self.out);
        self.out.push(b'"');
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// Integers written without going through `fmt` (the access path writes a
/// few per request).
pub mod itoa_like {
    pub trait Int {
        fn push_to(self, out: &mut Vec<u8>);
    }

    impl Int for u64 {
        fn push_to(self, out: &mut Vec<u8>) {
            let mut buf = [0u8; 20];
            let mut i = buf.len();
            let mut n = self;
            loop {
                i -= 1;
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            out.extend_from_slice(&buf[i..]);
        }
    }

    impl Int for u32 {
        fn push_to(self, out: &mut Vec<u8>) {
            u64::from(self).push_to(out);
        }
    }

    impl Int for u16 {
        fn push_to(self, out: &mut Vec<u8>) {
            u64::from(self).push_to(out);
        }
    }

    impl Int for u8 {
        fn push_to(self, out: &mut Vec<u8>) {
            u64::from(self).push_to(out);
        }
    }
}

fn push_decimal(whole: u64, micros: u32, out: &mut Vec<u8>) {
    use itoa_like::Int;
    whole.push_to(out);
    out.push(b'.');
    push_padded(u64::from(micros), 6, out);
}

fn push_padded(n: u64, width: usize, out: &mut Vec<u8>) {
    use itoa_like::Int;
    let start = out.len();
    n.push_to(out);
    let len = out.len() - start;
    if len < width {
        let pad = width - len;
        out.splice(start..start, std::iter::repeat_n(b'0', pad));
    }
}

/// `2026-12-02T16:23:49.123456Z`. A clock before 1970 prints the epoch.
fn push_rfc3339(at: SystemTime, out: &mut Vec<u8>) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    push_padded(y, 4, out);
    out.push(b'-');
    push_padded(m, 2, out);
    out.push(b'-');
    push_padded(d, 2, out);
    out.push(b'T');
    push_padded(rem / 3600, 2, out);
    out.push(b':');
    push_padded(rem / 60 % 60, 2, out);
    out.push(b':');
    push_padded(rem % 60, 2, out);
    out.push(b'.');
    push_padded(u64::from(since.subsec_micros()), 6, out);
    out.push(b'Z');
}

/// Days since 1970-01-01 to a (year, month, day) of the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`, for days >= 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        string(s.chars(), &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn escapes_everything_a_client_controls() {
        assert_eq!(escaped(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(escaped("x\ny\rz\t"), r#""x\ny\rz\t""#);
        assert_eq!(escaped("\u{0}\u{1b}[31m\u{7f}\u{85}"), r#""\u0000\u001b[31m\u007f\u0085""#);
        assert_eq!(escaped("é☃\u{2028}"), "\"é☃\\u2028\"");
        // every escaped string parses back to what went in
        for s in ["\"}{\"forged\":1", "\u{0}\u{1f}\u{9f}", "ÿ\\", ""] {
            let back: String = serde_json::from_str(&escaped(s)).expect("valid JSON");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn numbers_and_times() {
        let mut out = Vec::new();
        let mut o = Object::begin(&mut out);
        o.int("a", 0u64);
        o.int("b", u64::MAX);
        o.seconds("c", Duration::from_micros(412));
        o.seconds("d", Duration::new(12, 5_000));
        o.timestamp("t", UNIX_EPOCH + Duration::new(1_795_649_106, 123_456_789));
        o.strs("h", ["a", "b\""].iter().map(|s| s.chars()));
        o.end();
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            r#"{"a":0,"b":18446744073709551615,"c":0.000412,"d":12.000005,"t":"2026-11-25T23:25:06.123456Z","h":["a","b\""]}"#
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid");
        assert_eq!(v["c"].as_f64(), Some(0.000412));
    }

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_819), (2027, 1, 1));
        let mut out = Vec::new();
        push_rfc3339(UNIX_EPOCH + Duration::from_secs(951_868_799), &mut out);
        assert_eq!(out, b"2000-02-29T23:59:59.000000Z");
    }
}
