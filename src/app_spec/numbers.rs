//! Numeric literals, scanned exactly as CPython 3.11's tokenizer does
//! (underscores, radix prefixes, the leading-zero rule, and what may
//! directly follow a number).

use super::lexer::LexError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Number {
    /// Digits without prefix or underscores.
    Int {
        radix: u32,
        digits: String,
    },
    Float(f64),
    /// `<float>j`: only its imaginary part.
    Imag(f64),
}

struct Scan<'a> {
    src: &'a [char],
    pos: usize,
    text: String,
}

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn peek_is(&self, f: impl Fn(char) -> bool) -> bool {
        self.peek().is_some_and(f)
    }

    fn take(&mut self) {
        if let Some(c) = self.peek() {
            if c != '_' {
                self.text.push(c);
            }
            self.pos += 1;
        }
    }

    /// Digits of `is_digit`, single underscores allowed between them; the
    /// first digit must be current.
    fn digits(&mut self, is_digit: fn(char) -> bool, err: &'static str) -> Result<(), LexError> {
        loop {
            while self.peek_is(is_digit) {
                self.take();
            }
            if self.peek() != Some('_') {
                return Ok(());
            }
            self.take();
            if !self.peek_is(is_digit) {
                return Err(LexError(err));
            }
        }
    }

    /// CPython's `verify_end_of_number`: a keyword that can legally follow
    /// a number may touch it ("1if x else y"); any other identifier
    /// character may not.
    fn verify_end(&self, at: usize, kind: &'static str) -> Result<(), LexError> {
        let rest = |s: &str| s.chars().enumerate().all(|(i, c)| self.src.get(at + i) == Some(&c));
        if ["and", "else", "for", "if", "in", "is", "or", "not"].iter().any(|k| rest(k)) {
            return Ok(());
        }
        match self.src.get(at) {
            Some(&c) if c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii() => Err(LexError(kind)),
            _ => Ok(()),
        }
    }
}

fn is_dec(c: char) -> bool {
    c.is_ascii_digit()
}

const BAD_DECIMAL: &str = "invalid decimal literal";

/// Scans a number at the start of `src`; returns it and its length.
pub(crate) fn scan_number(src: &[char]) -> Result<(Number, usize), LexError> {
    let mut s = Scan { src, pos: 0, text: String::new() };
    let radix = match (s.peek(), src.get(1).map(|c| c.to_ascii_lowercase())) {
        (Some('0'), Some('x')) => {
            Some((16, char::is_ascii_hexdigit as fn(&char) -> bool, "invalid hexadecimal literal"))
        }
        (Some('0'), Some('o')) => {
            Some((8, (|c: &char| ('0'..='7').contains(c)) as fn(&char) -> bool, "invalid octal literal"))
        }
        (Some('0'), Some('b')) => {
            Some((2, (|c: &char| *c == '0' || *c == '1') as fn(&char) -> bool, "invalid binary literal"))
        }
        _ => None,
    };
    if let Some((radix, is_digit, err)) = radix {
        s.pos = 2;
        loop {
            if s.peek() == Some('_') {
                s.pos += 1;
            }
            if !s.peek().is_some_and(|c| is_digit(&c)) {
                return Err(LexError(err));
            }
            while s.peek().is_some_and(|c| is_digit(&c)) {
                s.take();
            }
            if s.peek() != Some('_') {
                break;
            }
        }
        if radix < 10 && s.peek_is(is_dec) {
            return Err(LexError(err));
        }
        s.verify_end(s.pos, err)?;
        return Ok((Number::Int { radix, digits: s.text }, s.pos));
    }

    let mut is_float = false;
    if s.peek() == Some('.') {
        // ".5": the fraction branch directly.
        s.take();
        s.digits(is_dec, BAD_DECIMAL)?;
        is_float = true;
    } else {
        s.digits(is_dec, BAD_DECIMAL)?;
        if s.peek() == Some('.') {
            s.take();
            if s.peek_is(is_dec) {
                s.digits(is_dec, BAD_DECIMAL)?;
            }
            is_float = true;
        }
    }
    if matches!(s.peek(), Some('e' | 'E')) {
        let e_at = s.pos;
        let saved = s.text.len();
        s.take();
        if matches!(s.peek(), Some('+' | '-')) {
            s.take();
            if !s.peek_is(is_dec) {
                return Err(LexError(BAD_DECIMAL));
            }
        } else if !s.peek_is(is_dec) {
            // "1else": the number stops before the 'e'.
            s.verify_end(e_at, BAD_DECIMAL)?;
            s.pos = e_at;
            s.text.truncate(saved);
            return finish(s, is_float);
        }
        s.digits(is_dec, BAD_DECIMAL)?;
        is_float = true;
    }
    if matches!(s.peek(), Some('j' | 'J')) {
        let value = parse_float(&s.text)?;
        s.pos += 1;
        s.verify_end(s.pos, "invalid imaginary literal")?;
        return Ok((Number::Imag(value), s.pos));
    }
    s.verify_end(s.pos, BAD_DECIMAL)?;
    finish(s, is_float)
}

