//! Glue with the Python runtime that is not part of a protocol bridge:
//! forking with Python's at-fork hooks, formatting tracebacks, importing the
//! application (Gunicorn's `util.import_app`).

use crate::app_spec::{self, Literal, Target};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

pub enum Forked {
    Parent(i32),
    Child,
}

/// fork(2) the way `os.fork()` does it, so `os.register_at_fork` hooks run
/// and the interpreter's state (locks, threads) is fixed up in the child.
pub fn fork(_py: Python<'_>) -> std::io::Result<Forked> {
    // SAFETY: called with the GIL held (the `py` token proves it), as the
    // PyOS_*Fork functions require; the master has no other threads.
    unsafe {
        pyo3::ffi::PyOS_BeforeFork();
        let pid = libc::fork();
        if pid == 0 {
            pyo3::ffi::PyOS_AfterFork_Child();
            Ok(Forked::Child)
        } else {
            let err = std::io::Error::last_os_error();
            pyo3::ffi::PyOS_AfterFork_Parent();
            if pid < 0 {
                Err(err)
            } else {
                Ok(Forked::Parent(pid))
            }
        }
    }
}

/// Removes a variable from `os.environ` (which unsets it in the process
/// environment too), so Python code in this process and every child sees
/// it gone; the C environment alone would leave Python's copy behind.
pub fn unset_env(py: Python<'_>, name: &str) {
    let popped =
        py.import("os").and_then(|os| os.getattr("environ")).and_then(|env| env.call_method1("pop", (name, py.None())));
    if let Err(e) = popped {
        crate::log::debug!("cannot remove {name} from os.environ: {e}");
        std::env::remove_var(name);
    }
}

/// The traceback Python would print for `err`.
pub fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = (|| -> PyResult<String> {
        let tb = py.import("traceback")?;
        let value = err.value(py);
        let lines = tb.call_method1("format_exception", (value.get_type(), value, err.traceback(py)))?;
        let parts: Vec<String> = lines.extract()?;
        Ok(parts.concat())
    })();
    formatted.unwrap_or_else(|_| format!("{err}\n"))
}

/// `str(exc)`, or the type name when that fails.
pub fn exception_text(py: Python<'_>, err: &PyErr) -> String {
    err.value(py).str().map(|s| s.to_string()).unwrap_or_else(|_| err.to_string())
}

/// Why the application could not be loaded. Gunicorn tells these apart by
/// the worker's exit status: 4 for an app that cannot be found or built
/// from its spec, 3 for anything the import itself raised.
pub enum AppLoadError {
    /// Gunicorn's AppImportError: a one-line reason, no traceback.
    NotFound(String),
    /// The module or factory raised: logged with its traceback.
    Raised(PyErr),
}

/// The application the settings name: the PasteDeploy app of `--paste`
/// (its `uri` is the ini file, with an optional `#name`), else APP_MODULE.
pub fn load_configured_app(
    py: Python<'_>,
    settings: &crate::settings::Settings,
    uri: &str,
) -> Result<Py<PyAny>, AppLoadError> {
    if settings.paste.is_none() {
        return load_app(py, uri);
    }
    let loaded = (|| -> PyResult<Py<PyAny>> {
        let hooks = py.import("ferrocorn._hooks")?;
        let global_conf = hooks.call_method1("paste_global_conf", (settings.raw_paste_global_conf.clone(),))?;
        Ok(py.import("ferrocorn._paste")?.call_method1("load", (uri, global_conf))?.unbind())
    })();
    loaded.map_err(AppLoadError::Raised)
}

