//! `--access-logformat`, compiled once from Python `%`-format syntax.

use std::fmt;

use super::atom::{Atom, StaticType};
use super::otel::JsonFields;
use super::pyformat::{numeric_type_error, Flags, Spec, NUMERIC_CONVERSIONS};
use super::record::AccessRecord;
use super::resolve::with_value;

/// Gunicorn's default, the Apache combined format.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// Python accepts widths up to `sys.maxsize`; a line padded to gigabytes
/// per request is never what a config meant, so ferrocorn refuses
/// anything above this at startup.
const MAX_WIDTH: usize = 65_535;

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Literal(String),
    Conv { atom: Atom, spec: Spec },
}

#[derive(Clone, Debug, PartialEq)]
pub struct AccessFormat {
    source: String,
    pieces: Vec<Piece>,
    /// `--access-log-json`: these fields instead of `pieces`.
    json: Option<JsonFields>,
    needs_environ: bool,
    needs_request_headers: bool,
    needs_response_headers: bool,
}

/// Why a line could not be rendered: the exception Python would have
/// raised while formatting it (Gunicorn then logs nothing for the request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderError(pub String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RenderError {}

impl Default for AccessFormat {
    fn default() -> Self {
        match AccessFormat::parse(DEFAULT_ACCESS_LOG_FORMAT) {
            Ok(f) => f,
            // The constant above parses; this arm only keeps the function
            // total.
            Err(_) => AccessFormat {
                source: String::new(),
                pieces: Vec::new(),
                json: None,
                needs_environ: false,
                needs_request_headers: false,
                needs_response_headers: false,
            },
        }
    }
}

impl AccessFormat {
    /// Compiles `fmt`, rejecting what Python's `%` would reject (with
    /// Python's message) and, in addition, what would fail on every
    /// request: positional conversions, `*` widths, numeric conversions
    /// of atoms that are always strings.
    pub fn parse(fmt: &str) -> Result<AccessFormat, String> {
        let pieces = Parser { chars: fmt.chars().collect(), pos: 0 }.pieces()?;
        let any = |pred: fn(&Atom) -> bool| pieces.iter().any(|p| matches!(p, Piece::Conv { atom, .. } if pred(atom)));
        Ok(AccessFormat {
            source: fmt.to_owned(),
            json: None,
            needs_environ: any(|a| matches!(a, Atom::Environ(_))),
            needs_request_headers: any(|a| matches!(a, Atom::RequestHeader(_))),
            needs_response_headers: any(|a| matches!(a, Atom::ResponseHeader(_))),
            pieces,
        })
    }

    /// The access line the settings ask for: JSON objects with the named
    /// request headers (`--access-log-json`), else `--access-logformat`.
    pub fn configured(text: &str, json: bool, json_headers: &[String]) -> Result<AccessFormat, String> {
        if !json {
            return AccessFormat::parse(text);
        }
        let fields = JsonFields::new(json_headers).map_err(|e| format!("access_log_json_headers: {e}"))?;
        Ok(AccessFormat {
            source: "<json>".to_owned(),
            pieces: Vec::new(),
            needs_environ: false,
            needs_request_headers: fields.wants_headers(),
            needs_response_headers: false,
            json: Some(fields),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether any `{name}e` atom is used.
    pub fn needs_environ(&self) -> bool {
        self.needs_environ
    }

    /// Whether any `{name}i` atom is used.
    pub fn needs_request_headers(&self) -> bool {
        self.needs_request_headers
    }

    /// Whether any `{name}o` atom is used.
    pub fn needs_response_headers(&self) -> bool {
        self.needs_response_headers
    }

    /// Appends the line (without newline) to `out`. On error `out` is left
    /// as it was.
    pub fn render(&self, rec: &AccessRecord<'_>, out: &mut Vec<u8>) -> Result<(), RenderError> {
        if let Some(json) = &self.json {
            json.render(rec, out);
            return Ok(());
        }
        let start = out.len();
        for piece in &self.pieces {
            let step = match piece {
                Piece::Literal(s) => {
                    out.extend_from_slice(s.as_bytes());
                    Ok(())
                }
                Piece::Conv { atom, spec } => with_value(atom, rec, |v| spec.apply(v, out)).and_then(|r| r),
            };
            if let Err(e) = step {
                out.truncate(start);
                return Err(RenderError(e));
            }
        }
        Ok(())
    }
}

impl fmt::Display for AccessFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Walks the format the way CPython's `unicode_format_arg_parse` does, so
/// errors come out at the same place with the same words.
struct Parser {
    chars: Vec<char>,
    pos: usize,
}

const INCOMPLETE: &str = "incomplete format";

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Result<char, String> {
        let c = self.peek().ok_or_else(|| INCOMPLETE.to_owned())?;
        self.pos += 1;
        Ok(c)
    }

    fn pieces(mut self) -> Result<Vec<Piece>, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c != '%' {
                literal.push(c);
                continue;
            }
            if self.peek() == Some('%') {
                self.pos += 1;
                literal.push('%');
                continue;
            }
            let start = self.pos - 1;
            let (atom, spec) = self.conversion(start)?;
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Conv { atom, spec });
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(pieces)
    }

