//! `-k package.module.Class`: a worker class given as a Python class path
//! that is none of the worker types' names. The master imports it, as
//! Gunicorn does, and asks `ferrocorn/_worker_class.py` what it is:
//!
//! - a subclass of uvicorn's `UvicornWorker` that only sets
//!   `CONFIG_KWARGS`: served by the native asgi worker, its keyword
//!   arguments applied to the settings that do the same (after every other
//!   source, as uvicorn's worker lets them override Gunicorn's settings),
//!   and the ones with no counterpart named in one warning;
//! - another subclass of Gunicorn's `gunicorn.workers.base.Worker`
//!   (aiohttp's `GunicornWebWorker`, a worker that overrides methods): run
//!   in Python under ferrocorn's master (`workers/foreign.rs`);
//! - anything else: refused at start-up, saying why and what can run.

use crate::settings::input::Input;
use crate::settings::Settings;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// A line for the master to log once logging is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub text: String,
}

/// Why a worker class path cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub class: String,
    pub why: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Invalid worker class '{}': {}. Valid worker classes are {} (also by their Gunicorn and uvicorn class \
             paths), and Python subclasses of Gunicorn's gunicorn.workers.base.Worker (a UvicornWorker subclass \
             that only sets CONFIG_KWARGS is served natively)",
            self.class,
            self.why,
            super::kind::available_names().join(", ")
        )
    }
}

impl std::error::Error for Refused {}

/// Looks at `settings.worker_class`; a UvicornWorker subclass becomes the
/// asgi worker with its CONFIG_KWARGS applied. Names of worker types, and
/// names that are not class paths, are left to `WorkerKind::resolve`.
pub fn adopt(py: Python<'_>, settings: &mut Settings) -> Result<Vec<Note>, Refused> {
    let path = settings.worker_class.trim().to_owned();
    if super::kind::is_known_name(&path) || !path.contains('.') || path.contains(char::is_whitespace) {
        return Ok(Vec::new());
    }
    let refused = |why: String| Refused { class: path.clone(), why };
    let described = py
        .import("ferrocorn._worker_class")
        .and_then(|m| m.call_method1("describe", (path.as_str(),)))
        .map_err(|e| refused(crate::python::exception_text(py, &e)))?;
    let (what, detail): (String, Bound<'_, PyAny>) = described.extract().map_err(|e: PyErr| refused(e.to_string()))?;
    if what == "gunicorn" {
        settings.worker_class = format!("{}{path}", super::foreign::PREFIX);
        return Ok(vec![Note {
            warning: false,
            text: format!("Worker class {path} (a Gunicorn worker class) runs in Python under ferrocorn's master"),
        }]);
    }
    if what != "uvicorn" {
        return Err(refused(detail.extract::<String>().unwrap_or_else(|_| "it cannot be served".to_owned())));
    }
    let pair = detail.cast::<PyTuple>().map_err(|e| refused(e.to_string()))?;
    let (pairs, unmapped): (Vec<(String, Bound<'_, PyAny>)>, Vec<String>) =
        pair.extract().map_err(|e: PyErr| refused(e.to_string()))?;
    let mut applied = Vec::new();
    for (name, value) in pairs {
        let input = Input::from_py(&value).map_err(|e| refused(format!("CONFIG_KWARGS for {name}: {e}")))?;
        settings
            .set(py, &name, &input)
            .map_err(|e| refused(format!("its CONFIG_KWARGS give {name} an invalid value: {e}")))?;
        applied.push(format!("{name}={}", input.describe()));
    }
    settings.worker_class = "asgi".to_owned();
    let mut notes = vec![Note {
        warning: false,
        text: format!(
            "Worker class {path} is served by ferrocorn's native asgi worker{}",
            if applied.is_empty() { String::new() } else { format!(" with {}", applied.join(", ")) }
        ),
    }];
    if !unmapped.is_empty() {
        notes.push(Note {
            warning: true,
            text: format!(
                "Worker class {path}: CONFIG_KWARGS with no counterpart in ferrocorn's asgi worker are ignored: {}",
                unmapped.join(", ")
            ),
        });
    }
    Ok(notes)
}
