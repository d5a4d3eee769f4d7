//! Python's `repr()` and `ascii()` of a `str`, for `%r`/`%a` and for the
//! error messages Gunicorn formats with `%r`.

use std::fmt::Write as _;

use super::printable::is_printable;

/// `repr(s)` (or `ascii(s)` when `ascii_only`) appended to `out`.
pub fn repr_str(s: &str, ascii_only: bool, out: &mut String) {
    repr_chars(s.chars(), ascii_only, out);
}

/// Same, over any char sequence (e.g. latin-1 bytes widened to chars, the
/// way WSGI strings hold raw HTTP bytes).
pub fn repr_chars<I>(chars: I, ascii_only: bool, out: &mut String)
where
    I: Iterator<Item = char> + Clone,
{
    let (mut single, mut double) = (false, false);
    for c in chars.clone() {
        single |= c == '\'';
        double |= c == '"';
    }
    let quote = if single && !double { '"' } else { '\'' };
    out.push(quote);
    for c in chars {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c < ' ' || c == '\x7f' => push_escape(c, out),
            c if c.is_ascii() => out.push(c),
            c if !ascii_only && is_printable(c) => out.push(c),
            c => push_escape(c, out),
        }
    }
    out.push(quote);
}

/// `repr(b)` of a `bytes` value (`b'GD'`, `b'\\x00'`), as Gunicorn's
/// messages show raw protocol bytes.
pub fn bytes_repr(b: &[u8]) -> String {
    let single = b.contains(&b'\'');
    let double = b.contains(&b'"');
    let quote = if single && !double { b'"' } else { b'\'' };
    let mut out = String::with_capacity(b.len() + 3);
    out.push('b');
    out.push(char::from(quote));
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(char::from(c));
            }
            0x20..=0x7e => out.push(char::from(c)),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(char::from(quote));
    out
}

fn push_escape(c: char, out: &mut String) {
    let cp = u32::from(c);
    // Writing to a String cannot fail.
    let _ = if cp <= 0xff {
        write!(out, "\\x{cp:02x}")
    } else if cp <= 0xffff {
        write!(out, "\\u{cp:04x}")
    } else {
        write!(out, "\\U{cp:08x}")
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_like_python() {
        assert_eq!(bytes_repr(b"GD"), "b'GD'");
        assert_eq!(bytes_repr(b"a'b"), "b\"a'b\"");
        assert_eq!(bytes_repr(b"'\""), "b'\\'\"'");
        assert_eq!(bytes_repr(b"\x00\xff\n\\"), "b'\\x00\\xff\\n\\\\'");
    }

    fn r(s: &str) -> String {
        let mut out = String::new();
        repr_str(s, false, &mut out);
        out
    }

    fn a(s: &str) -> String {
        let mut out = String::new();
        repr_str(s, true, &mut out);
        out
    }

    // Expected values printed by /tmp/gvenv/bin/python (3.11.7):
    // `print(repr(s))` / `print(ascii(s))`.
    #[test]
    fn matches_python_repr() {
        assert_eq!(r("app"), "'app'");
        assert_eq!(r("it's"), "\"it's\"");
        assert_eq!(r("it's \"q\""), "'it\\'s \"q\"'");
        assert_eq!(r("say \"hi\""), "'say \"hi\"'");
        assert_eq!(r("a\\b\tc\nd\re"), "'a\\\\b\\tc\\nd\\re'");
        assert_eq!(r("\x00\x07\x1b\x7f"), "'\\x00\\x07\\x1b\\x7f'");
        assert_eq!(
            r("é☃😀\u{85}\u{a0}\u{ad}\u{200b}\u{e000}\u{10ffff}"),
            "'é☃😀\\x85\\xa0\\xad\\u200b\\ue000\\U0010ffff'"
        );
        assert_eq!(a("é☃😀\x07"), "'\\xe9\\u2603\\U0001f600\\x07'");
        assert_eq!(r(""), "''");
        assert_eq!(r("\u{378}\u{3000}\u{2028}"), "'\\u0378\\u3000\\u2028'");
    }

    #[test]
    fn latin1_chars() {
        let mut out = String::new();
        repr_chars(b"a\xe9\x85".iter().map(|&b| char::from(b)), false, &mut out);
        assert_eq!(out, "'a\u{e9}\\x85'");
    }
}
