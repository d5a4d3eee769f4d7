//! One `%`-conversion of one value, as CPython's `str % mapping` does it
//! (`unicode_format_arg_format` / `_output`), for the value types an
//! access-log atom can have.

use std::borrow::Cow;

use super::record::Text;
use crate::util::pyrepr::repr_chars;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    pub ljust: bool,
    pub sign: bool,
    pub blank: bool,
    pub alt: bool,
    pub zero: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub flags: Flags,
    pub width: usize,
    pub precision: Option<usize>,
    /// One of `sracdiuoxXeEfFgG`.
    pub conv: char,
}

/// A Python value about to be formatted. `Str` parts are concatenated and
/// get SafeAtoms' `"` -> `\"` escaping; nothing else does.
pub(crate) enum Value<'a> {
    Str(&'a [Text<'a>]),
    Int(i128),
    Bool(bool),
    None,
    Other { text: Cow<'a, str>, type_name: Cow<'a, str> },
}

impl Value<'_> {
    fn type_name(&self) -> &str {
        match self {
            Value::Str(_) => "str",
            Value::Int(_) => "int",
            Value::Bool(_) => "bool",
            Value::None => "NoneType",
            Value::Other { type_name, .. } => type_name,
        }
    }

    fn as_int(&self) -> Option<i128> {
        match *self {
            Value::Int(v) => Some(v),
            Value::Bool(b) => Some(i128::from(b)),
            _ => None,
        }
    }

    /// `str(value)` after SafeAtoms escaping.
    fn to_text(&self) -> Cow<'_, str> {
        match self {
            Value::Str(parts) => Cow::Owned(escaped(parts)),
            Value::Int(v) => Cow::Owned(v.to_string()),
            Value::Bool(true) => Cow::Borrowed("True"),
            Value::Bool(false) => Cow::Borrowed("False"),
            Value::None => Cow::Borrowed("None"),
            Value::Other { text, .. } => Cow::Borrowed(text),
        }
    }
}

/// The TypeError/OverflowError text Python raises for a bad value.
pub(crate) type ConvError = String;

pub(crate) const NUMERIC_CONVERSIONS: &str = "diuoxXeEfFgG";

/// Python's message for a numeric conversion given a `type_name` value.
pub(crate) fn numeric_type_error(conv: char, type_name: &str) -> String {
    match conv {
        'd' | 'i' | 'u' => format!("TypeError: %{conv} format: a real number is required, not {type_name}"),
        'o' | 'x' | 'X' => format!("TypeError: %{conv} format: an integer is required, not {type_name}"),
        _ => format!("TypeError: must be real number, not {type_name}"),
    }
}

