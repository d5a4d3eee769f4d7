//! Addresses as Gunicorn's `util.parse_address` reads them: `--bind`,
//! `--statsd-host` (`log/statsd.rs`), and Python code, which calls
//! [`parse_address`] (`_ferrocorn.parse_address`, behind
//! `ferrocorn._hooks._parse_address` and `cfg.address`). Splitting the text
//! is done here once; numbers are read by Python's `int()`, as there.

use crate::settings::validate::python_int;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString, PyTuple};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSpec {
    Tcp { host: String, port: u16 },
    Unix(String),
    Fd(i32),
}

/// `--bind`'s default port.
const DEFAULT_PORT: &str = "8000";

/// What `util.parse_address` finds in a netloc, before it reads numbers
/// (and before it lowercases the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parts<'a> {
    Unix(&'a str),
    Fd(&'a str),
    /// `port` is `None` where Gunicorn takes the default port.
    Tcp {
        host: &'a str,
        port: Option<&'a str>,
    },
}

/// `util.parse_address`'s string operations, one for one.
pub(crate) fn parts(netloc: &str) -> Parts<'_> {
    if netloc.starts_with("unix:") {
        // `re.split(r'unix:(//)?', netloc)[-1]`: what follows the last
        // "unix:", less a "//" right after it.
        let last = netloc.rfind("unix:").map_or(netloc, |at| &netloc[at + "unix:".len()..]);
        return Parts::Unix(last.strip_prefix("//").unwrap_or(last));
    }
    if let Some(fd) = netloc.strip_prefix("fd://") {
        return Parts::Fd(fd);
    }
    // `netloc.split("tcp://")[1]`: up to a second "tcp://", if any.
    let netloc = match netloc.strip_prefix("tcp://") {
        Some(rest) => rest.split("tcp://").next().unwrap_or(rest),
        None => netloc,
    };
    if netloc.contains('[') && netloc.contains(']') {
        // `netloc.split(']')[0][1:]` and `(netloc.split(']:') + [default])[1]`.
        let host = netloc.split(']').next().map_or("", drop_first_char);
        Parts::Tcp { host, port: netloc.split("]:").nth(1) }
    } else if netloc.contains(':') {
        // `(netloc.split(':') + [default])[:2]`
        let mut pieces = netloc.split(':');
        Parts::Tcp { host: pieces.next().unwrap_or(""), port: pieces.next() }
    } else if netloc.is_empty() {
        Parts::Tcp { host: "0.0.0.0", port: None }
    } else {
        Parts::Tcp { host: netloc, port: None }
    }
}

/// Python's `s[1:]`: the text after its first character, if any.
pub(crate) fn drop_first_char(s: &str) -> &str {
    let mut chars = s.chars();
    chars.next();
    chars.as_str()
}

/// Python's `s.lower()` (its Unicode rules, not Rust's).
pub(crate) fn lower(py: Python<'_>, s: &str) -> String {
    let lowered = PyString::new(py, s).call_method0("lower").and_then(|l| l.extract::<String>());
    lowered.unwrap_or_else(|_| s.to_lowercase())
}

/// Gunicorn's errors quote the text with `%r`.
fn not_a_port(shown: &str) -> String {
    format!("{shown} is not a valid port number.")
}

fn not_an_fd(shown: &str) -> String {
    format!("{shown} is not a valid file descriptor.")
}

impl BindSpec {
    /// A bind address ferrocorn can listen on. Gunicorn reads the same
    /// text; a port or fd that `int()` reads but no socket takes (70000)
    /// is refused here, where Gunicorn fails later when it binds.
    pub fn parse(py: Python<'_>, netloc: &str) -> Result<BindSpec, String> {
        let shown = |text: &str| crate::python::str_repr(py, text);
        Ok(match parts(netloc) {
            Parts::Unix(path) => BindSpec::Unix(path.to_owned()),
            Parts::Fd(text) => {
                let fd = python_int(py, text, 10).ok().and_then(|n| i32::try_from(n).ok());
                BindSpec::Fd(fd.ok_or_else(|| not_an_fd(&shown(text)))?)
            }
            Parts::Tcp { host, port } => {
                let text = port.unwrap_or(DEFAULT_PORT);
                let port = python_int(py, text, 10).ok().and_then(|n| u16::try_from(n).ok());
                BindSpec::Tcp { host: lower(py, host), port: port.ok_or_else(|| not_a_port(&shown(text)))? }
            }
        })
    }
}

