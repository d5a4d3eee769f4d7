//! Gunicorn's server hooks from the config file, called at the moments
//! Gunicorn calls them, one function per moment. An unset hook costs a
//! check of an `Option`. A hook that raises is logged ("Exception in
//! <name> hook" and its traceback) and the server goes on; `sys.exit()`
//! in a master hook stops the master with that status.
//!
//! The master keeps a Python mirror of itself (`server`, with `WORKERS`
//! mapping pid to `worker` objects) so hooks see the same objects
//! throughout a worker's life; a forked worker inherits it.

pub mod context;
pub mod objects;

use crate::bridge::wsgi::response::WsgiResponse;
use crate::http::request::RequestHead;
use crate::net::stream::Peer;
use crate::scoreboard::SlotHandle;
use crate::settings::spec::PyCallable;
use crate::settings::Settings;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::sync::OnceLock;

/// A master hook called `sys.exit()`: the master stops with this status.
#[derive(Debug)]
pub struct HookExit {
    pub hook: &'static str,
    pub status: i32,
}

/// What the master is, for the `server` object.
pub struct ServerState<'a> {
    pub settings: &'a Settings,
    pub pid: i32,
    pub num_workers: usize,
    pub proc_name: &'a str,
    pub worker_age: u64,
    pub listeners: &'a [crate::net::listener::Listener],
}

/// `server.LISTENERS` (and `worker.sockets`): Gunicorn prints, compares and
/// takes `fileno()` of these; each is described by its address and fd.
fn listener_objects<'py>(
    py: Python<'py>,
    listeners: &[crate::net::listener::Listener],
) -> PyResult<Bound<'py, pyo3::types::PyList>> {
    let cls = py.import("ferrocorn._hooks")?.getattr("Listener")?;
    let out = pyo3::types::PyList::empty(py);
    for l in listeners {
        out.append(cls.call1((l.to_string(), l.fd()))?)?;
    }
    Ok(out)
}

/// The master's side: its `server` object and the worker objects.
pub struct Master {
    server: Option<Py<PyAny>>,
}

pub(crate) fn log_failure(py: Python<'_>, hook: &str, err: &PyErr) {
    let tb = crate::python::format_exception(py, err);
    crate::log::exception!("Exception in {hook} hook\n{tb}");
}

fn exit_status(py: Python<'_>, err: &PyErr) -> Option<i32> {
    if !err.is_instance_of::<pyo3::exceptions::PySystemExit>(py) {
        return None;
    }
    let code = err.value(py).getattr("code").ok()?;
    if code.is_none() {
        return Some(0);
    }
    Some(code.extract::<i32>().unwrap_or_else(|_| {
        // `sys.exit("message")` prints the message and exits 1.
        crate::log::error!("{}", code.str().map(|s| s.to_string()).unwrap_or_default());
        1
    }))
}

/// Calls one master-side hook; exceptions are logged, SystemExit returned.
pub(crate) fn call_master<'py>(
    py: Python<'py>,
    name: &'static str,
    hook: &PyCallable,
    args: impl FnOnce() -> PyResult<Bound<'py, PyTuple>>,
) -> Result<(), HookExit> {
    let Some(f) = &hook.0 else { return Ok(()) };
    let result = args().and_then(|a| f.bind(py).call1(a));
    match result {
        Ok(_) => Ok(()),
        Err(e) => match exit_status(py, &e) {
            Some(status) => Err(HookExit { hook: name, status }),
            None => {
                log_failure(py, name, &e);
                Ok(())
            }
        },
    }
}

impl Master {
    pub fn new() -> Master {
        Master { server: None }
    }

    /// The `server` object, made on first use and brought up to date.
    fn server<'py>(&mut self, py: Python<'py>, st: &ServerState<'_>) -> PyResult<Bound<'py, PyAny>> {
        let (cfg, log) = match context::current(py) {
            Some(objects) => objects,
            None => {
                context::install(py, st.settings).map_err(pyo3::exceptions::PyRuntimeError::new_err)?;
                context::current(py).ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no cfg object"))?
            }
        };
        let server = match &self.server {
            Some(s) => s.bind(py).clone(),
            None => {
                let cls = py.import("ferrocorn._hooks")?.getattr("Server")?;
                let s = cls.call1((&cfg, &log, st.pid))?;
                self.server = Some(s.clone().unbind());
                s
            }
        };
        server.setattr("cfg", cfg)?;
        server.setattr("log", log)?;
        server.setattr("pid", st.pid)?;
        server.setattr("num_workers", st.num_workers)?;
        server.setattr("proc_name", st.proc_name)?;
        server.setattr("worker_age", st.worker_age)?;
        server.setattr("LISTENERS", listener_objects(py, st.listeners)?)?;
        Ok(server)
    }

