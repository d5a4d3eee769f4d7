//! APP_MODULE (`module[:object]`), parsed as Gunicorn's `util.import_app`
//! does before it imports anything: the object part must be a name, or a
//! call of a name whose arguments `ast.literal_eval` accepts.
//!
//! ferrocorn also accepts a dotted attribute path (`module:obj.attr`),
//! which Gunicorn 27 rejects.

#[path = "app_spec/expr.rs"]
mod expr;
#[path = "app_spec/fstring.rs"]
mod fstring;
#[path = "app_spec/lexer.rs"]
mod lexer;
#[path = "app_spec/literal.rs"]
mod literal;
#[path = "app_spec/numbers.rs"]
mod numbers;
#[path = "app_spec/strings.rs"]
mod strings;

use std::fmt;

use crate::util::pyrepr::repr_str;
use expr::{Arg, Expr, Parser};
use lexer::Lexer;
pub use literal::Literal;
use literal::{build, check, Fatal};

#[derive(Clone, Debug, PartialEq)]
pub struct AppSpec {
    pub module: String,
    /// The text after the colon, or `"application"`; Gunicorn quotes it in
    /// later errors ("Failed to find application object: %r").
    pub object: String,
    pub target: Target,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// `app`, or `obj.attr` (ferrocorn only): getattr along the path.
    Attr(Vec<String>),
    /// `create_app(...)`: call the attribute with these arguments.
    /// Keyword names are unique; a repeated one keeps its first position
    /// and its last value, as the dict Gunicorn builds does.
    Call { name: String, args: Vec<Literal>, kwargs: Vec<(String, Literal)> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppSpecError {
    /// A SyntaxError, or an expression that is neither a name nor a call.
    NotNameOrCall { object: String },
    /// A call of something other than a plain name, e.g. `a.b()`.
    NotSimpleName { object: String },
    /// An argument `ast.literal_eval` rejects.
    NotLiteral { object: String },
    /// A dict key or set member Python cannot hash (Gunicorn dies with
    /// this TypeError and a traceback).
    Unhashable { object: String, type_name: &'static str },
    /// Valid for Gunicorn, but a value ferrocorn cannot carry (complex
    /// numbers, `\N{...}` escapes, lone surrogates).
    Unsupported { object: String, reason: &'static str },
}

fn repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    repr_str(s, false, &mut out);
    out
}

impl fmt::Display for AppSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppSpecError::NotNameOrCall { object } => {
                write!(f, "Failed to parse {} as an attribute name or function call.", repr(object))
            }
            AppSpecError::NotSimpleName { object } => {
                write!(f, "Function reference must be a simple name: {}", repr(object))
            }
            AppSpecError::NotLiteral { object } => {
                write!(f, "Failed to parse arguments as literal values: {}", repr(object))
            }
            AppSpecError::Unhashable { object, type_name } => write!(
                f,
                "Failed to parse arguments as literal values: {} (unhashable type: '{}')",
                repr(object),
                type_name
            ),
            AppSpecError::Unsupported { object, reason } => write!(
                f,
                "Failed to parse arguments as literal values: {} (ferrocorn cannot represent {})",
                repr(object),
                reason
            ),
        }
    }
}

impl std::error::Error for AppSpecError {}

/// `module.split(":", 1)`, defaulting the object to `application`.
/// Gunicorn imports the module before parsing the object, so a caller
/// that wants its error order can import between [`split`] and
/// [`parse_target`].
pub fn split(spec: &str) -> (&str, &str) {
    spec.split_once(':').unwrap_or((spec, "application"))
}

pub fn parse(spec: &str) -> Result<AppSpec, AppSpecError> {
    let (module, object) = split(spec);
    Ok(AppSpec { module: module.to_owned(), object: object.to_owned(), target: parse_target(object)? })
}

/// The object part alone.
pub fn parse_target(object: &str) -> Result<Target, AppSpecError> {
    let syntax = || AppSpecError::NotNameOrCall { object: object.to_owned() };
    // Python's tokenizer sees universal newlines.
    let source: Vec<char> = object.replace("\r\n", "\n").replace('\r', "\n").chars().collect();
    let tokens = Lexer::new(&source).tokenize().map_err(|_| syntax())?;
    let expr = Parser::new(tokens).parse_eval().map_err(|_| syntax())?;
    match expr {
        Expr::Name(name) => Ok(Target::Attr(vec![name])),
        Expr::Attribute(..) => attribute_path(&expr).map(Target::Attr).ok_or_else(syntax),
        Expr::Call { func, args } => match *func {
            Expr::Name(name) => call(object, name, &args),
            _ => Err(AppSpecError::NotSimpleName { object: object.to_owned() }),
        },
        _ => Err(syntax()),
    }
}

/// `a.b.c` rooted at a plain name.
fn attribute_path(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Name(n) => Some(vec![n.clone()]),
        Expr::Attribute(base, attr) => {
            let mut path = attribute_path(base)?;
            path.push(attr.clone());
            Some(path)
        }
        _ => None,
    }
}

fn call(object: &str, name: String, args: &[Arg]) -> Result<Target, AppSpecError> {
    // Gunicorn evaluates positional arguments, then keyword values, in
    // order; `*x` and `**x` reach literal_eval as non-literals.
    let fatal = |f: Fatal| match f {
        Fatal::Malformed => AppSpecError::NotLiteral { object: object.to_owned() },
        Fatal::Unhashable(type_name) => AppSpecError::Unhashable { object: object.to_owned(), type_name },
    };
    let positional = args.iter().filter(|a| !matches!(a, Arg::Kw(..) | Arg::DoubleStar(_)));
    let keyword = args.iter().filter(|a| matches!(a, Arg::Kw(..) | Arg::DoubleStar(_)));
    let ordered: Vec<&Arg> = positional.chain(keyword).collect();
    for arg in &ordered {
        match arg {
            // Gunicorn literal-evals the value of `**x` like any keyword's
            // (under the key None); `*x` is a Starred node, never literal.
            Arg::Pos(e) | Arg::Kw(_, e) | Arg::DoubleStar(e) => {
                check(e).map_err(fatal)?;
            }
            Arg::Star(_) => return Err(fatal(Fatal::Malformed)),
        }
    }
    let unsupported = |reason| AppSpecError::Unsupported { object: object.to_owned(), reason };
    // A repeated keyword keeps its first position and its last value; the
    // values it replaced are never looked at again (even unsupported ones).
    let mut keywords: Vec<(&String, &Expr)> = Vec::new();
    for arg in &ordered {
        if let Arg::Kw(k, e) = arg {
            match keywords.iter_mut().find(|(name, _)| *name == k) {
                Some(slot) => slot.1 = e,
                None => keywords.push((k, e)),
            }
        }
    }
    let mut values = Vec::new();
    for arg in ordered {
        match arg {
            Arg::Pos(e) => values.push(build(e).map_err(unsupported)?),
            Arg::Kw(..) => {}
            // `**{...}` of a literal passes literal_eval, then Gunicorn's
            // call fails on the None keyword; refuse it here instead.
            Arg::DoubleStar(_) => {
                return Err(unsupported("'**' of a literal; Python would fail on its non-string keys"))
            }
            Arg::Star(_) => {}
        }
    }
    let mut kwargs = Vec::with_capacity(keywords.len());
    for (k, e) in keywords {
        kwargs.push((k.clone(), build(e).map_err(unsupported)?));
    }
    Ok(Target::Call { name, args: values, kwargs })
}

#[cfg(test)]
#[path = "app_spec/tests.rs"]
mod tests;
