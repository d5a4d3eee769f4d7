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

/// Log destinations, syslog, statsd and the Python `logging` side, in
/// Gunicorn's way: with Python logging asked for (a logger class or a
/// logging configuration) the Python logger also owns `--capture-output`
/// and syslog; otherwise Rust does.
pub fn configure_logs(py: Python<'_>, settings: &Settings) -> Result<(), String> {
    let (level, known) = crate::log::Level::from_name_lenient(&settings.loglevel);
    crate::log::configure(level, &settings.errorlog).map_err(|e| format!("Error log: {e}"))?;
    crate::log::set_error_json(settings.error_log_json);
    if !known {
        crate::log::warning!("Unknown log level {:?}, using info", settings.loglevel);
    }
    crate::log::configure_access(settings.accesslog.as_deref()).map_err(|e| format!("Access log: {e}"))?;
    // Gunicorn chowns its log files so workers can reopen them after
    // switching user; a file that cannot be chowned (/dev/null) is fine.
    let (uid, gid) = (settings.user as libc::uid_t, settings.group as libc::gid_t);
    let _ = crate::log::error_log().chown(uid, gid);
    let _ = crate::log::access_log().chown(uid, gid);
    let python_logging = crate::hooks::context::wants_python_logging(py, settings);
    if settings.capture_output && !python_logging && settings.errorlog != "-" {
        flush_python_stdio(py);
        crate::log::capture_output().map_err(|e| format!("Error log: {e}"))?;
    }
    let prefix = syslog_prefix(settings);
    let syslog = (settings.syslog && !python_logging).then(|| crate::log::syslog::SyslogConfig {
        addr: &settings.syslog_addr,
        facility: &settings.syslog_facility,
        prefix: &prefix,
        access: !settings.disable_redirect_access_to_syslog,
    });
    crate::log::syslog::configure(py, syslog)?;
    crate::hooks::context::install(py, settings)?;
    let custom_class = crate::settings::pyvalue::is_custom_logger(&settings.logger_class);
    let statsd = if custom_class { None } else { settings.statsd_host.0.as_ref() };
    crate::log::statsd::configure(statsd, &settings.statsd_prefix, &settings.dogstatsd_tags);
    Ok(())
}

/// `syslog_prefix`, else the process name with ':' made '.' (Gunicorn's).
fn syslog_prefix(settings: &Settings) -> String {
    match &settings.syslog_prefix {
        Some(p) => p.clone(),
        None => settings.proc_name.clone().unwrap_or_else(|| settings.default_proc_name.clone()).replace(':', "."),
    }
}

/// Python's buffered stdout/stderr go out before their fds are replaced.
pub fn flush_python_stdio(py: Python<'_>) {
    if let Ok(sys) = py.import("sys") {
        for name in ["stdout", "stderr"] {
            if let Ok(stream) = sys.getattr(name) {
                let _ = stream.call_method0("flush");
            }
        }
    }
}
