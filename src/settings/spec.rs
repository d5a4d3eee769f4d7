//! What the settings table says about one setting, and the small value
//! types it uses. The rows themselves are in `table.rs`.

use pyo3::prelude::*;

/// How the command line gives a value (Gunicorn's argparse `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `--flag VALUE`.
    Store,
    /// `--flag VALUE` read by Python's `int()` on the command line, as
    /// Gunicorn's argparse `type=int`: a value it cannot read is a usage
    /// error (exit status 2) before the setting's own validation.
    Int,
    /// The same with Gunicorn's `auto_int` (`0o17`, `0x1f`, and `017` as
    /// octal), for modes and masks.
    AutoInt,
    /// `--flag` alone sets True.
    StoreTrue,
    /// `--flag` alone sets False (Gunicorn's `store_const` for `--no-sendfile`).
    StoreFalse,
    /// Repeatable; every occurrence is collected into a list.
    Append,
    /// `--flag [VALUE]`: the value is optional and defaults to the given one.
    OptionalValue(&'static str),
}

/// Whether ferrocorn does what Gunicorn does with a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Yes,
    /// Recognised, but a value other than the default is refused at start-up
    /// naming the feature that will bring it.
    NotYet(&'static str),
    /// Accepted and validated, with no effect because ferrocorn does not need
    /// it; the reason is printed in the docs.
    Unneeded(&'static str),
}

/// Where a setting comes from: Gunicorn 27's list, or a ferrocorn extension
/// (which Gunicorn does not know: a config file shared with Gunicorn may
/// carry it, since Gunicorn ignores names it does not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Gunicorn,
    Ferrocorn,
}

#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub section: &'static str,
    pub cli: &'static [&'static str],
    pub meta: Option<&'static str>,
    pub action: Action,
    /// The default as Gunicorn's docs and `--help` show it.
    pub doc_default: &'static str,
    pub support: Support,
    pub origin: Origin,
    pub help: &'static str,
}

/// A hook or other Python callable from a config file.
#[derive(Debug, Default)]
pub struct PyCallable(pub Option<Py<PyAny>>);

/// `--statsd-host`: None, or where metrics go.
#[derive(Debug, Default)]
pub struct StatsdHost(pub Option<crate::log::statsd::StatsdAddr>);

impl Show for StatsdHost {
    fn show(&self) -> String {
        self.0.as_ref().map_or_else(|| "None".to_owned(), |a| a.to_string())
    }
}

impl super::pyvalue::ToPy for StatsdHost {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        use crate::log::statsd::StatsdAddr;
        use pyo3::IntoPyObjectExt;
        match &self.0 {
            None => Ok(py.None().into_bound(py)),
            Some(StatsdAddr::Udp { host, port }) => super::pyvalue::host_port(py, host, *port),
            Some(StatsdAddr::Unix(path)) => path.into_bound_py_any(py),
        }
    }
}

/// How `--print-config` shows a value: like Python's `str()` of Gunicorn's.
pub trait Show {
    fn show(&self) -> String;
}

impl Show for bool {
    fn show(&self) -> String {
        if *self { "True" } else { "False" }.to_owned()
    }
}

impl Show for i64 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for usize {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for u64 {
    fn show(&self) -> String {
        self.to_string()
    }
}

/// Settings in whole seconds show as Gunicorn's ints.
impl Show for std::time::Duration {
    fn show(&self) -> String {
        self.as_secs().to_string()
    }
}

impl Show for crate::net::proxy_protocol::ProxyMode {
    fn show(&self) -> String {
        self.name().to_owned()
    }
}

impl Show for crate::http::policy::HeaderMapPolicy {
    fn show(&self) -> String {
        self.name().to_owned()
    }
}

impl Show for AddrList {
    fn show(&self) -> String {
        self.items.show()
    }
}

/// `forwarded_allow_ips`, `proxy_allow_ips`: the entries as given (what
/// `cfg` shows) and the networks they allow, parsed once.
#[derive(Debug, Clone)]
pub struct AddrList {
    pub items: Vec<String>,
    pub allow: crate::http::policy::AllowList,
}

impl Show for String {
    fn show(&self) -> String {
        self.clone()
    }
}

impl Show for Option<String> {
    fn show(&self) -> String {
        self.clone().unwrap_or_else(|| "None".to_owned())
    }
}

impl Show for Vec<String> {
    fn show(&self) -> String {
        let items: Vec<String> = self.iter().map(|s| py_str_repr(s)).collect();
        format!("[{}]", items.join(", "))
    }
}

impl Show for Vec<(String, String)> {
    fn show(&self) -> String {
        let items: Vec<String> = self.iter().map(|(k, v)| format!("{}: {}", py_str_repr(k), py_str_repr(v))).collect();
        format!("{{{}}}", items.join(", "))
    }
}

impl Show for PyCallable {
    fn show(&self) -> String {
        match &self.0 {
            None => "None".to_owned(),
            Some(obj) => Python::attach(|py| {
                let b = obj.bind(py);
                let name =
                    b.getattr("__qualname__").and_then(|n| n.extract::<String>()).unwrap_or_else(|_| b.to_string());
                format!("<{name}()>")
            }),
        }
    }
}

/// Python's `repr()` of a str, for messages and lists that show one.
pub fn py_str_repr(s: &str) -> String {
    crate::http::text::py_repr(s)
}
