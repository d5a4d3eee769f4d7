//! Python 3.11's tokenizer, for the single-expression (`eval`) input that
//! APP_MODULE's object part is. Any token error is a SyntaxError, which
//! Gunicorn reports as "Failed to parse ...".

use super::numbers::{scan_number, Number};
use super::strings::{scan_string, StrLit};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Name(String),
    Number(Number),
    Str(StrLit),
    Op(&'static str),
    /// End of a logical line outside brackets.
    Newline,
    End,
}

/// Token-level failure; the message is for debugging only, since Gunicorn
/// shows the same text for every SyntaxError.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LexError(pub &'static str);

const OPERATORS: [&str; 49] = [
    "**=", "//=", ">>=", "<<=", "...", "!=", "%=", "&=", "**", "*=", "+=", "-=", "->", "//", "/=", ":=", "<<", "<=",
    "==", ">=", ">>", "@=", "^=", "|=", "%", "&", "(", ")", "*", "+", ",", "-", ".", "/", ":", ";", "<", "=", ">", "@",
    "[", "]", "^", "{", "|", "}", "~", "\\", "!",
];

pub(crate) fn is_id_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic() || (!c.is_ascii() && c.is_alphabetic())
}

/// Python allows XID_Continue; alphanumerics plus combining marks and
/// connector punctuation are close enough for the names apps use.
pub(crate) fn is_id_continue(c: char) -> bool {
    is_id_start(c)
        || c.is_ascii_digit()
        || (!c.is_ascii() && (c.is_alphanumeric() || is_combining(c)))
        || c == '\u{b7}'
        || c == '\u{203f}'
        || c == '\u{2040}'
}

fn is_combining(c: char) -> bool {
    matches!(u32::from(c), 0x300..=0x36f | 0x1ab0..=0x1aff | 0x1dc0..=0x1dff | 0x20d0..=0x20ff | 0xfe20..=0xfe2f)
}

pub(crate) struct Lexer<'s> {
    src: &'s [char],
    pos: usize,
    depth: usize,
    /// Whether the current logical line has produced a token yet.
    line_has_token: bool,
    first_line: bool,
}