fn finish(s: Scan<'_>, is_float: bool) -> Result<(Number, usize), LexError> {
    if is_float {
        return Ok((Number::Float(parse_float(&s.text)?), s.pos));
    }
    let significant = s.text.trim_start_matches('0');
    if s.text.starts_with('0') && !significant.is_empty() {
        return Err(LexError(
            "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers",
        ));
    }
    Ok((Number::Int { radix: 10, digits: s.text }, s.pos))
}

/// Rust's parser is correctly rounded like Python's and accepts the same
/// shapes once underscores are gone ("1.", ".5", "1e5", "1.e5").
fn parse_float(text: &str) -> Result<f64, LexError> {
    text.parse::<f64>().map_err(|_| LexError(BAD_DECIMAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Result<(Number, usize), LexError> {
        let chars: Vec<char> = s.chars().collect();
        scan_number(&chars)
    }

    fn int(radix: u32, digits: &str, len: usize) -> Result<(Number, usize), LexError> {
        Ok((Number::Int { radix, digits: digits.into() }, len))
    }

    // Accept/reject decisions checked with ast.parse in /tmp/gvenv/bin/python.
    #[test]
    fn accepts_python_numbers() {
        assert_eq!(num("0"), int(10, "0", 1));
        assert_eq!(num("00"), int(10, "00", 2));
        assert_eq!(num("0_0"), int(10, "00", 3));
        assert_eq!(num("1_000)"), int(10, "1000", 5));
        assert_eq!(num("0x_ff"), int(16, "ff", 5));
        assert_eq!(num("0XfF"), int(16, "fF", 4));
        assert_eq!(num("0O17"), int(8, "17", 4));
        assert_eq!(num("0B1_0"), int(2, "10", 5));
        assert_eq!(num("0b1for"), int(2, "1", 3));
        assert_eq!(num("0x1for"), int(16, "1f", 4));
        assert_eq!(num("1if"), int(10, "1", 1));
        assert_eq!(num("1else"), int(10, "1", 1));
        assert_eq!(num("1.5"), Ok((Number::Float(1.5), 3)));
        assert_eq!(num("5."), Ok((Number::Float(5.0), 2)));
        assert_eq!(num(".5"), Ok((Number::Float(0.5), 2)));
        assert_eq!(num("1.e5"), Ok((Number::Float(1e5), 4)));
        assert_eq!(num("1E+5"), Ok((Number::Float(1e5), 4)));
        assert_eq!(num("1e-5_0"), Ok((Number::Float(1e-50), 6)));
        assert_eq!(num("007.5e1"), Ok((Number::Float(75.0), 7)));
        assert_eq!(num("09.5"), Ok((Number::Float(9.5), 4)));
        assert_eq!(num("1_000.000_1"), Ok((Number::Float(1000.0001), 11)));
        assert_eq!(num("1.5J"), Ok((Number::Imag(1.5), 4)));
        assert_eq!(num("09j"), Ok((Number::Imag(9.0), 3)));
        assert_eq!(num("1e400"), Ok((Number::Float(f64::INFINITY), 5)));
        assert_eq!(num("1.5.real"), Ok((Number::Float(1.5), 3)));
    }

    #[test]
    fn rejects_what_python_rejects() {
        for bad in [
            "007",
            "0_7",
            "09",
            "1__0",
            "1_",
            "0x",
            "0x_",
            "0b",
            "0b2",
            "0o8",
            "1e",
            "1e+",
            "1e_5",
            "1_e5",
            "1abc",
            "1.real",
            "1.__class__",
            "0xffj",
            "1jx",
            "1é",
        ] {
            assert!(num(bad).is_err(), "{bad}");
        }
    }
}