fn escaped(parts: &[Text<'_>]) -> String {
    let mut s = String::new();
    for part in parts {
        for c in part.chars() {
            if c == '"' {
                s.push('\\');
            }
            s.push(c);
        }
    }
    s
}

/// The hot path, `%(x)s` on a string: straight to UTF-8 with the escape.
fn write_escaped(parts: &[Text<'_>], out: &mut Vec<u8>) {
    for part in parts {
        match *part {
            Text::Str(s) => {
                let mut rest = s.as_bytes();
                while let Some(i) = rest.iter().position(|&b| b == b'"') {
                    out.extend_from_slice(rest.get(..i).unwrap_or(&[]));
                    out.extend_from_slice(b"\\\"");
                    rest = rest.get(i + 1..).unwrap_or(&[]);
                }
                out.extend_from_slice(rest);
            }
            Text::Latin1(bytes) => {
                for &b in bytes {
                    match b {
                        b'"' => out.extend_from_slice(b"\\\""),
                        0..=0x7f => out.push(b),
                        _ => {
                            let mut buf = [0u8; 2];
                            out.extend_from_slice(char::from(b).encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
            }
        }
    }
}

impl Spec {
    pub(crate) fn apply(&self, value: &Value<'_>, out: &mut Vec<u8>) -> Result<(), ConvError> {
        match self.conv {
            's' | 'r' | 'a' => {
                if let (Value::Str(parts), 's', 0, None) = (value, self.conv, self.width, self.precision) {
                    write_escaped(parts, out);
                    return Ok(());
                }
                let text = self.stringify(value);
                let cut = match self.precision {
                    Some(p) => truncate_chars(&text, p),
                    None => &text,
                };
                self.pad_text(cut, out);
                Ok(())
            }
            'c' => {
                let c = self.char_of(value)?;
                let mut buf = [0u8; 4];
                self.pad_text(c.encode_utf8(&mut buf), out);
                Ok(())
            }
            'd' | 'i' | 'u' | 'o' | 'x' | 'X' => {
                let v = value.as_int().ok_or_else(|| numeric_type_error(self.conv, value.type_name()))?;
                let body = self.int_body(v.unsigned_abs());
                self.pad_number(v < 0, self.int_prefix(), &body, out);
                Ok(())
            }
            _ => {
                let v = value.as_int().ok_or_else(|| numeric_type_error(self.conv, value.type_name()))?;
                // i128 always fits an f64's range; rounding matches float(int).
                let x = v as f64;
                let body = self.float_body(x.abs());
                self.pad_number(x < 0.0, "", &body, out);
                Ok(())
            }
        }
    }

    fn stringify<'v>(&self, value: &'v Value<'_>) -> Cow<'v, str> {
        let ascii = self.conv == 'a';
        match (self.conv, value) {
            ('s', _) => value.to_text(),
            (_, Value::Str(_)) => {
                let text = value.to_text();
                let mut s = String::with_capacity(text.len() + 2);
                repr_chars(text.chars(), ascii, &mut s);
                Cow::Owned(s)
            }
            // For every non-str value an atom can hold, repr() is str().
            (_, Value::Other { text, .. }) if ascii => Cow::Owned(ascii_escape(text)),
            _ => value.to_text(),
        }
    }

    fn char_of(&self, value: &Value<'_>) -> Result<char, ConvError> {
        const NOT_CHAR: &str = "TypeError: %c requires int or char";
        if let Some(v) = value.as_int() {
            return u32::try_from(v)
                .ok()
                .filter(|&cp| cp < 0x110000)
                .ok_or_else(|| "OverflowError: %c arg not in range(0x110000)".to_owned())
                .and_then(|cp| {
                    // Python would produce a lone surrogate, which its UTF-8
                    // log stream then refuses to encode.
                    char::from_u32(cp).ok_or_else(|| "UnicodeEncodeError: surrogates not allowed".to_owned())
                });
        }
        if let Value::Str(_) = value {
            let text = value.to_text();
            let mut chars = text.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                return Ok(c);
            }
        }
        Err(NOT_CHAR.to_owned())
    }

    fn pad_text(&self, text: &str, out: &mut Vec<u8>) {
        let fill = self.width.saturating_sub(text.chars().count());
        if !self.flags.ljust {
            out.resize(out.len() + fill, b' ');
        }
        out.extend_from_slice(text.as_bytes());
        if self.flags.ljust {
            out.resize(out.len() + fill, b' ');
        }
    }

    fn int_prefix(&self) -> &'static str {
        match (self.flags.alt, self.conv) {
            (true, 'o') => "0o",
            (true, 'x') => "0x",
            (true, 'X') => "0X",
            _ => "",
        }
    }

    fn int_body(&self, magnitude: u128) -> String {
        let digits = match self.conv {
            'o' => format!("{magnitude:o}"),
            'x' => format!("{magnitude:x}"),
            'X' => format!("{magnitude:X}"),
            _ => magnitude.to_string(),
        };
        match self.precision {
            Some(p) if p > digits.len() => {
                let mut padded = "0".repeat(p - digits.len());
                padded.push_str(&digits);
                padded
            }
            _ => digits,
        }
    }

    fn float_body(&self, x: f64) -> String {
        let prec = self.precision.unwrap_or(6);
        let alt = self.flags.alt;
        match self.conv {
            'e' | 'E' => exponent_form(x, prec, alt, self.conv == 'E'),
            'g' | 'G' => general_form(x, prec, alt, self.conv == 'G'),
            _ => {
                let mut s = format!("{x:.prec$}");
                if alt && prec == 0 {
                    s.push('.');
                }
                s
            }
        }
    }

    /// Sign, then the `#` prefix, padded with zeros between them and the
    /// digits under `0`, else with spaces on the left (or right under `-`).
    fn pad_number(&self, negative: bool, prefix: &str, body: &str, out: &mut Vec<u8>) {
        let sign = if negative {
            "-"
        } else if self.flags.sign {
            "+"
        } else if self.flags.blank {
            " "
        } else {
            ""
        };
        let len = sign.len() + prefix.len() + body.len();
        let fill = self.width.saturating_sub(len);
        if self.flags.ljust {
            out.extend_from_slice(sign.as_bytes());
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(body.as_bytes());
            out.resize(out.len() + fill, b' ');
        } else if self.flags.zero {
            out.extend_from_slice(sign.as_bytes());
            out.extend_from_slice(prefix.as_bytes());
            out.resize(out.len() + fill, b'0');
            out.extend_from_slice(body.as_bytes());
        } else {
            out.resize(out.len() + fill, b' ');
            out.extend_from_slice(sign.as_bytes());
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(body.as_bytes());
        }
    }
}

fn truncate_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// `ascii(obj)` from `repr(obj)`: backslash-escape every non-ASCII char.
fn ascii_escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        let cp = u32::from(c);
        match cp {
            0..=0x7f => s.push(c),
            0x80..=0xff => s.push_str(&format!("\\x{cp:02x}")),
            0x100..=0xffff => s.push_str(&format!("\\u{cp:04x}")),
            _ => s.push_str(&format!("\\U{cp:08x}")),
        }
    }
    s
}

/// Splits Rust's `{:e}` output ("4.2e1") into mantissa and exponent.
fn rust_exponent(x: f64, decimals: usize) -> (String, i32) {
    let s = format!("{x:.decimals$e}");
    match s.split_once('e') {
        Some((m, e)) => (m.to_owned(), e.parse().unwrap_or(0)),
        None => (s, 0),
    }
}

fn exponent_suffix(exp: i32, upper: bool) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{}{}{:02}", if upper { 'E' } else { 'e' }, sign, exp.unsigned_abs())
}

/// `%e`: Python always shows a signed exponent of at least two digits.
fn exponent_form(x: f64, prec: usize, alt: bool, upper: bool) -> String {
    let (mut mantissa, exp) = rust_exponent(x, prec);
    if alt && !mantissa.contains('.') {
        mantissa.push('.');
    }
    mantissa + &exponent_suffix(exp, upper)
}

/// `%g`: `prec` significant digits, fixed notation when the exponent is in
/// [-4, prec), trailing zeros dropped unless `#`.
fn general_form(x: f64, prec: usize, alt: bool, upper: bool) -> String {
    let p = prec.max(1);
    let (mantissa, exp) = rust_exponent(x, p - 1);
    let fixed = exp >= -4 && i64::from(exp) < i64::try_from(p).unwrap_or(i64::MAX);
    let (mut digits, suffix) = if fixed {
        let decimals = usize::try_from(i64::try_from(p).unwrap_or(0) - 1 - i64::from(exp)).unwrap_or(0);
        (format!("{x:.decimals$}"), String::new())
    } else {
        (mantissa, exponent_suffix(exp, upper))
    };
    if alt {
        if !digits.contains('.') {
            digits.push('.');
        }
    } else if digits.contains('.') {
        let trimmed = digits.trim_end_matches('0').trim_end_matches('.').len();
        digits.truncate(trimmed);
    }
    digits + &suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(flags: &str, width: usize, precision: Option<usize>, conv: char) -> Spec {
        let f = Flags {
            ljust: flags.contains('-'),
            sign: flags.contains('+'),
            blank: flags.contains(' '),
            alt: flags.contains('#'),
            zero: flags.contains('0'),
        };
        Spec { flags: f, width, precision, conv }
    }

    fn fmt(s: Spec, v: Value<'_>) -> String {
        let mut out = Vec::new();
        match s.apply(&v, &mut out) {
            Ok(()) => String::from_utf8(out).unwrap(),
            Err(e) => format!("ERR {e}"),
        }
    }

    // Expected outputs printed by /tmp/gvenv/bin/python 3.11.7 for the
    // same conversion applied to the same value with `%`.
    #[test]
    fn integers_match_python() {
        assert_eq!(fmt(spec("#", 0, None, 'o'), Value::Int(42)), "0o52");
        assert_eq!(fmt(spec("#", 0, None, 'x'), Value::Int(42)), "0x2a");
        assert_eq!(fmt(spec("#", 0, None, 'X'), Value::Int(42)), "0X2A");
        assert_eq!(fmt(spec("", 0, Some(5), 'd'), Value::Int(42)), "00042");
        assert_eq!(fmt(spec(" ", 0, None, 'd'), Value::Int(42)), " 42");
        assert_eq!(fmt(spec("+0", 5, None, 'd'), Value::Int(42)), "+0042");
        assert_eq!(fmt(spec("-0", 5, None, 'd'), Value::Int(42)), "42   ");
        assert_eq!(fmt(spec("#0", 10, None, 'x'), Value::Int(42)), "0x0000002a");
        assert_eq!(fmt(spec("-#", 10, None, 'x'), Value::Int(42)), "0x2a      ");
        assert_eq!(fmt(spec("+", 0, Some(3), 'd'), Value::Int(42)), "+042");
        assert_eq!(fmt(spec("#", 5, None, 'o'), Value::Int(42)), " 0o52");
        assert_eq!(fmt(spec("", 0, None, 'x'), Value::Int(-42)), "-2a");
        assert_eq!(fmt(spec("#", 0, None, 'x'), Value::Int(-42)), "-0x2a");
        assert_eq!(fmt(spec("0", 10, None, 'd'), Value::Int(-42)), "-000000042");
        assert_eq!(fmt(spec("-", 8, None, 'd'), Value::Int(-42)), "-42     ");
        assert_eq!(fmt(spec("", 0, Some(0), 'd'), Value::Int(0)), "0");
        assert_eq!(fmt(spec("#", 0, None, 'o'), Value::Int(0)), "0o0");
        assert_eq!(fmt(spec("", 0, None, 'x'), Value::Bool(true)), "1");
        assert_eq!(fmt(spec("", 0, None, 's'), Value::Bool(true)), "True");
        assert_eq!(fmt(spec("", 0, None, 'r'), Value::Int(7)), "7");
        assert_eq!(fmt(spec("", 5, Some(2), 's'), Value::Int(42)), "   42");
        assert_eq!(fmt(spec("0", 5, None, 's'), Value::Int(42)), "   42");
    }

    #[test]
    fn floats_match_python() {
        let p = |f: &str, w: usize, pr: Option<usize>, c: char, v: i128| fmt(spec(f, w, pr, c), Value::Int(v));
        assert_eq!(p("", 0, None, 'e', 42), "4.200000e+01");
        assert_eq!(p("", 0, None, 'g', 42), "42");
        assert_eq!(p("", 0, None, 'f', 42), "42.000000");
        assert_eq!(p("", 0, None, 'G', 42), "42");
        assert_eq!(p("", 0, None, 'E', 42), "4.200000E+01");
        assert_eq!(p("", 0, None, 'F', 42), "42.000000");
        assert_eq!(p("0", 20, Some(3), 'e', 42), "000000000004.200e+01");
        assert_eq!(p("", 0, None, 'g', 12345678901234567890), "1.23457e+19");
        assert_eq!(p("#", 0, None, 'g', 42), "42.0000");
        assert_eq!(p("#", 0, Some(0), 'f', 42), "42.");
        assert_eq!(p("#", 0, Some(0), 'e', 42), "4.e+01");
        assert_eq!(p("0", 5, Some(1), 'f', 42), "042.0");
        assert_eq!(p("", 0, Some(0), 'e', 42), "4e+01");
        assert_eq!(p("", 0, Some(0), 'g', 42), "4e+01");
        assert_eq!(p("", 0, Some(3), 'g', 42), "42");
        assert_eq!(p("", 0, None, 'g', 1234567), "1.23457e+06");
        assert_eq!(p("#", 0, None, 'g', 1234567), "1.23457e+06");
        assert_eq!(p("", 0, Some(0), 'e', 0), "0e+00");
        assert_eq!(p("", 0, None, 'g', 0), "0");
        assert_eq!(p("#", 0, None, 'g', 0), "0.00000");
        assert_eq!(p("", 0, None, 'e', 18446744073709551615), "1.844674e+19");
        assert_eq!(p("", 0, None, 'f', 18446744073709551615), "18446744073709551616.000000");
        assert_eq!(p("", 0, None, 'g', 100000000000000000), "1e+17");
        assert_eq!(p("#", 0, Some(1), 'g', 42), "4.e+01");
        assert_eq!(p("#", 0, Some(2), 'g', 42), "42.");
        assert_eq!(p("#", 0, Some(3), 'g', 42), "42.0");
        assert_eq!(p("", 0, Some(2), 'g', 42), "42");
        assert_eq!(p("", 0, None, 'g', 10000000000000000), "1e+16");
        assert_eq!(p("", 0, None, 'g', 99999), "99999");
        assert_eq!(p("", 0, Some(3), 'g', 99999), "1e+05");
        assert_eq!(p("#", 0, Some(0), 'e', 5), "5.e+00");
        assert_eq!(p("", 0, Some(0), 'f', 5), "5");
        assert_eq!(p("", 0, None, 'g', 99999950), "1e+08");
        assert_eq!(p("", 0, Some(1), 'g', 99999950), "1e+08");
        assert_eq!(p("", 0, None, 'g', 95), "95");
        assert_eq!(p("", 0, Some(1), 'g', 95), "1e+02");
        assert_eq!(p("", 0, None, 'e', 125), "1.250000e+02");
        assert_eq!(p("", 0, Some(2), 'e', 125), "1.25e+02");
        assert_eq!(p("", 0, Some(15), 'g', 1 << 63), "9.22337203685478e+18");
        assert_eq!(p("", 0, None, 'g', -1234567), "-1.23457e+06");
        assert_eq!(p("", 0, None, 'e', 1), "1.000000e+00");
    }

    #[test]
    fn strings_and_chars_match_python() {
        let parts = [Text::Str("it's \"q\"")];
        assert_eq!(fmt(spec("", 0, None, 's'), Value::Str(&parts)), "it's \\\"q\\\"");
        assert_eq!(fmt(spec("", 0, None, 'r'), Value::Str(&parts)), "'it\\'s \\\\\"q\\\\\"'");
        let u = [Text::Str("é☃😀\x07")];
        assert_eq!(fmt(spec("", 0, None, 'r'), Value::Str(&u)), "'é☃😀\\x07'");
        assert_eq!(fmt(spec("", 0, None, 'a'), Value::Str(&u)), "'\\xe9\\u2603\\U0001f600\\x07'");
        let ab = [Text::Str("ab")];
        assert_eq!(fmt(spec("", 10, None, 'r'), Value::Str(&ab)), "      'ab'");
        assert_eq!(fmt(spec("", 0, Some(2), 'r'), Value::Str(&ab)), "'a");
        assert_eq!(fmt(spec("-", 6, None, 'a'), Value::Str(&ab)), "'ab'  ");
        assert_eq!(fmt(spec("", 0, Some(0), 's'), Value::Str(&ab)), "");
        assert_eq!(fmt(spec("", 5, Some(1), 's'), Value::Str(&u)), "    é");
        assert_eq!(fmt(spec("", 0, None, 'c'), Value::Int(42)), "*");
        assert_eq!(fmt(spec("", 5, Some(0), 'c'), Value::Int(42)), "    *");
        assert_eq!(fmt(spec("", 0, None, 'c'), Value::Int(0x263a)), "☺");
        assert_eq!(fmt(spec("", 0, None, 'c'), Value::Bool(true)), "\x01");
        assert_eq!(fmt(spec("", 0, None, 'c'), Value::Str(&[Text::Str("-")])), "-");
        assert_eq!(fmt(spec("", 0, None, 'c'), Value::Str(&ab)), "ERR TypeError: %c requires int or char");
        assert_eq!(
            fmt(spec("", 0, None, 'c'), Value::Str(&[Text::Str("\"")])),
            "ERR TypeError: %c requires int or char"
        );
        assert_eq!(fmt(spec("", 0, None, 'c'), Value::Int(-42)), "ERR OverflowError: %c arg not in range(0x110000)");
        let lat = [Text::Latin1(b"a\xe9\"")];
        assert_eq!(fmt(spec("", 0, None, 's'), Value::Str(&lat)), "a\u{e9}\\\"");
        assert_eq!(fmt(spec("", 6, None, 's'), Value::Str(&lat)), "  a\u{e9}\\\"");
    }

    #[test]
    fn type_errors_match_python() {
        let ab = [Text::Str("ab")];
        assert_eq!(
            fmt(spec("", 0, None, 'd'), Value::Str(&ab)),
            "ERR TypeError: %d format: a real number is required, not str"
        );
        assert_eq!(
            fmt(spec("", 0, None, 'x'), Value::None),
            "ERR TypeError: %x format: an integer is required, not NoneType"
        );
        assert_eq!(fmt(spec("", 0, None, 'g'), Value::None), "ERR TypeError: must be real number, not NoneType");
        let tuple = Value::Other { text: "(1, 0)".into(), type_name: "tuple".into() };
        assert_eq!(
            fmt(spec("", 0, None, 'i'), tuple),
            "ERR TypeError: %i format: a real number is required, not tuple"
        );
        let tuple = Value::Other { text: "(1, 0)".into(), type_name: "tuple".into() };
        assert_eq!(fmt(spec("", 0, None, 'r'), tuple), "(1, 0)");
        assert_eq!(fmt(spec("", 0, None, 's'), Value::None), "None");
    }
}
