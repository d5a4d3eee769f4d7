//! Python's text conventions, byte for byte.
//!
//! Gunicorn decodes everything off the wire as latin-1, so every Python `str`
//! it builds maps one character to one byte. Error messages and WSGI values
//! must come out exactly as CPython renders them (`repr()`, `int()`,
//! `html.escape`, `urllib.parse.unquote_to_bytes`), which is what these
//! helpers reproduce for that latin-1 subset of Unicode.

/// Decodes bytes the way `bytes.decode("latin-1")` does: byte N becomes U+00NN.
pub fn latin1_to_string(bytes: &[u8]) -> String {
    if bytes.is_ascii() {
        // Every ASCII byte string is valid UTF-8, and this is the common case.
        return String::from_utf8_lossy(bytes).into_owned();
    }
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Encodes a string of latin-1 characters back to bytes; characters above
/// U+00FF (which Gunicorn's parser never produces) become `?`.
pub fn string_to_latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect()
}

/// The quote `repr()` picks: single, unless the text has a single quote and
/// no double quote.
fn py_quote(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double {
        '"'
    } else {
        '\''
    }
}

/// `repr(s)` for a Python `str`, as Gunicorn's `%r` formatting produces it.
pub fn py_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::util::pyrepr::repr_str(s, false, &mut out);
    out
}

/// `repr(b)` for a Python `bytes` object.
pub fn py_repr_bytes(bytes: &[u8]) -> String {
    let quote = py_quote(bytes.contains(&b'\''), bytes.contains(&b'"'));
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push('b');
    out.push(quote);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if char::from(b) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote);
    out
}

/// `html.escape(s)` (with the default `quote=True`).
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `urllib.parse.unquote_to_bytes()`: `%XX` with two hex digits becomes that
/// byte; any other `%` stays as it is.
///
/// The input is the ASCII request path (the request-target is restricted to
/// printable ASCII before it gets here), so Python's UTF-8 encoding step is
/// the identity.
pub fn unquote_to_bytes(s: &[u8]) -> Vec<u8> {
    let Some(first) = memchr::memchr(b'%', s) else {
        return s.to_vec();
    };
    let mut out = Vec::with_capacity(s.len());
    out.extend_from_slice(&s[..first]);
    let mut i = first;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            if let (Some(h), Some(l)) =
                (s.get(i + 1).copied().and_then(hex_value), s.get(i + 2).copied().and_then(hex_value))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// What CPython's `int()` strips around a number, for latin-1 text. Measured:
/// narrower than `str.isspace()` (which also has U+001C..U+001F).
fn py_int_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0)
}

/// `int(s)` in base 10 for latin-1 text: surrounding whitespace, one sign,
/// single underscores between digits. `None` where Python raises
/// `ValueError`. Values beyond `i128` saturate, which no caller can tell
/// from the exact (unbounded) Python integer.
pub fn py_int(s: &[u8]) -> Option<i128> {
    let start = s.iter().position(|&b| !py_int_space(b))?;
    let end = s.iter().rposition(|&b| !py_int_space(b))? + 1;
    let mut digits = s.get(start..end)?;
    let negative = match digits.first() {
        Some(b'-') => true,
        Some(b'+') => false,
        _ => {
            return parse_py_digits(digits, false);
        }
    };
    digits = &digits[1..];
    parse_py_digits(digits, negative)
}

fn parse_py_digits(digits: &[u8], negative: bool) -> Option<i128> {
    if digits.is_empty() {
        return None;
    }
    let mut value: i128 = 0;
    let mut prev_digit = false;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                let d = i128::from(b - b'0');
                value = value.saturating_mul(10).saturating_add(d);
                prev_digit = true;
            }
            b'_' if prev_digit => prev_digit = false,
            _ => return None,
        }
    }
    if !prev_digit {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// RFC 9110 `tchar`, Gunicorn's `TOKEN_RE` character class.
pub(crate) static TOKEN_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let specials = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < specials.len() {
        t[specials[i] as usize] = true;
        i += 1;
    }
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = true;
        c += 1;
    }
    let mut c = b'a';
    while c <= b'z' {
        t[c as usize] = true;
        t[(c - 32) as usize] = true;
        c += 1;
    }
    t
};

