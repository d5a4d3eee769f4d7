//! ferrocorn: a Gunicorn-compatible server whose master, workers and HTTP
//! engine are Rust, serving Python WSGI apps through PyO3. `run(argv)` is the
//! whole program; the `ferrocorn` console script calls it.

pub mod arbiter;
pub mod bridge;
pub mod dirty;
pub mod hooks;
pub mod http;
pub mod http2;
pub mod log;
pub mod net;
pub mod python;
pub mod reload;
pub mod runtime;
pub mod scoreboard;
pub mod settings;
pub mod stable_abi;
pub mod testing;
pub mod util;
pub mod uwsgi;
pub mod workers;
pub mod ws;

use pyo3::prelude::*;

pub const SERVER_HEADER: &str = "ferrocorn";
pub const SERVER_SOFTWARE: &str = concat!("ferrocorn/", env!("CARGO_PKG_VERSION"));

/// The whole program: returns the exit status. In a forked worker this
/// returns when the worker ends, so Python unwinds and exits normally.
#[pyfunction]
fn run(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    arbiter::reexec::remember_start();
    let loaded = match settings::load(py, &argv) {
        Ok(l) => l,
        Err(exit) => {
            if exit.status == 0 {
                print!("{}", exit.message);
            } else {
                eprint!("{}", exit.message);
            }
            return Ok(exit.status);
        }
    };
    runtime::apply(py, &loaded.settings, None)?;
    if let Err(e) = runtime::configure_logs(py, &loaded.settings) {
        eprintln!("\nError: {e}\n");
        return Ok(1);
    }
    for (name, why) in &loaded.unneeded {
        log::info!("Setting {name} has no effect in ferrocorn: {why}");
    }
    for note in &loaded.worker_class_notes {
        if note.warning {
            log::warning!("{}", note.text);
        } else {
            log::info!("{}", note.text);
        }
    }
    for extra in &loaded.ignored_args {
        log::warning!("Ignoring extra argument {extra:?} (only the first APP_MODULE is used)");
    }
    if loaded.settings.print_config {
        println!("{}", settings::print_config(&loaded.settings));
    }
    if loaded.settings.print_config || loaded.settings.check_config {
        return Ok(check_app(py, &loaded.settings, &loaded.app_uri));
    }
    if loaded.settings.spew {
        py.import("ferrocorn.debug")?.call_method0("spew")?;
    }
    // A master re-executed by USR2 stays a child of the old one, which is
    // already daemonized (Gunicorn does not daemonize it again either).
    if loaded.settings.daemon && arbiter::reexec::parent_master().is_none() {
        if let Err(e) = util::daemon::daemonize(py, loaded.settings.enable_stdio_inheritance) {
            eprintln!("\nError: cannot daemonize: {e}\n");
            return Ok(1);
        }
        // Gunicorn sets its logs up after daemonizing; ferrocorn checked
        // them before (so mistakes are still seen on the terminal) and
        // applies them again now that the standard streams are /dev/null,
        // which --capture-output must replace.
        if let Err(e) = runtime::configure_logs(py, &loaded.settings) {
            log::error!("{e}");
            return Ok(1);
        }
    }
    let arbiter = match arbiter::Arbiter::new(loaded, argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("\nError: {e}\n");
            return Ok(1);
        }
    };
    match arbiter.run(py) {
        arbiter::Outcome::Exit(status) => Ok(status),
        arbiter::Outcome::Worker(ctx) => workers::run(py, *ctx),
        arbiter::Outcome::Dirty(ctx) => match dirty::arbiter::run(py, *ctx) {
            dirty::arbiter::Outcome::Exit(status) => Ok(status),
            dirty::arbiter::Outcome::Worker(ctx) => dirty::worker::run(py, *ctx),
        },
    }
}

/// `--check-config`: the app must import and build.
fn check_app(py: Python<'_>, settings: &settings::Settings, uri: &str) -> i32 {
    match python::load_configured_app(py, settings, uri) {
        Ok(_) => 0,
        Err(python::AppLoadError::NotFound(reason)) => {
            eprintln!("\nError while loading the application:\n\n{reason}");
            1
        }
        Err(python::AppLoadError::Raised(err)) => {
            eprintln!("\nError while loading the application:\n\n{}", python::format_exception(py, &err));
            1
        }
    }
}

#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _ferrocorn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(python::import_app, m)?)?;
    m.add("AppImportError", m.py().get_type::<python::AppImportError>())?;
    m.add_function(wrap_pyfunction!(net::bind::parse_address, m)?)?;
    m.add_function(wrap_pyfunction!(log::syslog::py_parse_syslog_address, m)?)?;
    bridge::wsgi::register(m)?;
    workers::asgi::register(m)?;
    workers::green::register(m)?;
    workers::foreign::register(m)?;
    log::python::register(m)?;
    m.add_class::<hooks::objects::LiveWorker>()?;
    testing::register(m)?;
    dirty::register(m)?;
    Ok(())
}