/// `gunicorn.util.parse_address(netloc, default_port='8000')` for Python
/// code: a Unix socket path (str), a file descriptor (int) or
/// `(host, port)`, with the numbers as Python's `int()` reads them (no
/// range check) and Gunicorn's RuntimeError when it cannot.
#[pyfunction]
#[pyo3(signature = (netloc, default_port = None))]
pub fn parse_address<'py>(
    py: Python<'py>,
    netloc: &str,
    default_port: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    match parts(netloc) {
        Parts::Unix(path) => Ok(PyString::new(py, path).into_any()),
        // Gunicorn raises this one `from None`: no chained ValueError.
        Parts::Fd(text) => int_or(py, PyString::new(py, text).as_any(), not_an_fd, false),
        Parts::Tcp { host, port } => {
            let port = match (port, default_port) {
                (Some(text), _) => PyString::new(py, text).into_any(),
                (None, Some(default)) => default,
                (None, None) => PyString::new(py, DEFAULT_PORT).into_any(),
            };
            let port = int_or(py, &port, not_a_port, true)?;
            Ok(PyTuple::new(py, [PyString::new(py, host).call_method0("lower")?, port])?.into_any())
        }
    }
}

/// `int(value)`, its ValueError turned into Gunicorn's RuntimeError
/// (chained to it when Gunicorn's is); other errors escape, as there.
fn int_or<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    message: fn(&str) -> String,
    chained: bool,
) -> PyResult<Bound<'py, PyAny>> {
    match py.get_type::<PyInt>().call1((value,)) {
        Ok(n) => Ok(n),
        Err(e) if e.is_instance_of::<PyValueError>(py) => {
            let refused = PyRuntimeError::new_err(message(&value.repr()?.to_string()));
            Err(if chained { crate::python::raised_while_handling(py, refused, &e) } else { refused })
        }
        Err(e) => Err(e),
    }
}

impl fmt::Display for BindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindSpec::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindSpec::Tcp { host, port } => write!(f, "{host}:{port}"),
            BindSpec::Unix(path) => write!(f, "unix:{path}"),
            BindSpec::Fd(fd) => write!(f, "fd://{fd}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> BindSpec {
        BindSpec::Tcp { host: host.into(), port }
    }

    fn parse(netloc: &str) -> Result<BindSpec, String> {
        crate::python::with_python(|py| BindSpec::parse(py, netloc))
    }

    #[test]
    fn gunicorn_address_forms() {
        assert_eq!(parse("127.0.0.1:8000"), Ok(tcp("127.0.0.1", 8000)));
        assert_eq!(parse("LocalHost:80"), Ok(tcp("localhost", 80)));
        assert_eq!(parse("example.org"), Ok(tcp("example.org", 8000)));
        assert_eq!(parse(""), Ok(tcp("0.0.0.0", 8000)));
        assert_eq!(parse("[::1]:9000"), Ok(tcp("::1", 9000)));
        assert_eq!(parse("[::]"), Ok(tcp("::", 8000)));
        assert_eq!(parse("tcp://0.0.0.0:5000"), Ok(tcp("0.0.0.0", 5000)));
        assert_eq!(parse("unix:/tmp/a.sock"), Ok(BindSpec::Unix("/tmp/a.sock".into())));
        assert_eq!(parse("unix:///tmp/a.sock"), Ok(BindSpec::Unix("/tmp/a.sock".into())));
        assert_eq!(parse("fd://3"), Ok(BindSpec::Fd(3)));
        // Python's int() and str.lower(), and its string splitting.
        assert_eq!(parse("h: 8_0 "), Ok(tcp("h", 80)));
        assert_eq!(parse("fd://+4"), Ok(BindSpec::Fd(4)));
        assert_eq!(parse("unix:/a/unix://b"), Ok(BindSpec::Unix("b".into())));
        assert_eq!(parse("x[::1]:81"), Ok(tcp("[::1", 81)));
        assert_eq!(parse("h:1:2"), Ok(tcp("h", 1)));
    }

    #[test]
    fn bad_addresses() {
        assert_eq!(parse("fd://x"), Err("'x' is not a valid file descriptor.".into()));
        assert_eq!(parse("host:http"), Err("'http' is not a valid port number.".into()));
        assert_eq!(parse("host:it's"), Err(r#""it's" is not a valid port number."#.into()));
        assert!(parse("host:70000").is_err());
        // an IPv6 address needs brackets, as in Gunicorn
        assert!(parse("::1").is_err());
    }
}