    fn workers<'py>(&mut self, py: Python<'py>, st: &ServerState<'_>) -> PyResult<Bound<'py, PyDict>> {
        Ok(self.server(py, st)?.getattr("WORKERS")?.cast_into::<PyDict>()?)
    }

    fn simple(
        &mut self,
        py: Python<'_>,
        st: &ServerState<'_>,
        name: &'static str,
        hook: &PyCallable,
    ) -> Result<(), HookExit> {
        call_master(py, name, hook, || PyTuple::new(py, [self.server(py, st)?]))
    }

    pub fn on_starting(&mut self, py: Python<'_>, st: &ServerState<'_>) -> Result<(), HookExit> {
        self.simple(py, st, "on_starting", &st.settings.on_starting)
    }

    pub fn when_ready(&mut self, py: Python<'_>, st: &ServerState<'_>) -> Result<(), HookExit> {
        self.simple(py, st, "when_ready", &st.settings.when_ready)
    }

    pub fn on_reload(&mut self, py: Python<'_>, st: &ServerState<'_>) -> Result<(), HookExit> {
        self.simple(py, st, "on_reload", &st.settings.on_reload)
    }

    /// In the forked child of a USR2 re-exec, just before the exec.
    pub fn pre_exec(&mut self, py: Python<'_>, st: &ServerState<'_>) -> Result<(), HookExit> {
        self.simple(py, st, "pre_exec", &st.settings.pre_exec)
    }

    pub fn on_exit(&mut self, py: Python<'_>, st: &ServerState<'_>) -> Result<(), HookExit> {
        self.simple(py, st, "on_exit", &st.settings.on_exit)
    }

    /// `old` is None the first time, as in Gunicorn.
    pub fn nworkers_changed(
        &mut self,
        py: Python<'_>,
        st: &ServerState<'_>,
        new: usize,
        old: Option<usize>,
    ) -> Result<(), HookExit> {
        call_master(py, "nworkers_changed", &st.settings.nworkers_changed, || {
            let old = match old {
                Some(n) => n.into_pyobject(py)?.into_any(),
                None => py.None().into_bound(py),
            };
            PyTuple::new(py, [self.server(py, st)?, new.into_pyobject(py)?.into_any(), old])
        })
    }

    /// Makes the next worker's object and calls `pre_fork(server, worker)`.
    /// The object goes to [`Master::forked`] in the master and to the child.
    pub fn pre_fork(
        &mut self,
        py: Python<'_>,
        st: &ServerState<'_>,
        age: u64,
        max_requests: u64,
    ) -> Result<Option<Py<PyAny>>, HookExit> {
        let made = (|| -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
            let server = self.server(py, st)?;
            let cls = py.import("ferrocorn._hooks")?.getattr("Worker")?;
            let max = if max_requests == u64::MAX { i64::MAX as u64 } else { max_requests };
            let worker = cls.call1((age, st.pid, server.getattr("cfg")?, server.getattr("log")?, max))?;
            Ok((server, worker))
        })();
        let (server, worker) = match made {
            Ok(pair) => pair,
            Err(e) => {
                log_failure(py, "pre_fork", &e);
                return Ok(None);
            }
        };
        call_master(py, "pre_fork", &st.settings.pre_fork, || PyTuple::new(py, [server, worker.clone()]))?;
        Ok(Some(worker.unbind()))
    }

    /// In the master after fork: the worker object gets its pid and joins
    /// `server.WORKERS`.
    pub fn forked(&mut self, py: Python<'_>, st: &ServerState<'_>, worker: &Py<PyAny>, pid: i32) {
        let done = (|| -> PyResult<()> {
            worker.bind(py).setattr("pid", pid)?;
            self.workers(py, st)?.set_item(pid, worker.bind(py))
        })();
        if let Err(e) = done {
            log_failure(py, "pre_fork", &e);
        }
    }

    /// A worker was reaped: it leaves `WORKERS`, then `child_exit(server, worker)`.
    pub fn child_exit(&mut self, py: Python<'_>, st: &ServerState<'_>, pid: i32) -> Result<(), HookExit> {
        let worker = self.workers(py, st).and_then(|w| {
            let found = w.get_item(pid)?;
            if found.is_some() {
                w.del_item(pid)?;
            }
            Ok(found)
        });
        let worker = match worker {
            Ok(Some(w)) => w,
            Ok(None) => return Ok(()),
            Err(e) => {
                log_failure(py, "child_exit", &e);
                return Ok(());
            }
        };
        call_master(py, "child_exit", &st.settings.child_exit, || PyTuple::new(py, [self.server(py, st)?, worker]))
    }

    /// The `server` and `worker` objects a freshly forked worker takes.
    pub fn for_child(&self, py: Python<'_>, worker: Option<&Py<PyAny>>) -> WorkerObjects {
        WorkerObjects { server: self.server.as_ref().map(|s| s.clone_ref(py)), worker: worker.map(|w| w.clone_ref(py)) }
    }
}

