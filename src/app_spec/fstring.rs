//! Syntax check of an f-string body, following CPython 3.11's
//! `fstring_find_literal` / `fstring_find_expr`. An f-string is never a
//! literal, but a malformed one is a SyntaxError, which Gunicorn words
//! differently.

use super::expr::Parser;
use super::lexer::{LexError, Lexer};
use super::strings::decode_str;

const EXPECTING_BRACE: LexError = LexError("f-string: expecting '}'");

pub(crate) fn validate(body: &[char], raw: bool) -> Result<(), LexError> {
    let end = parse_level(body, 0, raw, 0)?;
    if end < body.len() {
        // Only a stray '}' can stop the top level early.
        return Err(LexError("f-string: single '}' is not allowed"));
    }
    Ok(())
}

/// Literal text and replacement fields from `i`; returns where it stopped
/// (the end, or the `}` closing a nested format spec).
fn parse_level(body: &[char], mut i: usize, raw: bool, level: usize) -> Result<usize, LexError> {
    loop {
        let literal_start = i;
        let mut brace = None;
        while let Some(&c) = body.get(i) {
            i += 1;
            let mut ch = c;
            if !raw && c == '\\' {
                if let Some(&next) = body.get(i) {
                    i += 1;
                    ch = next;
                    if next == 'N' {
                        if body.get(i) == Some(&'{') {
                            i += 1;
                            while let Some(&n) = body.get(i) {
                                i += 1;
                                if n == '}' {
                                    break;
                                }
                            }
                        }
                        continue;
                    }
                }
            }
            if ch == '{' || ch == '}' {
                if level == 0 && body.get(i) == Some(&ch) {
                    i += 1;
                    brace = Some('=');
                    break;
                }
                if level == 0 && ch == '}' {
                    return Err(LexError("f-string: single '}' is not allowed"));
                }
                i -= 1;
                brace = Some(ch);
                break;
            }
        }
        let literal_end = if brace == Some('=') { i - 1 } else { i };
        if !raw {
            // Only escape errors matter; the value of an f-string is unused.
            let _value = decode_str(body.get(literal_start..literal_end).unwrap_or(&[]))?;
        }
        match brace {
            Some('=') => continue,
            Some('{') => i = field(body, i, raw, level)?,
            _ => return Ok(i),
        }
    }
}

/// One `{expr[=][!c][:spec]}` starting at the `{` at `i`.
fn field(body: &[char], mut i: usize, raw: bool, level: usize) -> Result<usize, LexError> {
    if level >= 2 {
        return Err(LexError("f-string: expressions nested too deeply"));
    }
    i += 1;
    let expr_start = i;
    let mut stack: Vec<char> = Vec::new();
    let mut quote: Option<(char, bool)> = None;
    while let Some(&ch) = body.get(i) {
        if ch == '\\' {
            return Err(LexError("f-string expression part cannot include a backslash"));
        }
        if let Some((q, triple)) = quote {
            if ch == q {
                if !triple {
                    quote = None;
                } else if body.get(i + 1) == Some(&q) && body.get(i + 2) == Some(&q) {
                    quote = None;
                    i += 2;
                }
            }
            i += 1;
            continue;
        }
        match ch {
            '\'' | '"' => {
                let triple = body.get(i + 1) == Some(&ch) && body.get(i + 2) == Some(&ch);
                quote = Some((ch, triple));
                if triple {
                    i += 2;
                }
            }
            '(' | '[' | '{' => {
                if stack.len() >= 200 {
                    return Err(LexError("f-string: too many nested parenthesis"));
                }
                stack.push(ch);
            }
            '#' => return Err(LexError("f-string expression part cannot include '#'")),
            '!' | ':' | '}' | '=' | '<' | '>' if stack.is_empty() => {
                if body.get(i + 1) == Some(&'=') && matches!(ch, '!' | '=' | '<' | '>') {
                    i += 2;
                    continue;
                }
                if ch != '<' && ch != '>' {
                    break;
                }
            }
            ')' | ']' | '}' => {
                let open = stack.pop().ok_or(LexError("f-string: unmatched closing bracket"))?;
                if !matches!((open, ch), ('(', ')') | ('[', ']') | ('{', '}')) {
                    return Err(LexError("f-string: closing parenthesis does not match"));
                }
            }
            _ => {}
        }
        i += 1;
    }
    if quote.is_some() {
        return Err(LexError("f-string: unterminated string"));
    }
    if !stack.is_empty() {
        return Err(LexError("f-string: unmatched opening bracket"));
    }
    let expr = body.get(expr_start..i).ok_or(EXPECTING_BRACE)?;
    if i >= body.len() {
        return Err(EXPECTING_BRACE);
    }
    compile(expr)?;
    if body.get(i) == Some(&'=') {
        i += 1;
        while body.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
    }
    if body.get(i) == Some(&'!') {
        match body.get(i + 1) {
            None => return Err(EXPECTING_BRACE),
            Some('s' | 'r' | 'a') => i += 2,
            Some(_) => return Err(LexError("f-string: invalid conversion character")),
        }
    }
    if body.get(i) == Some(&':') {
        i += 1;
        if i >= body.len() {
            return Err(EXPECTING_BRACE);
        }
        i = parse_level(body, i, raw, level + 1)?;
    }
    if body.get(i) != Some(&'}') {
        return Err(EXPECTING_BRACE);
    }
    Ok(i + 1)
}

/// CPython compiles the expression text wrapped in parentheses.
fn compile(expr: &[char]) -> Result<(), LexError> {
    if expr.iter().all(|c| c.is_whitespace()) {
        return Err(LexError("f-string: empty expression not allowed"));
    }
    let mut src = Vec::with_capacity(expr.len() + 2);
    src.push('(');
    src.extend_from_slice(expr);
    src.push(')');
    let toks = Lexer::new(&src).tokenize()?;
    Parser::new(toks).parse_eval().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        validate(&chars, false).is_ok()
    }

    // Accept/reject decisions from ast.parse("f'...'") in /tmp/gvenv/bin/python.
    #[test]
    fn matches_cpython_311() {
        for good in [
            "{{}}",
            "{x!r}",
            "{x:>{w}}",
            "{x=}",
            "\\{x}",
            "{x!r:}",
            "{\"a\"}",
            "{x:\\n}",
            "{x:{{}}}",
            "{(lambda x:1)}",
            "{x,y}",
            "{yield}",
            "{x:=1}",
            "{(x:=1)}",
            "{x!=y}",
            "{x==y}",
            "{x = }",
            "{x[\"a\"]}",
            "plain",
            "",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "{}",
            "{ }",
            "{x",
            "x}",
            "{x!z}",
            "{a b}",
            "{#}",
            "{\\n}",
            "{x}}",
            "{x:{y:{z}}}",
            "{x!}",
            "{x!r }",
            "{1+}",
            "\\x4",
            "{lambda x:1}",
            "{*x}",
            "{{x}",
            "{x}{",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }
}