    /// Everything after a `%` (at `start`) up to and including the
    /// conversion character.
    fn conversion(&mut self, start: usize) -> Result<(Atom, Spec), String> {
        let key = if self.peek() == Some('(') {
            self.pos += 1;
            Some(self.key()?)
        } else {
            None
        };
        let flags = self.flags()?;
        let width = self.number("width")?;
        let precision = if self.peek() == Some('.') {
            self.pos += 1;
            Some(self.number("precision")?)
        } else {
            None
        };
        if matches!(self.peek(), Some('h' | 'l' | 'L')) {
            self.pos += 1;
        }
        let conv = self.bump()?;
        if !"sracdiuoxXeEfFgG".contains(conv) {
            let shown = if (' '..='~').contains(&conv) || conv == '\x1f' { conv } else { '?' };
            return Err(format!(
                "unsupported format character '{}' (0x{:x}) at index {}",
                shown,
                u32::from(conv),
                self.pos - 1
            ));
        }
        let text: String = self.chars.get(start..self.pos).unwrap_or(&[]).iter().collect();
        let Some(key) = key else {
            return Err(format!(
                "{text} at index {start} has no (name): Gunicorn would format the whole atom \
                 dict there; name an atom, e.g. %(h)s"
            ));
        };
        let atom = Atom::from_key(&key);
        let spec = Spec { flags, width, precision, conv };
        static_check(&atom, &key, &text, conv)?;
        Ok((atom, spec))
    }

    /// A key with balanced parentheses, as Python scans it.
    fn key(&mut self) -> Result<String, String> {
        let begin = self.pos;
        let mut depth = 1usize;
        loop {
            let c = self.peek().ok_or_else(|| "incomplete format key".to_owned())?;
            self.pos += 1;
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        let key = self.chars.get(begin..self.pos - 1).unwrap_or(&[]);
                        return Ok(key.iter().collect());
                    }
                }
                _ => {}
            }
        }
    }

    fn flags(&mut self) -> Result<Flags, String> {
        let mut flags = Flags::default();
        loop {
            match self.peek().ok_or_else(|| INCOMPLETE.to_owned())? {
                '-' => flags.ljust = true,
                '+' => flags.sign = true,
                ' ' => flags.blank = true,
                '#' => flags.alt = true,
                '0' => flags.zero = true,
                _ => return Ok(flags),
            }
            self.pos += 1;
        }
    }

    /// Width or precision digits; absent digits (including a bare `.`)
    /// mean 0, as in Python.
    fn number(&mut self, what: &str) -> Result<usize, String> {
        let mut value = 0usize;
        loop {
            match self.peek() {
                Some('*') => {
                    return Err(format!(
                        "'*' {what} at index {} takes its value from a positional argument, \
                         which the access log format never has",
                        self.pos
                    ))
                }
                Some(c @ '0'..='9') => {
                    let digit = usize::from(c as u8 - b'0');
                    value = value.saturating_mul(10).saturating_add(digit);
                    if value > MAX_WIDTH {
                        return Err(format!("{what} too big (ferrocorn allows at most {MAX_WIDTH})"));
                    }
                    self.pos += 1;
                }
                Some(_) => return Ok(value),
                None => return Err(INCOMPLETE.to_owned()),
            }
        }
    }
}

/// A numeric conversion of an atom that is never a number would raise on
/// every single request; refuse it up front instead.
fn static_check(atom: &Atom, key: &str, text: &str, conv: char) -> Result<(), String> {
    if !NUMERIC_CONVERSIONS.contains(conv) {
        return Ok(());
    }
    let why = match atom.static_type() {
        StaticType::Int | StaticType::Unknown => return Ok(()),
        _ if *atom == Atom::Missing => format!("'{key}' is not an atom, so it prints \"-\""),
        _ => format!("the '{key}' atom is always a string"),
    };
    Err(format!("{text}: {} ({why}; every request would fail)", numeric_type_error(conv, "str")))
}
