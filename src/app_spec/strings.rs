//! String and bytes literals: prefixes, quoting and every escape form
//! Python 3.11 decodes.

use super::fstring::validate as validate_fstring;
use super::lexer::LexError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StrLit {
    /// A str literal; `Err` holds why ferrocorn cannot represent a value
    /// Python accepts (a `\N{...}` name or a lone surrogate).
    Text(Result<String, &'static str>),
    Bytes(Vec<u8>),
    /// An f-string: never a literal for `ast.literal_eval`.
    Formatted,
}

const UNTERMINATED: LexError = LexError("unterminated string literal");

/// Scans a literal whose (already consumed) prefix is `prefix` and whose
/// opening quote is at `src[0]`. Newlines were normalised to `\n`.
pub(crate) fn scan_string(prefix: &str, src: &[char]) -> Result<(StrLit, usize), LexError> {
    let lower = prefix.to_ascii_lowercase();
    let raw = lower.contains('r');
    let bytes = lower.contains('b');
    let formatted = lower.contains('f');
    let quote = *src.first().ok_or(UNTERMINATED)?;
    let triple = src.get(1) == Some(&quote) && src.get(2) == Some(&quote);
    let open = if triple { 3 } else { 1 };
    let mut i = open;
    let mut run = 0;
    // The tokenizer's rule: a backslash always hides the next char from
    // the end-quote search, raw or not.
    let end = loop {
        let c = *src.get(i).ok_or(UNTERMINATED)?;
        i += 1;
        if c == '\n' && !triple {
            return Err(UNTERMINATED);
        }
        if c == quote {
            run += 1;
            if run == open {
                break i;
            }
            continue;
        }
        run = 0;
        if c == '\\' {
            if src.get(i).is_none() {
                return Err(UNTERMINATED);
            }
            i += 1;
        }
    };
    let body = src.get(open..end - open).unwrap_or(&[]);
    let lit = if formatted {
        if bytes {
            return Err(LexError("invalid string prefix"));
        }
        validate_fstring(body, raw)?;
        StrLit::Formatted
    } else if bytes {
        if body.iter().any(|c| !c.is_ascii()) {
            return Err(LexError("bytes can only contain ASCII literal characters"));
        }
        StrLit::Bytes(if raw { body.iter().map(|&c| c as u8).collect() } else { decode_bytes(body)? })
    } else if raw {
        StrLit::Text(Ok(body.iter().collect()))
    } else {
        StrLit::Text(decode_str(body)?)
    };
    Ok((lit, end))
}

/// A simple escape shared by str and bytes, if `c` names one.
fn simple_escape(c: char) -> Option<char> {
    Some(match c {
        '\\' => '\\',
        '\'' => '\'',
        '"' => '"',
        'a' => '\x07',
        'b' => '\x08',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        _ => return None,
    })
}

/// Up to three octal digits starting at `body[*i]` (the first is known).
fn octal(body: &[char], i: &mut usize) -> u32 {
    let mut value = 0;
    for _ in 0..3 {
        match body.get(*i).and_then(|c| c.to_digit(8)) {
            Some(d) => {
                value = value * 8 + d;
                *i += 1;
            }
            None => break,
        }
    }
    value
}

fn hex(body: &[char], i: &mut usize, n: usize) -> Result<u32, LexError> {
    let mut value: u32 = 0;
    for _ in 0..n {
        let d = body.get(*i).and_then(|c| c.to_digit(16)).ok_or(LexError("truncated escape"))?;
        value = value.wrapping_mul(16).wrapping_add(d);
        *i += 1;
    }
    Ok(value)
}

pub(crate) fn decode_str(body: &[char]) -> Result<Result<String, &'static str>, LexError> {
    let mut out = String::with_capacity(body.len());
    let mut unsupported = None;
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        i += 1;
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = body.get(i) else { break };
        i += 1;
        if e == '\n' {
            continue;
        }
        if let Some(s) = simple_escape(e) {
            out.push(s);
            continue;
        }
        let code = match e {
            '0'..='7' => {
                i -= 1;
                octal(body, &mut i)
            }
            'x' => hex(body, &mut i, 2)?,
            'u' => hex(body, &mut i, 4)?,
            'U' => {
                let v = hex(body, &mut i, 8)?;
                if v > 0x10ffff {
                    return Err(LexError("illegal Unicode character"));
                }
                v
            }
            'N' => {
                if body.get(i) != Some(&'{') {
                    return Err(LexError("malformed \\N character escape"));
                }
                let close = body.get(i..).and_then(|rest| rest.iter().position(|&c| c == '}'));
                let Some(close) = close.filter(|&n| n > 1) else {
                    return Err(LexError("malformed \\N character escape"));
                };
                i += close + 1;
                unsupported.get_or_insert("\\N{...} escapes (no Unicode name database)");
                continue;
            }
            // Unknown escapes keep their backslash.
            other => {
                out.push('\\');
                out.push(other);
                continue;
            }
        };
        match char::from_u32(code) {
            Some(ch) => out.push(ch),
            None => {
                unsupported.get_or_insert("lone surrogates");
            }
        }
    }
    Ok(match unsupported {
        Some(why) => Err(why),
        None => Ok(out),
    })
}

