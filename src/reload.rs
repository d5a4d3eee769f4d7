//! `--reload` in a worker (Gunicorn's `Worker.init_process` and
//! `load_wsgi`): a watcher thread (`ferrocorn/_reloader.py`) that stops the
//! worker when a watched file changes, so the master starts a fresh one;
//! and an application with a syntax error served as a 500 page showing the
//! traceback instead of failing the boot, so an edit in progress never
//! sends the server into a crash loop.

use crate::python::AppLoadError;
use crate::scoreboard::counts::ExitReason;
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use pyo3::prelude::*;

/// The watcher, made before the application is imported and started after.
pub struct Watcher(Option<Py<PyAny>>);

impl Watcher {
    pub fn new(py: Python<'_>, settings: &Settings, slot: SlotHandle) -> PyResult<Watcher> {
        if !settings.reload {
            return Ok(Watcher(None));
        }
        crate::log::warning!("Reloader is on. Use in development only!");
        let callback = Bound::new(py, FileChanged { slot })?;
        let watcher = py
            .import("ferrocorn._reloader")?
            .call_method1("create", (settings.reload_engine.as_str(), settings.reload_extra_files.clone(), callback))?;
        Ok(Watcher(Some(watcher.unbind())))
    }

    pub fn start(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(w) = &self.0 {
            w.bind(py).call_method0("start")?;
        }
        Ok(())
    }

    fn watch(&self, py: Python<'_>, file: &str) {
        if let Some(w) = &self.0 {
            let _ = w.bind(py).call_method1("add_extra_file", (file,));
        }
    }
}

/// The watcher's callback, holding the worker's scoreboard slot so the
/// master can count the restart as a reload.
#[pyclass(module = "ferrocorn._ferrocorn")]
struct FileChanged {
    slot: SlotHandle,
}

#[pymethods]
impl FileChanged {
    /// Called from the watcher thread: Gunicorn logs, calls `worker_int`,
    /// and stops the worker after its current request; the TERM it sends
    /// itself does that the same way for every worker type.
    fn __call__(&self, py: Python<'_>, filename: &str) -> PyResult<()> {
        crate::log::info!("Worker reloading: {filename} modified");
        self.slot.set_exit_reason(ExitReason::Reload);
        crate::workers::core::signals::stop();
        crate::hooks::worker_int(py)?;
        // SAFETY: kill(2) on our own pid.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        Ok(())
    }
}

/// The application the worker serves: the PasteDeploy app for `--paste`,
/// else APP_MODULE; under `--reload` a SyntaxError becomes the fail app
/// (an ASGI one for the asgi worker).
pub fn load_app(
    py: Python<'_>,
    settings: &Settings,
    uri: &str,
    watcher: &Watcher,
    asgi: bool,
) -> Result<Py<PyAny>, AppLoadError> {
    match crate::python::load_configured_app(py, settings, uri) {
        Err(AppLoadError::Raised(err))
            if settings.reload && err.is_instance_of::<pyo3::exceptions::PySyntaxError>(py) =>
        {
            let tb = crate::python::format_exception(py, &err);
            crate::log::exception!("{}\n{tb}", crate::python::exception_text(py, &err));
            if let Ok(Some(file)) = err.value(py).getattr("filename").and_then(|f| f.extract::<Option<String>>()) {
                watcher.watch(py, &file);
            }
            let fail = match asgi {
                true => ("fail_asgi_app", crate::python::exception_text(py, &err)),
                false => ("fail_app", tb),
            };
            py.import("ferrocorn._reloader")
                .and_then(|m| m.call_method1(fail.0, (fail.1,)))
                .map(Bound::unbind)
                .map_err(AppLoadError::Raised)
        }
        other => other,
    }
}
