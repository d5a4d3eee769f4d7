//! The `cfg` and `log` objects Python code sees for the configuration in
//! force in this process: hooks get them as `server.cfg`/`server.log`, a
//! logger class is built from `cfg`, and with Python logging the Rust side
//! sends its records to `log`. Rebuilt at start and on every HUP.

use crate::settings::{Settings, SPECS};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use std::sync::RwLock;

struct Objects {
    cfg: Py<PyAny>,
    log: Py<PyAny>,
    /// `log` is a Python logger (not the bridge to the Rust logs).
    python: bool,
}

static CURRENT: RwLock<Option<Objects>> = RwLock::new(None);

/// Whether the configuration routes logging through Python (Gunicorn's
/// glogging): a logger class of its own, or a logging configuration.
pub fn wants_python_logging(py: Python<'_>, s: &Settings) -> bool {
    crate::settings::pyvalue::is_custom_logger(&s.logger_class)
        || s.logconfig.is_some()
        || s.logconfig_json.is_some()
        || !s.logconfig_dict.is_empty_dict(py)
}

/// Builds the `cfg` object for `settings`.
pub fn config_object(py: Python<'_>, settings: &Settings) -> PyResult<Py<PyAny>> {
    let values = settings.to_py_dict(py)?;
    let specs = PyList::empty(py);
    for s in SPECS {
        let cli = PyList::new(py, s.cli)?;
        specs.append(PyTuple::new(
            py,
            [s.name.into_pyobject(py)?.into_any(), s.section.into_pyobject(py)?.into_any(), cli.into_any()],
        )?)?;
    }
    let cls = py.import("ferrocorn._hooks")?.getattr("Config")?;
    Ok(cls.call1((values, specs))?.unbind())
}

/// Makes the objects for `settings` current. With Python logging, the
/// logger class is instantiated here (as Gunicorn's arbiter does), which is
/// where a bad logging configuration is reported.
pub fn install(py: Python<'_>, settings: &Settings) -> Result<(), String> {
    let python_logging = wants_python_logging(py, settings);
    let custom = crate::settings::pyvalue::is_custom_logger(&settings.logger_class);
    let previous = CURRENT
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .filter(|o| o.python && python_logging)
        .map(|o| (o.cfg.clone_ref(py), o.log.clone_ref(py)));
    let built = (|| -> PyResult<Objects> {
        let cfg = config_object(py, settings)?;
        let log = match &previous {
            // On HUP Gunicorn keeps its logger object and sets it up again
            // with the new configuration.
            Some((_, log)) => {
                log.bind(py).call_method1("setup", (cfg.bind(py),))?;
                log.clone_ref(py)
            }
            None => py
                .import("ferrocorn.glogging")?
                .call_method1("create", (cfg.bind(py), python_logging, custom))?
                .unbind(),
        };
        Ok(Objects { cfg, log, python: python_logging })
    })();
    let objects = built.map_err(|e| {
        let text = crate::python::exception_text(py, &e);
        let tb = crate::python::format_exception(py, &e);
        crate::log::debug!("Logger setup failed\n{tb}");
        if let Some((prev_cfg, log)) = &previous {
            // As Gunicorn: the previous working configuration comes back.
            let _ = log.bind(py).call_method1("setup", (prev_cfg.bind(py),));
        }
        text
    })?;
    if python_logging {
        crate::log::python::install(Some(objects.log.clone_ref(py)));
        // Rust skips records the Python logger would drop anyway: with
        // Gunicorn's Logger that is what `gunicorn.error` lets through; a
        // logger class of the user's own decides for itself.
        let level = if custom {
            Ok(0)
        } else {
            py.import("logging")
                .and_then(|l| l.call_method1("getLogger", ("gunicorn.error",)))
                .and_then(|l| l.call_method0("getEffectiveLevel"))
                .and_then(|n| n.extract::<i64>())
        }
        .unwrap_or(20);
        crate::log::set_level(crate::log::Level::from_u8(level.clamp(0, 50) as u8));
    } else {
        crate::log::python::install(None);
    }
    *CURRENT.write().unwrap_or_else(|p| p.into_inner()) = Some(objects);
    Ok(())
}

/// `(cfg, log)` for the configuration in force.
pub fn current(py: Python<'_>) -> Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
    CURRENT.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|o| (o.cfg.bind(py).clone(), o.log.bind(py).clone()))
}