/// `TOKEN_RE.fullmatch(s)`: one or more `tchar`.
#[inline]
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| TOKEN_CHARS[usize::from(b)])
}

/// Python's `s.strip(" \t")` on bytes.
#[inline]
pub(crate) fn trim_sp_tab(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    match start {
        None => &[],
        Some(start) => {
            let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |e| e + 1);
            s.get(start..end).unwrap_or(&[])
        }
    }
}

/// Python's `s.rstrip(" \t")` on bytes.
#[inline]
pub(crate) fn rtrim_sp_tab(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |e| e + 1);
    s.get(..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_cpython() {
        // Expected values printed by CPython 3.11.
        assert_eq!(py_repr("a'b"), "\"a'b\"");
        assert_eq!(py_repr("a\"b"), "'a\"b'");
        assert_eq!(py_repr("a'\"b"), "'a\\'\"b'");
        let s = latin1_to_string(b"\\x\x00\x7f\x80\xa0\xad\xff\t\r\n");
        assert_eq!(py_repr(&s), "'\\\\x\\x00\\x7f\\x80\\xa0\\xad\u{ff}\\t\\r\\n'");
        assert_eq!(py_repr(""), "''");
    }

    #[test]
    fn repr_bytes_matches_cpython() {
        assert_eq!(py_repr_bytes(b"a'b"), "b\"a'b\"");
        assert_eq!(py_repr_bytes(b"a\"b"), "b'a\"b'");
        assert_eq!(py_repr_bytes(b"a'\"b"), "b'a\\'\"b'");
        assert_eq!(
            py_repr_bytes(b"\\x\x00\x7f\x80\xa0\xad\xff\t\r\n"),
            "b'\\\\x\\x00\\x7f\\x80\\xa0\\xad\\xff\\t\\r\\n'"
        );
        assert_eq!(py_repr_bytes(b""), "b''");
    }

    #[test]
    fn html_escape_matches_python() {
        assert_eq!(html_escape("<a href='x'>&\"</a>"), "&lt;a href=&#x27;x&#x27;&gt;&amp;&quot;&lt;/a&gt;");
    }

    #[test]
    fn int_matches_cpython() {
        let ok: &[(&[u8], i128)] = &[
            (b"0_7", 7),
            (b"+5", 5),
            (b"-0", 0),
            (b" 5 ", 5),
            (b"5\xa0", 5),
            (b"\x855", 5),
            (b"00", 0),
            (b"\t\x0b12\r\n", 12),
            (b"-12", -12),
        ];
        for (s, v) in ok {
            assert_eq!(py_int(s), Some(*v), "{s:?}");
        }
        let bad: &[&[u8]] =
            &[b"\x1c5", b"1__0", b"_1", b"1_", b"0x10", b"+_1", b"1 2", b"", b"+", b"+ 5", b"5+", b" ", b"\xb2"];
        for s in bad {
            assert_eq!(py_int(s), None, "{s:?}");
        }
        assert_eq!(py_int(b"999999999999999999999999999999999999999999999"), Some(i128::MAX));
    }

    #[test]
    fn unquote() {
        assert_eq!(unquote_to_bytes(b"/a%20b"), b"/a b");
        assert_eq!(unquote_to_bytes(b"/%zz%4"), b"/%zz%4");
        assert_eq!(unquote_to_bytes(b"%C3%A9%"), b"\xc3\xa9%");
        assert_eq!(unquote_to_bytes(b"%%41"), b"%A");
    }

    #[test]
    fn token_and_trim() {
        assert!(is_token(b"GET"));
        assert!(is_token(b"X-Forwarded_For!"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a:"));
        assert!(!is_token(b"\xdf"));
        assert_eq!(trim_sp_tab(b" \t a b \t"), b"a b");
        assert_eq!(trim_sp_tab(b" \t "), b"");
        assert_eq!(rtrim_sp_tab(b"ab \t"), b"ab");
        assert_eq!(rtrim_sp_tab(b" "), b"");
    }

    #[test]
    fn latin1_roundtrip() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(string_to_latin1(&latin1_to_string(&all)), all);
    }
}