fn decode_bytes(body: &[char]) -> Result<Vec<u8>, LexError> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        i += 1;
        // Non-ASCII was rejected by the caller.
        let byte = |c: char| u8::try_from(c).unwrap_or(b'?');
        if c != '\\' {
            out.push(byte(c));
            continue;
        }
        let Some(&e) = body.get(i) else { break };
        i += 1;
        if e == '\n' {
            continue;
        }
        if let Some(s) = simple_escape(e) {
            out.push(byte(s));
            continue;
        }
        match e {
            // CPython keeps the low 8 bits of "\777".
            '0'..='7' => {
                i -= 1;
                out.push((octal(body, &mut i) & 0xff) as u8);
            }
            'x' => out.push((hex(body, &mut i, 2)? & 0xff) as u8),
            other => {
                out.push(b'\\');
                out.push(byte(other));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(prefix: &str, s: &str) -> Result<(StrLit, usize), LexError> {
        let chars: Vec<char> = s.chars().collect();
        scan_string(prefix, &chars)
    }

    fn text(prefix: &str, s: &str) -> String {
        match lit(prefix, s) {
            Ok((StrLit::Text(Ok(t)), _)) => t,
            other => panic!("{other:?}"),
        }
    }

    // Values printed by `ast.literal_eval(src)` in /tmp/gvenv/bin/python.
    #[test]
    fn str_escapes() {
        assert_eq!(text("", r"'a\'b'"), "a'b");
        assert_eq!(text("", r#""\\\"\a\b\f\n\r\t\v""#), "\\\"\x07\x08\x0c\n\r\t\x0b");
        assert_eq!(text("", r"'\0\12\101\777\8\d'"), "\0\n\u{41}\u{1ff}\\8\\d");
        assert_eq!(text("", r"'\x41\u00e9\U0001F600'"), "Aé😀");
        assert_eq!(text("", "'a\\\nb'"), "ab");
        assert_eq!(text("", "'''a\nb'''"), "a\nb");
        assert_eq!(text("", r"'''a\''''"), "a'");
        assert_eq!(text("u", "'x'"), "x");
        assert_eq!(text("R", r"'\n\''"), "\\n\\'");
        assert_eq!(text("r", "'a\\\nb'"), "a\\\nb");
        assert_eq!(text("", "''"), "");
        assert_eq!(text("", "''''''"), "");
        assert_eq!(lit("", "'ab' tail").map(|(_, n)| n), Ok(4));
    }

    #[test]
    fn bytes_escapes() {
        let b = |p: &str, s: &str| match lit(p, s) {
            Ok((StrLit::Bytes(v), _)) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(b("b", r"'\xff\777\0a'"), b"\xff\xff\x00a");
        assert_eq!(b("b", r"'\u00e9\N{X}'"), br"\u00e9\N{X}");
        assert_eq!(b("rb", r"'\x'"), br"\x");
        assert_eq!(b("Rb", r"'\\'"), br"\\");
        assert!(lit("b", "'é'").is_err());
    }

    #[test]
    fn errors_and_unsupported() {
        assert!(lit("", "'abc").is_err());
        assert!(lit("", "'a\nb'").is_err());
        assert!(lit("", r"'\x4'").is_err());
        assert!(lit("", r"'\u12'").is_err());
        assert!(lit("", r"'\U00110000'").is_err());
        assert!(lit("", r"'\N'").is_err());
        assert!(lit("", r"'\N{}'").is_err());
        assert!(lit("", r"'\'").is_err());
        assert!(matches!(lit("", r"'\N{BULLET}'"), Ok((StrLit::Text(Err(_)), _))));
        assert!(matches!(lit("", r"'\ud800'"), Ok((StrLit::Text(Err(_)), _))));
        assert!(matches!(lit("f", "'{x}'"), Ok((StrLit::Formatted, 5))));
    }
}