pub fn load_app(py: Python<'_>, uri: &str) -> Result<Py<PyAny>, AppLoadError> {
    // Gunicorn imports the module before it looks at the object part, so
    // an import error wins over a malformed object.
    let (module, object) = app_spec::split(uri);
    let m = match py.import(module) {
        Ok(m) => m,
        Err(e) => {
            if e.is_instance_of::<pyo3::exceptions::PyImportError>(py)
                && module.ends_with(".py")
                && std::path::Path::new(module).exists()
            {
                let stem = module.rsplit_once('.').map(|(a, _)| a).unwrap_or(module);
                return Err(AppLoadError::Raised(pyo3::exceptions::PyImportError::new_err(format!(
                    "Failed to find application, did you mean '{stem}:{object}'?"
                ))));
            }
            return Err(AppLoadError::Raised(e));
        }
    };
    let target = app_spec::parse_target(object).map_err(|e| AppLoadError::NotFound(e.to_string()))?;
    let not_found = |name: &str| {
        AppLoadError::NotFound(format!(
            "Failed to find attribute {} in {}.",
            crate::http::text::py_repr(name),
            crate::http::text::py_repr(module)
        ))
    };
    let app = match &target {
        Target::Attr(path) => {
            let mut obj = m.into_any();
            for name in path {
                obj = obj.getattr(name.as_str()).map_err(|_| not_found(&path.join(".")))?;
            }
            obj
        }
        Target::Call { name, args, kwargs } => {
            let factory = m.getattr(name.as_str()).map_err(|_| not_found(name))?;
            let built = (|| -> PyResult<(Bound<'_, PyTuple>, Bound<'_, PyDict>)> {
                let pos = args.iter().map(|a| to_py(py, a)).collect::<PyResult<Vec<_>>>()?;
                let kw = PyDict::new(py);
                for (k, v) in kwargs {
                    kw.set_item(k, to_py(py, v)?)?;
                }
                Ok((PyTuple::new(py, pos)?, kw))
            })();
            let (pos, kw) = built.map_err(AppLoadError::Raised)?;
            match factory.call(pos, Some(&kw)) {
                Ok(app) => app,
                // Bad arguments to the factory get Python's message without a
                // traceback; a TypeError from inside it keeps its traceback.
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyTypeError>(py) && called_with_wrong_args(py, &e) => {
                    return Err(AppLoadError::NotFound(format!("TypeError: {}", exception_text(py, &e))));
                }
                Err(e) => return Err(AppLoadError::Raised(e)),
            }
        }
    };
    if app.is_none() {
        return Err(AppLoadError::NotFound(format!(
            "Failed to find application object: {}",
            crate::http::text::py_repr(object)
        )));
    }
    if !app.is_callable() {
        return Err(AppLoadError::NotFound("Application object must be callable.".into()));
    }
    Ok(app.unbind())
}

/// Gunicorn's `_called_with_wrong_args`: the TypeError came from calling the
/// factory itself (its traceback stops in our frame), not from inside it.
fn called_with_wrong_args(py: Python<'_>, e: &PyErr) -> bool {
    match e.traceback(py) {
        None => true,
        Some(tb) => tb.getattr("tb_next").map(|n| n.is_none()).unwrap_or(false),
    }
}

fn to_py<'py>(py: Python<'py>, lit: &Literal) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::IntoPyObjectExt;
    Ok(match lit {
        Literal::None => py.None().into_bound(py),
        Literal::Bool(b) => b.into_bound_py_any(py)?,
        Literal::Ellipsis => py.Ellipsis().into_bound(py),
        Literal::BigInt { negative, radix, digits } => {
            let n = py.import("builtins")?.getattr("int")?.call1((digits, *radix))?;
            if *negative {
                n.neg()?
            } else {
                n
            }
        }
        Literal::Int(i) => i.into_bound_py_any(py)?,
        Literal::Float(f) => f.into_bound_py_any(py)?,
        Literal::Str(s) => s.into_bound_py_any(py)?,
        Literal::Bytes(b) => pyo3::types::PyBytes::new(py, b).into_any(),
        Literal::Tuple(items) => {
            PyTuple::new(py, items.iter().map(|i| to_py(py, i)).collect::<PyResult<Vec<_>>>()?)?.into_any()
        }
        Literal::List(items) => {
            PyList::new(py, items.iter().map(|i| to_py(py, i)).collect::<PyResult<Vec<_>>>()?)?.into_any()
        }
        Literal::Set(items) => {
            pyo3::types::PySet::new(py, items.iter().map(|i| to_py(py, i)).collect::<PyResult<Vec<_>>>()?)?.into_any()
        }
        Literal::Dict(pairs) => {
            let d = PyDict::new(py);
            for (k, v) in pairs {
                d.set_item(to_py(py, k)?, to_py(py, v)?)?;
            }
            d.into_any()
        }
    })
}

/// Runs `f` with the interpreter, starting it first: unit tests run in a
/// plain Rust process, where nothing has started it (the extension always
/// runs inside one).
#[cfg(test)]
pub fn with_python<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    Python::initialize();
    Python::attach(f)
}
