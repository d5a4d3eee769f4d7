//! Glue with the Python runtime that is not part of a protocol bridge:
//! forking with Python's at-fork hooks, formatting tracebacks, importing the
//! application (Gunicorn's `util.import_app`).

use pyo3::exceptions::{PyAttributeError, PyException, PyImportError, PySyntaxError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use std::path::Path;

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

/// Sets a variable in `os.environ` (and so in the process environment),
/// for Python code here and every child.
pub fn set_env(py: Python<'_>, name: &str, value: &str) {
    let set = py.import("os").and_then(|os| os.getattr("environ")).and_then(|env| env.set_item(name, value));
    if let Err(e) = set {
        crate::log::debug!("cannot set {name} in os.environ: {e}");
        std::env::set_var(name, value);
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
    /// The module or factory raised, or Python did while reading APP_MODULE
    /// (Gunicorn lets these escape `import_app`): logged with its traceback.
    Raised(PyErr),
}

impl From<PyErr> for AppLoadError {
    fn from(e: PyErr) -> Self {
        AppLoadError::Raised(e)
    }
}

pyo3::create_exception!(
    _ferrocorn,
    AppImportError,
    PyException,
    "Gunicorn's AppImportError: APP_MODULE names no usable application (a worker exits with status 4)."
);

/// `gunicorn.util.import_app(module)`: the application APP_MODULE names,
/// loaded exactly as a worker loads it (for tools, and for the tests that
/// hold it against Gunicorn's).
#[pyfunction]
pub fn import_app(py: Python<'_>, module: &str) -> PyResult<Py<PyAny>> {
    load_app(py, module).map_err(|e| match e {
        AppLoadError::NotFound(reason) => AppImportError::new_err(reason),
        AppLoadError::Raised(err) => err,
    })
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

/// Gunicorn's `util.import_app`: step for step, with Python doing the
/// work (`importlib`, `ast`, `ast.literal_eval`), so every APP_MODULE it
/// takes works and every one it refuses fails with its message.
pub fn load_app(py: Python<'_>, uri: &str) -> Result<Py<PyAny>, AppLoadError> {
    let (module, object) = uri.split_once(':').unwrap_or((uri, "application"));
    // Gunicorn imports the module before it looks at the object part, so
    // an import error wins over a malformed object.
    let m = import_module(py, module, object)?;
    let AppObject { name, call } = parse_object(py, object)?;
    let found = match m.getattr(&name) {
        Ok(found) => found,
        Err(e) if e.is_instance_of::<PyAttributeError>(py) => {
            print_if_root_debug(py, &e);
            return Err(AppLoadError::NotFound(format!(
                "Failed to find attribute {} in {}.",
                repr(name.as_any()),
                str_repr(py, module)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let app = match call {
        None => found,
        Some((args, kwargs)) => match found.call(args, Some(&kwargs)) {
            Ok(app) => app,
            // Bad arguments to the factory get Python's message without a
            // traceback; a TypeError from inside it keeps its traceback.
            Err(e) if e.is_instance_of::<PyTypeError>(py) => match called_with_wrong_args(py, &found, &e) {
                Ok(true) => return Err(AppLoadError::NotFound(type_error_line(py, &e))),
                Ok(false) => return Err(e.into()),
                Err(lookup) => return Err(raised_while_handling(py, lookup, &e).into()),
            },
            Err(e) => return Err(e.into()),
        },
    };
    if app.is_none() {
        return Err(AppLoadError::NotFound(format!("Failed to find application object: {}", str_repr(py, object))));
    }
    if !app.is_callable() {
        return Err(AppLoadError::NotFound("Application object must be callable.".into()));
    }
    Ok(app.unbind())
}

/// `importlib.import_module(module)`; an ImportError for a module named
/// like a file that exists gets Gunicorn's hint.
fn import_module<'py>(py: Python<'py>, module: &str, object: &str) -> Result<Bound<'py, PyAny>, AppLoadError> {
    match py.import("importlib")?.call_method1("import_module", (module,)) {
        Ok(m) => Ok(m),
        Err(e) if e.is_instance_of::<PyImportError>(py) && module.ends_with(".py") && Path::new(module).exists() => {
            let stem = module.rsplit_once('.').map_or(module, |(stem, _)| stem);
            let hint = PyImportError::new_err(format!("Failed to find application, did you mean '{stem}:{object}'?"));
            Err(raised_while_handling(py, hint, &e).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The object part of APP_MODULE, as Gunicorn reads it.
struct AppObject<'py> {
    /// The module attribute to take (an identifier, as Python normalized it).
    name: Bound<'py, PyString>,
    /// For `name(...)`: the arguments to call it with.
    call: Option<(Bound<'py, PyTuple>, Bound<'py, PyDict>)>,
}

/// `ast.parse(object, mode="eval")`, which must give a name or a call of a
/// plain name whose arguments `ast.literal_eval` accepts. Only the errors
/// Gunicorn catches (SyntaxError from the parse, ValueError from
/// literal_eval) become its messages; anything else Python raises (the
/// TypeError of an unhashable set member or dict key) escapes, as there.
fn parse_object<'py>(py: Python<'py>, object: &str) -> Result<AppObject<'py>, AppLoadError> {
    let refused = |why: Refusal| AppLoadError::NotFound(why.message(py, object));
    let ast = py.import("ast")?;
    let mode = PyDict::new(py);
    mode.set_item("mode", "eval")?;
    let expression = match ast.call_method("parse", (object,), Some(&mode)) {
        Ok(tree) => tree.getattr("body")?,
        Err(e) if e.is_instance_of::<PySyntaxError>(py) => return Err(refused(Refusal::NameOrCall)),
        Err(e) => return Err(e.into()),
    };
    let is = |node: &Bound<'py, PyAny>, class: &str| -> PyResult<bool> { node.is_instance(&ast.getattr(class)?) };
    if is(&expression, "Name")? {
        return Ok(AppObject { name: identifier(&expression)?, call: None });
    }
    if !is(&expression, "Call")? {
        return Err(refused(Refusal::NameOrCall));
    }
    let func = expression.getattr("func")?;
    if !is(&func, "Name")? {
        return Err(refused(Refusal::SimpleName));
    }
    let literal = |node: Bound<'py, PyAny>| match ast.call_method1("literal_eval", (node,)) {
        Ok(value) => Ok(value),
        Err(e) if e.is_instance_of::<PyValueError>(py) => Err(refused(Refusal::Literal)),
        Err(e) => Err(AppLoadError::Raised(e)),
    };
    // Positional arguments first, then keyword values, each in order, as
    // Gunicorn evaluates them. `**x` has no name: its value goes under the
    // key None, and the call then fails ("keywords must be strings").
    let mut args = Vec::new();
    for arg in expression.getattr("args")?.try_iter()? {
        args.push(literal(arg?)?);
    }
    let kwargs = PyDict::new(py);
    for keyword in expression.getattr("keywords")?.try_iter()? {
        let keyword = keyword?;
        kwargs.set_item(keyword.getattr("arg")?, literal(keyword.getattr("value")?)?)?;
    }
    Ok(AppObject { name: identifier(&func)?, call: Some((PyTuple::new(py, args)?, kwargs)) })
}

/// The `id` of an `ast.Name`, always a str.
fn identifier<'py>(name: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    Ok(name.getattr("id")?.cast_into::<PyString>()?)
}

/// Why Gunicorn refuses the object part of APP_MODULE: what it is not.
enum Refusal {
    /// A SyntaxError, or an expression that is neither a name nor a call
    /// (`obj.attr` among them).
    NameOrCall,
    /// A call of something other than a plain name (`a.b()`).
    SimpleName,
    /// An argument `ast.literal_eval` refuses with ValueError.
    Literal,
}

impl Refusal {
    /// Gunicorn's AppImportError text, quoting the object part with `%r`.
    fn message(&self, py: Python<'_>, object: &str) -> String {
        let shown = str_repr(py, object);
        match self {
            Refusal::NameOrCall => format!("Failed to parse {shown} as an attribute name or function call."),
            Refusal::SimpleName => format!("Function reference must be a simple name: {shown}"),
            Refusal::Literal => format!("Failed to parse arguments as literal values: {shown}"),
        }
    }
}

/// Gunicorn's `_called_with_wrong_args(f)`: the TypeError did not come
/// from inside the factory (no frame of its code in the traceback). Like
/// Gunicorn's, it reads `f.__code__` whatever the traceback, so a factory
/// without one (a class) fails with AttributeError.
fn called_with_wrong_args(py: Python<'_>, factory: &Bound<'_, PyAny>, e: &PyErr) -> PyResult<bool> {
    let code = factory.getattr("__code__")?;
    let mut tb = e.traceback(py).map(Bound::into_any);
    while let Some(entry) = tb {
        if entry.getattr("tb_frame")?.getattr("f_code")?.is(&code) {
            return Ok(false);
        }
        tb = Some(entry.getattr("tb_next")?).filter(|next| !next.is_none());
    }
    Ok(true)
}

/// `"".join(traceback.format_exception_only(TypeError, e)).strip()`.
fn type_error_line(py: Python<'_>, e: &PyErr) -> String {
    let line = || -> PyResult<String> {
        let lines = py
            .import("traceback")?
            .call_method1("format_exception_only", (py.get_type::<PyTypeError>(), e.value(py)))?;
        PyString::new(py, "").call_method1("join", (lines,))?.call_method0("strip")?.extract()
    };
    line().unwrap_or_else(|_| format!("TypeError: {}", exception_text(py, e)))
}

/// `new`, raised in an `except` block handling `handled`: Python chains
/// the two (`__context__`), and the traceback shows both.
pub(crate) fn raised_while_handling(py: Python<'_>, new: PyErr, handled: &PyErr) -> PyErr {
    // Only an exception that refuses attributes could fail this; it would
    // then print alone, which loses nothing the reason needs.
    let _ = new.value(py).setattr("__context__", handled.value(py));
    new
}

/// Gunicorn prints the AttributeError's traceback when the root logger is
/// at DEBUG.
fn print_if_root_debug(py: Python<'_>, e: &PyErr) {
    let printed = || -> PyResult<()> {
        let logging = py.import("logging")?;
        if logging.getattr("root")?.getattr("level")?.eq(logging.getattr("DEBUG")?)? {
            let value = e.value(py);
            py.import("traceback")?.call_method1("print_exception", (value.get_type(), value, e.traceback(py)))?;
        }
        Ok(())
    };
    if let Err(failed) = printed() {
        crate::log::debug!("cannot print the traceback: {failed}");
    }
}

/// Python's `repr(obj)` (`%r`), or `str` of the failure.
fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr().map(|r| r.to_string()).unwrap_or_else(|e| e.to_string())
}

/// Python's `repr()` of a str, as `%r` quotes text in messages.
pub fn str_repr(py: Python<'_>, s: &str) -> String {
    repr(PyString::new(py, s).as_any())
}

/// Runs `f` with the interpreter, starting it first: unit tests run in a
/// plain Rust process, where nothing has started it (the extension always
/// runs inside one).
#[cfg(test)]
pub fn with_python<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    Python::initialize();
    Python::attach(f)
}