impl Default for Master {
    fn default() -> Self {
        Master::new()
    }
}

/// What a worker process takes from the master across fork.
#[derive(Default)]
pub struct WorkerObjects {
    server: Option<Py<PyAny>>,
    worker: Option<Py<PyAny>>,
}

/// The worker process's own hook state, set once right after fork so that
/// signal handlers and the reloader reach it.
struct WorkerSide {
    server: Py<PyAny>,
    worker: Py<PyAny>,
    settings: std::sync::Arc<Settings>,
}

static WORKER: OnceLock<WorkerSide> = OnceLock::new();

fn worker_side() -> Option<&'static WorkerSide> {
    WORKER.get()
}

/// Worker-side hooks run in the worker; their exceptions are logged, but a
/// SystemExit/KeyboardInterrupt is returned for the worker to honour.
fn call_worker(py: Python<'_>, name: &'static str, hook: &PyCallable, args: Bound<'_, PyTuple>) -> PyResult<()> {
    let Some(f) = &hook.0 else { return Ok(()) };
    match f.bind(py).call1(args) {
        Ok(_) => Ok(()),
        Err(e) if crate::workers::is_exit(py, &e) => Err(e),
        Err(e) => {
            log_failure(py, name, &e);
            Ok(())
        }
    }
}

/// In the new worker, right after fork: the worker object becomes live
/// (its pid, `alive`, `nr`) and `post_fork(server, worker)` runs.
pub fn post_fork(
    py: Python<'_>,
    objects: WorkerObjects,
    settings: &std::sync::Arc<Settings>,
    slot: SlotHandle,
    listeners: &[crate::net::listener::Listener],
) -> PyResult<()> {
    let (Some(server), Some(worker)) = (objects.server, objects.worker) else { return Ok(()) };
    let live = (|| -> PyResult<()> {
        let w = worker.bind(py);
        w.setattr("pid", std::process::id())?;
        w.setattr("sockets", listener_objects(py, listeners)?)?;
        w.setattr("_live", objects::live_worker(py, slot)?)?;
        Ok(())
    })();
    if let Err(e) = live {
        log_failure(py, "post_fork", &e);
    }
    let side = WorkerSide { server, worker, settings: settings.clone() };
    let side = match WORKER.set(side) {
        Ok(()) => worker_side(),
        Err(_) => None,
    };
    let Some(side) = side else { return Ok(()) };
    call_worker(py, "post_fork", &settings.post_fork, PyTuple::new(py, [side.server.bind(py), side.worker.bind(py)])?)
}

fn worker_only(py: Python<'_>, name: &'static str, pick: fn(&Settings) -> &PyCallable) -> PyResult<()> {
    let Some(side) = worker_side() else { return Ok(()) };
    call_worker(py, name, pick(&side.settings), PyTuple::new(py, [side.worker.bind(py)])?)
}

/// After the application is loaded, before the first request.
pub fn post_worker_init(py: Python<'_>, app: &Py<PyAny>) -> PyResult<()> {
    if let Some(side) = worker_side() {
        // Hook code reads the app as `worker.wsgi`.
        if let Err(e) = side.worker.bind(py).setattr("wsgi", app.bind(py)) {
            log_failure(py, "post_worker_init", &e);
        }
    }
    worker_only(py, "post_worker_init", |s| &s.post_worker_init)?;
    if let Some(side) = worker_side() {
        let _ = side.worker.bind(py).setattr("booted", true);
    }
    Ok(())
}

/// INT or QUIT reached the worker (or the reloader saw a change).
pub fn worker_int(py: Python<'_>) -> PyResult<()> {
    worker_only(py, "worker_int", |s| &s.worker_int)
}

/// ABRT reached the worker (the master's timeout).
pub fn worker_abort(py: Python<'_>) -> PyResult<()> {
    if let Some(side) = worker_side() {
        let _ = side.worker.bind(py).setattr("aborted", true);
    }
    worker_only(py, "worker_abort", |s| &s.worker_abort)
}

