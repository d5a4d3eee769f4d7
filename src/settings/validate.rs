//! Gunicorn's setting validators (`gunicorn/config.py`), one function each,
//! turning an [`Input`] from any source into the typed value the server uses.
//! Error texts follow Gunicorn's where it has one.

use super::input::Input;
use pyo3::prelude::*;

pub type Validated<T> = Result<T, String>;

pub fn boolean(v: &Input) -> Validated<bool> {
    match v {
        Input::None => Ok(false),
        Input::Bool(b) => Ok(*b),
        Input::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("Invalid boolean: {s}")),
        },
        other => Err(format!("Invalid type for casting: {}", other.describe())),
    }
}

/// `validate_pos_int`: an int, or a string read as Python's `int(s, 0)`.
pub fn pos_int(py: Python<'_>, v: &Input) -> Validated<i64> {
    match int_value(py, v) {
        Ok(n) if n < 0 => Err(format!("Value must be positive: {n}")),
        Ok(n) => Ok(n),
        Err(e) => Err(pos_int_error(e)),
    }
}

/// A count (workers, threads, connections, header limits): `pos_int`.
pub fn count(py: Python<'_>, v: &Input) -> Validated<usize> {
    let n = pos_int(py, v)?;
    usize::try_from(n).map_err(|_| format!("Value is too large: {n}"))
}

/// An amount that may exceed what a pointer holds (requests, bytes): `pos_int`.
pub fn amount(py: Python<'_>, v: &Input) -> Validated<u64> {
    Ok(pos_int(py, v)?.unsigned_abs())
}

/// Whole seconds (timeouts, keep-alive): `pos_int`.
pub fn seconds(py: Python<'_>, v: &Input) -> Validated<std::time::Duration> {
    Ok(std::time::Duration::from_secs(pos_int(py, v)?.unsigned_abs()))
}

/// The reason for an int a positive setting cannot take.
fn pos_int_error(e: IntError) -> String {
    match e {
        IntError::Invalid(why) => why,
        IntError::OutOfRange { negative: true, text } => format!("Value must be positive: {text}"),
        // Gunicorn would take it, and fail later (a sleep, a fork loop).
        IntError::OutOfRange { negative: false, text } => format!("Value is too large: {text}"),
    }
}

fn int_value(py: Python<'_>, v: &Input) -> Result<i64, IntError> {
    match v {
        Input::Bool(b) => Ok(i64::from(*b)),
        Input::Int(i) => i64::try_from(*i).map_err(|_| IntError::OutOfRange { negative: *i < 0, text: i.to_string() }),
        Input::Str(s) => python_int(py, s, 0),
        other => Err(IntError::Invalid(format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            other.describe()
        ))),
    }
}

/// Why Python's `int()` gave no `i64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntError {
    /// Python's ValueError, in its words
    /// ("invalid literal for int() with base 10: 'x'").
    Invalid(String),
    /// A valid int beyond `i64` (Python's ints have no bound), as Python
    /// prints it, or as written when Python will not print it.
    OutOfRange { negative: bool, text: String },
}

/// Python's `int(text, base)`: base 0 lets the prefix decide and refuses
/// leading zeros, as source code does.
pub fn int_object<'py>(py: Python<'py>, text: &str, base: u32) -> PyResult<Bound<'py, PyAny>> {
    py.get_type::<pyo3::types::PyInt>().call1((text, base))
}

/// [`int_object`] as an `i64`.
pub fn python_int(py: Python<'_>, text: &str, base: u32) -> Result<i64, IntError> {
    let n = int_object(py, text, base).map_err(|e| IntError::Invalid(crate::python::exception_text(py, &e)))?;
    if let Ok(small) = n.extract::<i64>() {
        return Ok(small);
    }
    let negative = n.lt(0).unwrap_or(false);
    // str() of an int longer than sys.get_int_max_str_digits() raises.
    let text = n.str().map(|s| s.to_string()).unwrap_or_else(|_| text.trim().to_owned());
    Err(IntError::OutOfRange { negative, text })
}

/// `auto_int`'s text for `int(text, 0)`: a leading 0 before a digit means
/// octal, as it would in a shell.
pub fn auto_int_text(s: &str) -> String {
    let t = s.trim();
    let b = t.as_bytes();
    if b.len() >= 2 && b[0] == b'0' && b[1].is_ascii_digit() {
        format!("0o{}", &t[1..])
    } else {
        t.to_owned()
    }
}

/// The command-line type Gunicorn calls `auto_int` (umask, socket modes):
/// "022" is octal, as it would be in a shell.
pub fn auto_int(py: Python<'_>, v: &Input) -> Validated<i64> {
    match v {
        Input::Str(s) => python_int(py, &auto_int_text(s), 0).map_err(|e| match e {
            IntError::Invalid(_) => format!("invalid auto_int value: '{s}'"),
            other => pos_int_error(other),
        }),
        other => int_value(py, other).map_err(pos_int_error),
    }
}

