//! Settings as Python sees them: the value every setting has in Gunicorn's
//! `Config` (`cfg.workers`, `cfg.bind`, ...), for the `cfg` object server
//! hooks and logger classes receive, and the setting types that hold a
//! Python object as it was given (a logging dict, a logger class).

use super::input::Input;
use super::spec::{PyCallable, Show};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::IntoPyObjectExt;

/// The Python value of a setting, as `gunicorn.config.Config.__getattr__`
/// returns it.
pub trait ToPy {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
}

impl ToPy for bool {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.into_bound_py_any(py)
    }
}

impl ToPy for i64 {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.into_bound_py_any(py)
    }
}

impl ToPy for usize {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.into_bound_py_any(py)
    }
}

impl ToPy for u64 {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.into_bound_py_any(py)
    }
}

/// Gunicorn's `cfg` gives whole seconds as ints.
impl ToPy for std::time::Duration {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.as_secs().into_bound_py_any(py)
    }
}

impl ToPy for crate::net::proxy_protocol::ProxyMode {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.name().into_bound_py_any(py)
    }
}

impl ToPy for crate::http::policy::HeaderMapPolicy {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.name().into_bound_py_any(py)
    }
}

impl ToPy for super::spec::AddrList {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.items.to_py(py)
    }
}

impl ToPy for String {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.into_bound_py_any(py)
    }
}

impl ToPy for Option<String> {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Some(s) => s.into_bound_py_any(py),
            None => Ok(py.None().into_bound(py)),
        }
    }
}

impl ToPy for Vec<String> {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyList::new(py, self)?.into_any())
    }
}

impl ToPy for Vec<(String, String)> {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let d = PyDict::new(py);
        for (k, v) in self {
            d.set_item(k, v)?;
        }
        Ok(d.into_any())
    }
}

impl ToPy for PyCallable {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match &self.0 {
            Some(f) => f.bind(py).clone(),
            None => py.None().into_bound(py),
        })
    }
}

/// A setting that keeps the Python object it was given (`logconfig_dict`),
/// with the text `--print-config` shows for it.
#[derive(Debug)]
pub struct PyValue {
    pub obj: Py<PyAny>,
    pub text: String,
}

impl PyValue {
    /// `validate_dict`: a dict, rebuilt as a Python dict from any source.
    pub fn dict(py: Python<'_>, i: &Input) -> Result<PyValue, String> {
        match i {
            Input::Dict(_) => {
                let obj = i.to_py(py).map_err(|e| e.to_string())?;
                Ok(PyValue { obj: obj.unbind(), text: i.describe() })
            }
            other => Err(format!("Value is not a dictionary: {} ", other.describe())),
        }
    }

    pub fn is_empty_dict(&self, py: Python<'_>) -> bool {
        self.obj.bind(py).cast::<PyDict>().map(|d| d.is_empty()).unwrap_or(false)
    }
}

impl Show for PyValue {
    fn show(&self) -> String {
        self.text.clone()
    }
}

impl ToPy for PyValue {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.obj.bind(py).clone())
    }
}

/// `validate_class`: a dotted name, or (from a config file) the class itself.
#[derive(Debug)]
pub struct ClassRef {
    pub name: String,
    pub obj: Option<Py<PyAny>>,
}

impl ClassRef {
    pub fn validate(py: Python<'_>, i: &Input) -> Result<ClassRef, String> {
        match i {
            Input::Object { obj, repr } => {
                let b = obj.bind(py);
                let inspect = py.import("inspect").map_err(|e| e.to_string())?;
                let is = |f: &str| inspect.call_method1(f, (b,)).and_then(|r| r.is_truthy()).unwrap_or(false);
                // Gunicorn calls a function or method to get the class.
                let class =
                    if is("isfunction") || is("ismethod") { b.call0().map_err(|e| e.to_string())? } else { b.clone() };
                let inspect_class = inspect.call_method1("isclass", (&class,)).and_then(|r| r.is_truthy());
                if !inspect_class.unwrap_or(false) {
                    return Err(format!("Not a string: {repr}"));
                }
                let name = class.str().map(|s| s.to_string()).unwrap_or_else(|_| repr.clone());
                Ok(ClassRef { name, obj: Some(class.unbind()) })
            }
            other => Ok(ClassRef { name: super::validate::string(other)?, obj: None }),
        }
    }
}

/// A `--logger-class` other than the names of Gunicorn's own loggers
/// (which ferrocorn provides itself).
pub fn is_custom_logger(class: &ClassRef) -> bool {
    class.obj.is_some()
        || !matches!(
            class.name.as_str(),
            "gunicorn.glogging.Logger"
                | "simple"
                | "gunicorn.instrument.statsd.Statsd"
                | "glogging.Logger"
                | "ferrocorn.glogging.Logger"
        )
}

impl Show for ClassRef {
    fn show(&self) -> String {
        self.name.clone()
    }
}

impl ToPy for ClassRef {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.obj {
            Some(c) => Ok(c.bind(py).clone()),
            None => self.name.as_str().into_bound_py_any(py),
        }
    }
}

impl Input {
    /// The Python object a config file would have given for this value.
    pub fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            Input::None => py.None().into_bound(py),
            Input::Bool(b) => b.into_bound_py_any(py)?,
            Input::Int(i) => i.into_bound_py_any(py)?,
            Input::Float(f) => f.into_bound_py_any(py)?,
            Input::Str(s) => s.into_bound_py_any(py)?,
            Input::List(items) => {
                PyList::new(py, items.iter().map(|i| i.to_py(py)).collect::<PyResult<Vec<_>>>()?)?.into_any()
            }
            Input::Dict(items) => {
                let d = PyDict::new(py);
                for (k, v) in items {
                    d.set_item(k.to_py(py)?, v.to_py(py)?)?;
                }
                d.into_any()
            }
            Input::Object { obj, .. } => obj.bind(py).clone(),
        })
    }
}

/// A `(host, port)` pair as Python shows and passes it.
pub fn host_port<'py>(py: Python<'py>, host: &str, port: u16) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyTuple::new(py, [host.into_bound_py_any(py)?, port.into_bound_py_any(py)?])?.into_any())
}
