//! Worker processes: what a forked worker is given, how it boots (signals,
//! app import) and which engine serves. Each worker type is an engine mode
//! plus a place where Python runs; `sync` is the first.

pub mod asgi;
pub mod core;
pub mod foreign;
pub mod green;
pub mod gthread;
pub mod kind;
pub mod python_class;
pub mod sync;
pub mod timeout;
pub mod tornado;
pub mod wsgi_request;

pub use kind::WorkerKind;

use crate::http::policy::HttpPolicy;
use crate::net::listener::Listener;
use crate::python::AppLoadError;
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use pyo3::prelude::*;
use std::sync::Arc;

/// Exit statuses the master reads (Gunicorn's Arbiter constants).
pub const WORKER_BOOT_ERROR: i32 = 3;
pub const APP_LOAD_ERROR: i32 = 4;

/// Everything a worker takes from the master across fork.
pub struct WorkerCtx {
    pub kind: WorkerKind,
    pub age: u64,
    pub ppid: i32,
    pub listeners: Vec<Listener>,
    pub slot: SlotHandle,
    pub settings: Arc<Settings>,
    pub app_uri: String,
    /// The application, when `--preload` loaded it in the master.
    pub app: Option<Py<PyAny>>,
    /// max_requests plus this worker's jitter; u64::MAX when unlimited.
    pub max_requests: u64,
    pub proc_name: String,
    /// The `server` and `worker` objects of server hooks.
    pub hooks: crate::hooks::WorkerObjects,
    /// The listeners' TLS, when `--certfile` is set.
    pub tls: Option<crate::net::tls::TlsAcceptor>,
}

/// Runs in the child right after fork; returns the process exit status.
/// Errors are SystemExit from a signal handler, which Python turns into
/// the exit status when it unwinds.
pub fn run(py: Python<'_>, mut ctx: WorkerCtx) -> PyResult<i32> {
    let pid = std::process::id();
    crate::util::proctitle::set(&format!("ferrocorn: worker [{}]", ctx.proc_name));
    crate::log::info!("Booting worker with pid: {pid}");
    let status = boot_and_serve(py, &mut ctx);
    timeout::stop();
    crate::log::info!("Worker exiting (pid: {pid})");
    crate::hooks::worker_exit(py);
    status
}

fn boot_and_serve(py: Python<'_>, ctx: &mut WorkerCtx) -> PyResult<i32> {
    if ctx.settings.reuse_port && ctx.listeners.is_empty() {
        // Each worker binds its own SO_REUSEPORT sockets and the kernel
        // spreads connections between them (the master binds none; when it
        // has sockets anyway, they came from systemd and are shared).
        match crate::net::listen::bind_all(py, &ctx.settings) {
            Ok(listeners) => ctx.listeners = listeners,
            Err(e) => {
                crate::log::error!("{e}");
                return Ok(WORKER_BOOT_ERROR);
            }
        }
    }
    crate::hooks::post_fork(py, std::mem::take(&mut ctx.hooks), &ctx.settings, ctx.slot.clone(), &ctx.listeners)?;
    if ctx.kind == WorkerKind::Python {
        // A Gunicorn worker class does the rest of the boot itself, in its
        // init_process (owner, signals, app, post_worker_init).
        return foreign::run(py, ctx);
    }
    let s = &ctx.settings;
    if let Err(e) = crate::util::owner::set_owner_process(s.user, s.group, s.initgroups) {
        crate::log::exception!("Exception in worker process\n{e}");
        eprintln!("{e}");
        return Ok(WORKER_BOOT_ERROR);
    }
    if matches!(ctx.kind, WorkerKind::Gevent | WorkerKind::Eventlet) {
        // Patched first, as Gunicorn's workers do: before the signal handlers,
        // the reloader's thread and the app are set up.
        if let Err(err) = green::prepare(py, ctx.kind, ctx.age) {
            crate::log::exception!("Exception in worker process\n{}", crate::python::format_exception(py, &err));
            return Ok(WORKER_BOOT_ERROR);
        }
    }
    let wakeup = core::signals::install(py)?;
    timeout::start(py, ctx.kind, &ctx.settings, &ctx.slot)?;
    let watcher = crate::reload::Watcher::new(py, &ctx.settings, ctx.slot.clone())?;
    let app = match ctx.app.take() {
        Some(app) => app,
        None => {
            match crate::reload::load_app(py, &ctx.settings, &ctx.app_uri, &watcher, ctx.kind == WorkerKind::Asgi) {
                Ok(app) => app,
                Err(AppLoadError::NotFound(reason)) => {
                    eprintln!("{reason}");
                    return Ok(APP_LOAD_ERROR);
                }
                Err(AppLoadError::Raised(err)) => {
                    if is_exit(py, &err) {
                        return Err(err);
                    }
                    crate::log::exception!(
                        "Exception in worker process\n{}",
                        crate::python::format_exception(py, &err)
                    );
                    eprintln!("{}", crate::python::exception_text(py, &err));
                    return Ok(WORKER_BOOT_ERROR);
                }
            }
        }
    };
    watcher.start(py)?;
    crate::hooks::post_worker_init(py, &app)?;
    ctx.slot.mark_booted();
    let policy = http_policy(&ctx.settings, ctx.tls.is_some());
    let served = match ctx.kind.serve() {
        Some(serve) => serve(py, ctx, app, policy, wakeup),
        None => Err(pyo3::exceptions::PyRuntimeError::new_err(format!("worker class {} is not available", ctx.kind))),
    };
    match served {
        Ok(()) => Ok(0),
        Err(err) if is_exit(py, &err) => Err(err),
        Err(err) => {
            crate::log::exception!("Exception in worker process\n{}", crate::python::format_exception(py, &err));
            Ok(-1)
        }
    }
}

pub fn is_exit(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
        || err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
}

/// The HTTP layer's view of the security settings.
pub fn http_policy(s: &Settings, tls: bool) -> HttpPolicy {
    HttpPolicy {
        limit_request_line: s.limit_request_line,
        limit_request_fields: s.limit_request_fields,
        limit_request_field_size: s.limit_request_field_size,
        header_map: s.header_map,
        permit_unconventional_http_method: s.permit_unconventional_http_method,
        permit_unconventional_http_version: s.permit_unconventional_http_version,
        casefold_http_method: s.casefold_http_method,
        permit_obsolete_folding: s.permit_obsolete_folding,
        strip_header_spaces: s.strip_header_spaces,
        forwarded_allow: s.forwarded_allow_ips.allow.clone(),
        secure_scheme_headers: s.secure_scheme_headers.clone(),
        forwarder_headers: s.forwarder_headers.clone(),
        proxy_protocol: s.proxy_protocol,
        proxy_allow: s.proxy_allow_ips.allow.clone(),
        is_ssl: tls,
        uwsgi: (s.protocol == "uwsgi")
            .then(|| crate::http::policy::UwsgiPolicy { allow: s.uwsgi_allow_ips.allow.clone(), answer_errors: true }),
    }
}