impl<'s> Lexer<'s> {
    pub(crate) fn new(src: &'s [char]) -> Lexer<'s> {
        Lexer { src, pos: 0, depth: 0, line_has_token: false, first_line: true }
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.src.get(self.pos + offset).copied()
    }

    pub(crate) fn tokenize(mut self) -> Result<Vec<Tok>, LexError> {
        if self.src.contains(&'\0') {
            return Err(LexError("source code string cannot contain null bytes"));
        }
        let mut toks = Vec::new();
        loop {
            let tok = self.next_token()?;
            let end = tok == Tok::End;
            toks.push(tok);
            if end {
                return Ok(toks);
            }
        }
    }

    fn next_token(&mut self) -> Result<Tok, LexError> {
        loop {
            if !self.line_has_token && self.depth == 0 {
                self.skip_blank_lines()?;
            }
            self.skip_spaces();
            let Some(c) = self.peek_at(0) else {
                if self.depth > 0 {
                    return Err(LexError("unexpected EOF in multi-line statement"));
                }
                if self.line_has_token {
                    self.line_has_token = false;
                    return Ok(Tok::Newline);
                }
                return Ok(Tok::End);
            };
            match c {
                '#' => self.skip_comment(),
                '\n' | '\r' => {
                    self.eat_newline();
                    if self.depth == 0 && self.line_has_token {
                        self.line_has_token = false;
                        return Ok(Tok::Newline);
                    }
                }
                '\\' => {
                    self.pos += 1;
                    match self.peek_at(0) {
                        Some('\n' | '\r') => self.eat_newline(),
                        None => return Err(LexError("unexpected EOF while parsing")),
                        Some(_) => return Err(LexError("unexpected character after line continuation character")),
                    }
                    if self.peek_at(0).is_none() {
                        return Err(LexError("unexpected EOF while parsing"));
                    }
                }
                _ => {
                    self.line_has_token = true;
                    self.first_line = false;
                    return self.token(c);
                }
            }
        }
    }

    /// Blank and comment-only lines produce nothing; the first real line
    /// must not be indented (eval input has no INDENT).
    fn skip_blank_lines(&mut self) -> Result<(), LexError> {
        loop {
            let start = self.pos;
            let mut indented = false;
            while let Some(c @ (' ' | '\t' | '\x0c')) = self.peek_at(0) {
                // A form feed resets the column, as in CPython.
                indented = c != '\x0c';
                self.pos += 1;
            }
            match self.peek_at(0) {
                Some('#') => {
                    self.skip_comment();
                    if matches!(self.peek_at(0), Some('\n' | '\r')) {
                        self.eat_newline();
                    }
                }
                Some('\n' | '\r') => self.eat_newline(),
                // Whitespace then EOF on a line of its own is an INDENT
                // with nothing after it (no newline is appended in eval
                // mode).
                None if indented => return Err(LexError("unexpected indent")),
                None => return Ok(()),
                Some('\\') => {
                    if self.first_line && indented {
                        return Err(LexError("unexpected indent"));
                    }
                    return Ok(());
                }
                Some(_) => {
                    if indented && self.first_line {
                        return Err(LexError("unexpected indent"));
                    }
                    // Leave the indentation for skip_spaces; anything on a
                    // later line is a grammar error anyway.
                    self.pos = start;
                    return Ok(());
                }
            }
        }
    }

    fn skip_spaces(&mut self) {
        while let Some(' ' | '\t' | '\x0c') = self.peek_at(0) {
            self.pos += 1;
        }
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek_at(0) {
            if c == '\n' || c == '\r' {
                break;
            }
            self.pos += 1;
        }
    }

    fn eat_newline(&mut self) {
        if self.peek_at(0) == Some('\r') {
            self.pos += 1;
            if self.peek_at(0) == Some('\n') {
                self.pos += 1;
            }
        } else if self.peek_at(0) == Some('\n') {
            self.pos += 1;
        }
    }

    fn token(&mut self, c: char) -> Result<Tok, LexError> {
        if c.is_ascii_digit() || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) {
            let (number, len) = scan_number(self.src.get(self.pos..).unwrap_or(&[]))?;
            self.pos += len;
            return Ok(Tok::Number(number));
        }
        if is_id_start(c) {
            let start = self.pos;
            while self.peek_at(0).is_some_and(is_id_continue) {
                self.pos += 1;
            }
            let word: String = self.src.get(start..self.pos).unwrap_or(&[]).iter().collect();
            if matches!(self.peek_at(0), Some('\'' | '"')) && is_string_prefix(&word) {
                let (lit, len) = scan_string(&word, self.src.get(self.pos..).unwrap_or(&[]))?;
                self.pos += len;
                return Ok(Tok::Str(lit));
            }
            return Ok(Tok::Name(word));
        }
        if c == '\'' || c == '"' {
            let (lit, len) = scan_string("", self.src.get(self.pos..).unwrap_or(&[]))?;
            self.pos += len;
            return Ok(Tok::Str(lit));
        }
        if !c.is_ascii() {
            return Err(LexError("invalid character"));
        }
        for op in OPERATORS {
            let matches = op.chars().enumerate().all(|(i, oc)| self.peek_at(i) == Some(oc));
            if matches {
                if op == "\\" || op == "!" {
                    return Err(LexError("invalid syntax"));
                }
                self.pos += op.chars().count();
                match op {
                    "(" | "[" | "{" => {
                        // CPython's tokenizer limit (MAXLEVEL); it also keeps
                        // the recursive parser's stack bounded.
                        if self.depth >= 200 {
                            return Err(LexError("too many nested parentheses"));
                        }
                        self.depth += 1;
                    }
                    ")" | "]" | "}" => {
                        if self.depth == 0 {
                            return Err(LexError("unmatched closing bracket"));
                        }
                        self.depth -= 1;
                    }
                    _ => {}
                }
                return Ok(Tok::Op(op));
            }
        }
        Err(LexError("invalid character"))
    }
}

fn is_string_prefix(word: &str) -> bool {
    matches!(word.to_ascii_lowercase().as_str(), "r" | "u" | "b" | "br" | "rb" | "f" | "fr" | "rf")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Result<Vec<Tok>, LexError> {
        let chars: Vec<char> = s.chars().collect();
        Lexer::new(&chars).tokenize()
    }

    #[test]
    fn layout_rules() {
        assert_eq!(toks("app").unwrap(), vec![Tok::Name("app".into()), Tok::Newline, Tok::End]);
        assert_eq!(toks("\n# c\napp\n\n").unwrap(), vec![Tok::Name("app".into()), Tok::Newline, Tok::End]);
        assert!(toks(" app").is_err());
        assert!(toks("\n app").is_err());
        assert!(toks("app\\\n").is_err());
        assert!(toks("app\\").is_err());
        assert!(toks("f(\n1\n)").is_ok());
        assert!(toks("f(").is_err());
        assert!(toks("f)").is_err());
        assert!(toks("f\0").is_err());
        assert!(toks("a$b").is_err());
        assert!(toks("a!b").is_err());
        assert_eq!(
            toks("a**=b...").unwrap(),
            vec![Tok::Name("a".into()), Tok::Op("**="), Tok::Name("b".into()), Tok::Op("..."), Tok::Newline, Tok::End]
        );
    }
}