pub fn opt_string(v: &Input) -> Validated<Option<String>> {
    match v {
        Input::None => Ok(None),
        Input::Str(s) => Ok(Some(s.trim().to_owned())),
        other => Err(format!("Not a string: {}", other.describe())),
    }
}

pub fn string(v: &Input) -> Validated<String> {
    opt_string(v)?.ok_or_else(|| "Not a string: None".to_owned())
}

/// `validate_list_string`: a list of strings, or one string ("legacy syntax").
pub fn string_list(v: &Input) -> Validated<Vec<String>> {
    match v {
        Input::None => Ok(Vec::new()),
        Input::Str(s) if s.is_empty() => Ok(Vec::new()),
        Input::Str(s) => Ok(vec![s.trim().to_owned()]),
        Input::List(items) => items.iter().map(string).collect(),
        Input::Bool(false) => Ok(Vec::new()),
        other => Err(format!("Not a string: {}", other.describe())),
    }
}

/// `validate_string_to_list`: "a, b,c" → ["a", "b", "c"].
pub fn comma_list(v: &Input) -> Validated<Vec<String>> {
    if let Input::List(items) = v {
        // A config file may already give a list; Gunicorn would fail on
        // `.strip()` of a list, but a list is what the user plainly meant.
        return items.iter().map(string).collect();
    }
    let s = opt_string(v)?.unwrap_or_default();
    Ok(s.split(',').filter(|p| !p.is_empty()).map(|p| p.trim().to_owned()).collect())
}

/// `validate_string_to_addr_list`: IPs or networks (strict, as
/// `ipaddress.ip_network`), or "*".
pub fn addr_list(v: &Input) -> Validated<super::spec::AddrList> {
    let items = comma_list(v)?;
    let allow = crate::http::policy::AllowList::parse(&items)?;
    Ok(super::spec::AddrList { items, allow })
}

pub fn string_dict(v: &Input) -> Validated<Vec<(String, String)>> {
    match v {
        Input::Dict(items) => items
            .iter()
            .map(|(k, v)| match (k, v) {
                (Input::Str(k), Input::Str(v)) => Ok((k.clone(), v.clone())),
                _ => Err(format!("Value is not a dictionary of strings: {}", v.describe())),
            })
            .collect(),
        other => Err(format!("Value is not a dictionary: {} ", other.describe())),
    }
}

/// A choice among fixed names, compared as Gunicorn does for the setting.
pub fn choice(v: &Input, allowed: &[&str], what: &str, lowercase: bool) -> Validated<String> {
    let s = string(v)?;
    let s = if lowercase { s.to_ascii_lowercase() } else { s };
    if allowed.contains(&s.as_str()) {
        Ok(s)
    } else {
        Err(format!("Invalid {what}: {s} (valid: {})", allowed.join(", ")))
    }
}

/// `validate_chdir`: made absolute against the current directory; must exist.
pub fn chdir(v: &Input) -> Validated<String> {
    let s = string(v)?;
    let cwd = std::env::current_dir().map_err(|e| format!("can't read the current directory: {e}"))?;
    let path = normalize(&cwd.join(&s));
    if !path.exists() {
        return Err(format!("can't chdir to '{s}'"));
    }
    Ok(path.to_string_lossy().into_owned())
}

