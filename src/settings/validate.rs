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
pub fn pos_int(v: &Input) -> Validated<i64> {
    let n = int_value(v)?;
    if n < 0 {
        return Err(format!("Value must be positive: {n}"));
    }
    i64::try_from(n).map_err(|_| format!("Value is too large: {n}"))
}

fn int_value(v: &Input) -> Validated<i128> {
    match v {
        Input::Bool(b) => Ok(i128::from(*b)),
        Input::Int(i) => Ok(*i),
        Input::Str(s) => python_int(s, 0),
        other => Err(format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            other.describe()
        )),
    }
}

/// Python's `int(s, base)` for base 0 (prefix decides) or an explicit base.
pub fn python_int(text: &str, base: u32) -> Validated<i128> {
    let invalid = || format!("invalid literal for int() with base {base}: '{text}'");
    let s = text.trim();
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if base == 0 || base == 16 || base == 8 || base == 2 {
        match lower.get(..2) {
            Some("0x") if base == 0 || base == 16 => (16, &digits[2..]),
            Some("0o") if base == 0 || base == 8 => (8, &digits[2..]),
            Some("0b") if base == 0 || base == 2 => (2, &digits[2..]),
            _ => (if base == 0 { 10 } else { base }, digits),
        }
    } else {
        (base, digits)
    };
    // With a prefix, Python allows one underscore right after it ("0x_ff").
    let body = if radix != 10 || base != 0 { body.strip_prefix('_').unwrap_or(body) } else { body };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return Err(invalid());
    }
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    // Base 0 refuses decimal literals with leading zeros, as Python source does.
    if base == 0 && radix == 10 && clean.len() > 1 && clean.starts_with('0') && clean.chars().any(|c| c != '0') {
        return Err(invalid());
    }
    let magnitude = i128::from_str_radix(&clean, radix).map_err(|_| invalid())?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// The command-line type Gunicorn calls `auto_int` (umask, socket modes):
/// "022" is octal, as it would be in a shell.
pub fn auto_int(v: &Input) -> Validated<i64> {
    match v {
        Input::Str(s) => {
            let t = s.trim();
            let b = t.as_bytes();
            let text = if b.len() >= 2 && b[0] == b'0' && b[1].is_ascii_digit() {
                format!("0o{}", &t[1..])
            } else {
                t.to_owned()
            };
            let n = python_int(&text, 0).map_err(|_| format!("invalid auto_int value: '{s}'"))?;
            i64::try_from(n).map_err(|_| format!("Value is too large: {n}"))
        }
        other => {
            let n = int_value(other)?;
            i64::try_from(n).map_err(|_| format!("Value is too large: {n}"))
        }
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
pub fn addr_list(v: &Input) -> Validated<Vec<String>> {
    let items = comma_list(v)?;
    for item in &items {
        if item != "*" {
            crate::http::policy::AllowList::parse(std::slice::from_ref(item))?;
        }
    }
    Ok(items)
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

    #[test]
    fn python_int_base_zero() {
        assert_eq!(python_int("42", 0), Ok(42));
        assert_eq!(python_int(" 0x1F ", 0), Ok(31));
        assert_eq!(python_int("0o17", 0), Ok(15));
        assert_eq!(python_int("0b101", 0), Ok(5));
        assert_eq!(python_int("1_000", 0), Ok(1000));
        assert_eq!(python_int("-3", 0), Ok(-3));
        assert_eq!(python_int("0", 0), Ok(0));
        assert_eq!(python_int("000", 0), Ok(0));
        assert!(python_int("010", 0).is_err());
        assert!(python_int("1__0", 0).is_err());
        assert!(python_int("abc", 0).is_err());
        assert!(python_int("", 0).is_err());
    }

    #[test]
    fn pos_int_rules() {
        assert_eq!(pos_int(&Input::Str("30".into())), Ok(30));
        assert_eq!(pos_int(&Input::Int(5)), Ok(5));
        assert_eq!(pos_int(&Input::Bool(true)), Ok(1));
        assert_eq!(pos_int(&Input::Str("-1".into())), Err("Value must be positive: -1".into()));
    }

    #[test]
    fn auto_int_reads_shell_octal() {
        assert_eq!(auto_int(&Input::Str("022".into())), Ok(0o22));
        assert_eq!(auto_int(&Input::Str("0o600".into())), Ok(0o600));
        assert_eq!(auto_int(&Input::Str("18".into())), Ok(18));
        assert_eq!(auto_int(&Input::Int(0o77)), Ok(0o77));
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