/// The worker is exiting, after "Worker exiting" is logged. Gunicorn
/// reports a failure here as a warning.
pub fn worker_exit(py: Python<'_>) {
    let Some(side) = worker_side() else { return };
    let Some(f) = &side.settings.worker_exit.0 else { return };
    let args = PyTuple::new(py, [side.server.bind(py), side.worker.bind(py)]);
    if let Err(e) = args.and_then(|a| f.bind(py).call1(a)) {
        let tb = crate::python::format_exception(py, &e);
        crate::log::warning!("Exception during worker exit:\n{tb}");
    }
}

/// `pre_request`/`post_request` for one worker, looked up once: `None`
/// when neither is set (and the log level hides Gunicorn's default
/// `pre_request`, which logs each request at debug), so the request path
/// costs one `Option` check.
pub struct RequestHooks {
    worker: Py<PyAny>,
    pre: Option<Py<PyAny>>,
    /// The hook and how many arguments it takes (2 to 4, validated).
    post: Option<(Py<PyAny>, usize)>,
}

impl RequestHooks {
    pub fn for_this_worker(py: Python<'_>) -> Option<RequestHooks> {
        let side = worker_side()?;
        let pre = side.settings.pre_request.0.as_ref().map(|f| f.clone_ref(py));
        let post = side.settings.post_request.0.as_ref().map(|f| {
            let n = crate::settings::validate::arity_of(f.bind(py)).unwrap_or(4);
            (f.clone_ref(py), n)
        });
        let default_pre = pre.is_none() && crate::log::enabled(crate::log::Level::Debug);
        if pre.is_none() && post.is_none() && !default_pre {
            return None;
        }
        Some(RequestHooks { worker: side.worker.clone_ref(py), pre, post })
    }

    /// Before the application runs. An exception is returned: the request
    /// then fails like an application error (500), as in Gunicorn.
    pub fn pre_request<'py>(
        &self,
        py: Python<'py>,
        head: &RequestHead,
        peer: Peer,
    ) -> (Option<Bound<'py, PyAny>>, PyResult<()>) {
        let req = match objects::request(py, head, peer) {
            Ok(r) => r,
            Err(e) => return (None, Err(e)),
        };
        let result = match &self.pre {
            Some(f) => {
                objects::IN_PRE_REQUEST.with(|c| c.set(true));
                let r = f.bind(py).call1((self.worker.bind(py), &req)).map(drop);
                objects::IN_PRE_REQUEST.with(|c| c.set(false));
                r
            }
            None => {
                crate::log::debug!("{} {}", head.method, head.path);
                Ok(())
            }
        };
        (Some(req), result)
    }

    /// After the response and its access-log line; `post_request` may take
    /// 2, 3 or 4 arguments.
    pub fn post_request(
        &self,
        py: Python<'_>,
        req: Option<&Bound<'_, PyAny>>,
        environ: &Bound<'_, PyDict>,
        response: &Bound<'_, WsgiResponse>,
    ) {
        let Some(req) = req else { return };
        self.call_post(py, req, &|| Ok(environ.clone()), &|| objects::response(py, response));
    }

    /// The asgi worker's `post_request`: the environ and `resp` Gunicorn's
    /// ASGI worker passes (built only when the hook takes them).
    pub fn post_request_asgi(
        &self,
        py: Python<'_>,
        req: &Bound<'_, PyAny>,
        done: &crate::workers::core::access::AsgiFinished<'_>,
    ) {
        self.call_post(py, req, &|| crate::workers::core::access::asgi_environ(done).into_dict(py), &|| {
            crate::workers::core::access::asgi_response_object(py, done)
        });
    }

    pub fn has_post_request(&self) -> bool {
        self.post.is_some()
    }

    fn call_post<'py>(
        &self,
        py: Python<'py>,
        req: &Bound<'py, PyAny>,
        environ: &dyn Fn() -> PyResult<Bound<'py, PyDict>>,
        response: &dyn Fn() -> PyResult<Bound<'py, PyAny>>,
    ) {
        let Some((f, n)) = &self.post else { return };
        let called = (|| -> PyResult<()> {
            let f = f.bind(py);
            let w = self.worker.bind(py);
            match *n {
                2 => f.call1((w, req))?,
                3 => f.call1((w, req, environ()?))?,
                _ => f.call1((w, req, environ()?, response()?))?,
            };
            Ok(())
        })();
        if let Err(e) = called {
            if crate::workers::is_exit(py, &e) {
                crate::workers::core::signals::stop();
            }
            log_failure(py, "post_request", &e);
        }
    }
}