/// `os.path.normpath` for an absolute path: drops "." and resolves "..".
fn normalize(p: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A hook or other callable from a config file; `arity` as Gunicorn's
/// `validate_callable` (None: any). Strings name `module.object`.
pub fn callable(py: Python<'_>, v: &Input, arity: Option<usize>) -> Validated<Option<Py<PyAny>>> {
    let obj = match v {
        Input::None => return Ok(None),
        Input::Object { obj, .. } => obj.bind(py).clone(),
        Input::Str(s) => {
            let (module, name) = s
                .rsplit_once('.')
                .ok_or_else(|| format!("Value '{s}' is not import string. Format: module[.submodules...].object"))?;
            let m = py.import(module).map_err(|e| e.to_string())?;
            m.getattr(name).map_err(|_| format!("Can not load '{name}' from '{module}'"))?
        }
        other => return Err(format!("Value is not callable: {}", other.describe())),
    };
    if !obj.is_callable() {
        return Err(format!("Value is not callable: {obj}"));
    }
    if let Some(n) = arity {
        let got = arity_of(&obj).map_err(|e| e.to_string())?;
        if got != n {
            return Err(format!("Value must have an arity of: {n}"));
        }
    }
    Ok(Some(obj.unbind()))
}

/// `util.get_arity`: the number of positional-or-keyword parameters.
pub fn arity_of(f: &Bound<'_, PyAny>) -> PyResult<usize> {
    let inspect = f.py().import("inspect")?;
    let sig = inspect.call_method1("signature", (f,))?;
    let kind = inspect.getattr("Parameter")?.getattr("POSITIONAL_OR_KEYWORD")?;
    let mut n = 0;
    for p in sig.getattr("parameters")?.call_method0("values")?.try_iter()? {
        if p?.getattr("kind")?.eq(&kind)? {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int0(text: &str) -> Result<i64, IntError> {
        crate::python::with_python(|py| python_int(py, text, 0))
    }

    #[test]
    fn python_int_base_zero() {
        assert_eq!(int0("42"), Ok(42));
        assert_eq!(int0(" 0x1F "), Ok(31));
        assert_eq!(int0("0o17"), Ok(15));
        assert_eq!(int0("0b101"), Ok(5));
        assert_eq!(int0("1_000"), Ok(1000));
        assert_eq!(int0("0x_ff"), Ok(255));
        assert_eq!(int0("-3"), Ok(-3));
        assert_eq!(int0("0"), Ok(0));
        assert_eq!(int0("000"), Ok(0));
        // Python reads any Unicode decimal digit, and Unicode whitespace.
        assert_eq!(int0("\u{0663}\u{2003}"), Ok(3));
        assert_eq!(int0("010"), Err(IntError::Invalid("invalid literal for int() with base 0: '010'".into())));
        assert_eq!(int0("it's"), Err(IntError::Invalid(r#"invalid literal for int() with base 0: "it's""#.into())));
        assert!(int0("1__0").is_err());
        assert!(int0("abc").is_err());
        assert!(int0("").is_err());
        let big = IntError::OutOfRange { negative: false, text: "18446744073709551616".into() };
        assert_eq!(int0("0x1_0000_0000_0000_0000"), Err(big));
        crate::python::with_python(|py| {
            assert_eq!(python_int(py, "0x10", 16), Ok(16));
            assert_eq!(python_int(py, " +7 ", 10), Ok(7));
        });
    }

    #[test]
    fn pos_int_rules() {
        crate::python::with_python(|py| {
            assert_eq!(pos_int(py, &Input::Str("30".into())), Ok(30));
            assert_eq!(pos_int(py, &Input::Int(5)), Ok(5));
            assert_eq!(pos_int(py, &Input::Bool(true)), Ok(1));
            assert_eq!(pos_int(py, &Input::Str("-1".into())), Err("Value must be positive: -1".into()));
            assert_eq!(
                pos_int(py, &Input::Str("-1".repeat(12))),
                Err("invalid literal for int() with base 0: '-1-1-1-1-1-1-1-1-1-1-1-1'".into())
            );
            assert_eq!(
                pos_int(py, &Input::Str("-99999999999999999999".into())),
                Err("Value must be positive: -99999999999999999999".into())
            );
        });
    }

    #[test]
    fn auto_int_reads_shell_octal() {
        crate::python::with_python(|py| {
            assert_eq!(auto_int(py, &Input::Str("022".into())), Ok(0o22));
            assert_eq!(auto_int(py, &Input::Str("0o600".into())), Ok(0o600));
            assert_eq!(auto_int(py, &Input::Str("18".into())), Ok(18));
            assert_eq!(auto_int(py, &Input::Int(0o77)), Ok(0o77));
            assert_eq!(auto_int(py, &Input::Str("x".into())), Err("invalid auto_int value: 'x'".into()));
        });
    }

    #[test]
    fn booleans() {
        assert_eq!(boolean(&Input::Str(" True ".into())), Ok(true));
        assert_eq!(boolean(&Input::Str("false".into())), Ok(false));
        assert!(boolean(&Input::Str("yes".into())).is_err());
        assert!(boolean(&Input::Int(1)).is_err());
    }

    #[test]
    fn lists() {
        assert_eq!(comma_list(&Input::Str("a, b,,c".into())), Ok(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(string_list(&Input::Str("x".into())), Ok(vec!["x".into()]));
        assert!(addr_list(&Input::Str("10.0.0.0/8,::1,*".into())).is_ok());
        assert!(addr_list(&Input::Str("192.168.1.1/24".into())).is_err());
        assert!(addr_list(&Input::Str("not-an-ip".into())).is_err());
    }

    #[test]
    fn choices() {
        assert_eq!(choice(&Input::Str("Drop".into()), &["drop", "refuse"], "header_map", true), Ok("drop".into()));
        assert!(choice(&Input::Str("x".into()), &["drop"], "header_map", true).is_err());
    }
}
