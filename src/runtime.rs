//! Applying settings to the running Python process: working directory,
//! import paths, environment variables and log destinations. Done in the
//! master before anything is imported or forked, and again on HUP.

use crate::settings::Settings;
use pyo3::prelude::*;

pub fn apply(py: Python<'_>, settings: &Settings, previous: Option<&Settings>) -> PyResult<()> {
    let os = py.import("os")?;
    let sys_path = py.import("sys")?.getattr("path")?;
    // Gunicorn's Application.chdir(): cd, and make the directory importable.
    os.call_method1("chdir", (&settings.chdir,))?;
    if !sys_path.contains(&settings.chdir)? {
        sys_path.call_method1("insert", (0, &settings.chdir))?;
    }
    if let Some(paths) = &settings.pythonpath {
        for p in paths.split(',') {
            let abs: String = os.getattr("path")?.call_method1("abspath", (p,))?.extract()?;
            if !sys_path.contains(&abs)? {
                sys_path.call_method1("insert", (0, abs))?;
            }
        }
    }
    let environ = os.getattr("environ")?;
    // A reload first undoes the previous -e values, as Gunicorn does.
    if let Some(prev) = previous {
        for (k, _) in env_pairs(&prev.raw_env) {
            if environ.contains(k)? {
                environ.del_item(k)?;
            }
        }
    }
    for (k, v) in env_pairs(&settings.raw_env) {
        environ.set_item(k, v)?;
    }
    environ.set_item("SERVER_SOFTWARE", crate::SERVER_SOFTWARE)?;
    Ok(())
}

fn env_pairs(raw: &[String]) -> impl Iterator<Item = (&str, &str)> {
    raw.iter().filter_map(|e| e.split_once('='))
}

pub fn configure_logs(settings: &Settings) -> Result<(), String> {
    let (level, known) = crate::log::Level::from_name_lenient(&settings.loglevel);
    crate::log::configure(level, &settings.errorlog).map_err(|e| format!("Error log: {e}"))?;
    if !known {
        crate::log::warning!("Unknown log level {:?}, using info", settings.loglevel);
    }
    crate::log::configure_access(settings.accesslog.as_deref()).map_err(|e| format!("Access log: {e}"))?;
    Ok(())
}
