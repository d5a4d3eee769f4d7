//! The master: binds the listeners, forks and supervises workers, and reacts
//! to signals, one at a time, in one loop (Gunicorn's `arbiter.py`). It never
//! runs request code and holds no threads, so forking is always safe.

mod control;
mod dirty;
pub(crate) mod freeze;
mod memory;
mod merge;
mod metrics;
mod netio;
pub mod notify;
mod observe;
pub mod pidfile;
pub mod reexec;
mod services;
pub mod signals;
pub mod stats;
mod stuck;
pub mod systemd;

use crate::net::listen::bind_all;
use crate::net::listener::Listener;
use crate::python::{AppLoadError, Forked};
use crate::scoreboard::{self, now_ms, Scoreboard};
use crate::settings::{Loaded, Settings};
use crate::workers::{WorkerCtx, WorkerKind, APP_LOAD_ERROR, WORKER_BOOT_ERROR};
use pidfile::Pidfile;
use pyo3::prelude::*;
use signals::SignalQueue;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How `run` ended in this process.
pub enum Outcome {
    /// The master is done: exit with this status.
    Exit(i32),
    /// This process is a freshly forked worker.
    Worker(Box<WorkerCtx>),
    /// This process is the freshly forked dirty arbiter.
    Dirty(Box<crate::dirty::arbiter::ArbiterCtx>),
}

/// Why the loop stopped turning; `?` carries it up the master's stack.
enum Interrupt {
    /// We are the child of a fork: unwind the master's frames.
    Worker(Box<WorkerCtx>),
    /// The same, in the dirty arbiter.
    Dirty(Box<crate::dirty::arbiter::ArbiterCtx>),
    Stop {
        graceful: bool,
    },
    Halt {
        reason: String,
        status: i32,
    },
}

impl From<Box<WorkerCtx>> for Interrupt {
    fn from(ctx: Box<WorkerCtx>) -> Self {
        Interrupt::Worker(ctx)
    }
}

impl From<crate::hooks::HookExit> for Interrupt {
    fn from(e: crate::hooks::HookExit) -> Self {
        Interrupt::Halt { reason: format!("the {} hook called sys.exit({})", e.hook, e.status), status: e.status }
    }
}

struct Worker {
    age: u64,
    slot: usize,
    aborted: bool,
    /// When the master asked it to stop (TTOU, HUP, shrink); it is no longer
    /// counted as one of the pool and gets graceful_timeout to finish.
    retiring_since: Option<Instant>,
    started: Instant,
    /// Why the master asked it to stop, for the restart counts.
    stop_asked: Option<stats::StopAsked>,
}

/// The master's pieces hooks see as `server` (pid, num_workers, ...).
macro_rules! server_state {
    ($self:ident) => {
        crate::hooks::ServerState {
            settings: &$self.settings,
            pid: $self.pid,
            num_workers: $self.num_workers,
            proc_name: &$self.proc_name(),
            worker_age: $self.worker_age,
            listeners: &$self.listeners,
        }
    };
}

pub struct Arbiter {
    argv: Vec<String>,
    settings: Arc<Settings>,
    app_uri: String,
    kind: WorkerKind,
    listeners: Vec<Listener>,
    workers: HashMap<i32, Worker>,
    num_workers: usize,
    worker_age: u64,
    board: Scoreboard,
    signals: SignalQueue,
    pidfile: Option<Pidfile>,
    app: Option<Py<PyAny>>,
    pid: i32,
    rng: u64,
    hooks: crate::hooks::Master,
    /// The active worker count last reported (debug log, statsd gauge).
    reported_workers: Option<usize>,
    /// The new master a USR2 started, while it runs (Gunicorn's
    /// `reexec_pid`).
    reexec_pid: i32,
    /// The old master, while this one is the new master of an upgrade in
    /// progress (Gunicorn's `master_pid`).
    master_pid: i32,
    /// The listeners came from systemd socket activation (Gunicorn's
    /// `self.systemd`): systemd owns them, so they are never unlinked or
    /// rebound, and a re-exec hands them on with `net::systemd::hand_over`.
    systemd: bool,
    /// READY/RELOADING/STOPPING/STATUS to `$NOTIFY_SOCKET`.
    service: systemd::ServiceStatus,
    stats: stats::MasterStats,
    /// The metrics endpoint and the control socket.
    services: services::Services,
    memory: memory::MemoryGuard,
    /// A HUP came while the generation the last one started was still
    /// booting: it is applied, once, when that generation is up.
    reload_pending: Option<Instant>,
    /// The listeners' TLS (`--certfile`), read at start and on HUP.
    tls: Option<crate::net::tls::TlsAcceptor>,
    /// The dirty arbiter, its socket and board.
    dirty: dirty::DirtySide,
    /// TERM, INT or QUIT came: `/readyz` says so while workers finish.
    stopping: bool,
}

/// A HUP is deferred at most this long for a generation that does not
/// boot (a reload may be what fixes it).
const RELOAD_DEFER_MAX: Duration = Duration::from_secs(10);

impl Arbiter {
    pub fn new(loaded: Loaded, argv: Vec<String>) -> Result<Arbiter, String> {
        let kind =
            WorkerKind::resolve(&loaded.settings.worker_class, loaded.settings.threads).map_err(|e| e.to_string())?;
        let signals = SignalQueue::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let board = Scoreboard::new().map_err(|e| format!("cannot map the scoreboard: {e}"))?;
        let num_workers = loaded.settings.workers;
        let seed = now_ms() ^ (u64::from(std::process::id()) << 32);
        Ok(Arbiter {
            argv,
            settings: Arc::new(loaded.settings),
            app_uri: loaded.app_uri,
            kind,
            listeners: Vec::new(),
            workers: HashMap::new(),
            num_workers,
            worker_age: 0,
            board,
            signals,
            pidfile: None,
            app: None,
            pid: std::process::id() as i32,
            rng: seed | 1,
            hooks: crate::hooks::Master::new(),
            reported_workers: None,
            stats: stats::MasterStats::new(),
            services: services::Services::default(),
            memory: memory::MemoryGuard::default(),
            reload_pending: None,
            tls: None,
            dirty: dirty::DirtySide::default(),
            stopping: false,
            reexec_pid: 0,
            master_pid: 0,
            systemd: false,
            service: systemd::ServiceStatus::from_env(),
        })
    }

    fn proc_name(&self) -> String {
        let name = self.settings.proc_name.clone().unwrap_or_else(|| self.settings.default_proc_name.clone());
        // A new master beside the old one is told apart in `ps`, as Gunicorn
        // does, until it is promoted.
        if self.master_pid != 0 {
            format!("{name}.2")
        } else {
            name
        }
    }

    fn master_name(&self) -> &'static str {
        if self.master_pid != 0 {
            "Master.2"
        } else {
            "Master"
        }
    }

    pub fn run(mut self, py: Python<'_>) -> Outcome {
        match self.main(py) {
            Ok(never) => match never {},
            Err(Interrupt::Worker(ctx)) => Outcome::Worker(ctx),
            Err(Interrupt::Dirty(ctx)) => Outcome::Dirty(ctx),
            Err(Interrupt::Stop { graceful }) => {
                self.stop(py, graceful);
                Outcome::Exit(self.halt(py, None, 0))
            }
            Err(Interrupt::Halt { reason, status }) => {
                self.stop(py, true);
                Outcome::Exit(self.halt(py, Some(reason), status))
            }
        }
    }

    fn main(&mut self, py: Python<'_>) -> Result<std::convert::Infallible, Interrupt> {
        self.start(py)?;
        crate::util::proctitle::set(&format!("ferrocorn: master [{}]", self.proc_name()));
        self.manage_workers(py)?;
        if self.master_pid != 0 {
            self.service.ready_as_new_main(self.pid);
        } else {
            self.service.ready();
        }
        // After the first fork, as Gunicorn starts its control server.
        self.open_services(py);
        loop {
            let mut polled = self.services.poll_fds();
            let signals = &self.signals;
            let wait = if self.services.busy() { Duration::ZERO } else { Duration::from_secs(1) };
            let queued = py.detach(|| signals.wait_with(&mut polled, wait));
            for sig in queued {
                self.handle_signal(py, sig)?;
            }
            self.reload_if_pending(py)?;
            self.maybe_promote(py);
            self.serve_services(py, &polled)?;
            self.murder_workers();
            self.guard_memory(py)?;
            self.replace_stuck(py)?;
            self.manage_workers(py)?;
            self.manage_dirty(py)?;
            self.report_service_status();
        }
    }

    fn start(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        // Gunicorn sets num_workers (and so calls the hook, with no old
        // value) while it builds its arbiter, before anything else.
        self.hooks.nworkers_changed(py, &server_state!(self), self.num_workers, None)?;
        crate::log::info!("Starting ferrocorn {}", env!("CARGO_PKG_VERSION"));
        self.master_pid = reexec::parent_master().unwrap_or(0);
        if let Some(path) = &self.settings.pidfile {
            // The new master of an upgrade writes <pidfile>.2 and takes the
            // real name when the old master is gone.
            let path = if self.master_pid != 0 { format!("{path}.2") } else { path.clone() };
            let pf = Pidfile::create(&path, self.pid).map_err(|reason| Interrupt::Halt { reason, status: 1 })?;
            self.pidfile = Some(pf);
        }
        if self.settings.memory_merge {
            merge::enable().map_err(|reason| Interrupt::Halt { reason, status: 1 })?;
        }
        if self.settings.preload_app {
            self.app = Some(self.preload(py)?);
        }
        self.hooks.on_starting(py, &server_state!(self))?;
        // Before binding, as Gunicorn checks its certificate files: a
        // broken certificate or key stops the start with the reason.
        self.tls = crate::net::tls::TlsAcceptor::from_settings(py, &self.settings)
            .map_err(|e| Interrupt::Halt { reason: e.to_string(), status: 1 })?;
        match systemd::activated_listeners(py, &self.settings) {
            // systemd first, as Gunicorn: a socket-activated master that
            // re-executes hands its sockets on the same way.
            Ok(Some(listeners)) => {
                self.systemd = true;
                self.listeners = listeners;
            }
            Ok(None) if !self.settings.reuse_port => {
                let inherited = reexec::inherited_fds(py).map_err(|reason| Interrupt::Halt { reason, status: 1 })?;
                self.listeners = match inherited {
                    Some(fds) => inherit(&fds, &self.settings),
                    None => bind_all(py, &self.settings),
                }
                .map_err(|reason| Interrupt::Halt { reason, status: 1 })?;
            }
            Ok(None) => {}
            Err(reason) => return Err(Interrupt::Halt { reason, status: 1 }),
        }
        let shown: Vec<String> = self.listeners.iter().map(|l| l.to_string()).collect();
        crate::log::info!("Listening at: {} ({})", shown.join(","), self.pid);
        crate::log::info!("Using worker: {}", self.kind);
        if let Some(note) = WorkerKind::alias_note(&self.settings.worker_class) {
            crate::log::info!("{note}");
        }
        self.start_dirty(py)?;
        self.hooks.when_ready(py, &server_state!(self))?;
        Ok(())
    }

    /// Changes the pool size and tells `nworkers_changed`, as Gunicorn's
    /// `num_workers` property does on every assignment.
    fn set_num_workers(&mut self, py: Python<'_>, n: usize) -> Result<(), Interrupt> {
        let old = self.num_workers;
        self.num_workers = n;
        self.hooks.nworkers_changed(py, &server_state!(self), n, Some(old))?;
        Ok(())
    }

    fn preload(&self, py: Python<'_>) -> Result<Py<PyAny>, Interrupt> {
        crate::python::load_configured_app(py, &self.settings, &self.app_uri).map_err(|e| {
            let reason = match e {
                AppLoadError::NotFound(reason) => reason,
                AppLoadError::Raised(err) => {
                    crate::log::error!(
                        "Exception while loading the application\n{}",
                        crate::python::format_exception(py, &err)
                    );
                    crate::python::exception_text(py, &err)
                }
            };
            Interrupt::Halt { reason: format!("App failed to load: {reason}"), status: 1 }
        })
    }

    fn handle_signal(&mut self, py: Python<'_>, sig: libc::c_int) -> Result<(), Interrupt> {
        if sig == libc::SIGCHLD {
            crate::log::debug!("Handling signal: chld");
            return self.reap_workers(py);
        }
        if sig == 0 {
            return Ok(());
        }
        crate::log::info!("Handling signal: {}", signals::name(sig));
        match sig {
            libc::SIGHUP => {
                if self.generation_booting() {
                    // Reloading again now would stack one generation per
                    // HUP; the ones that came meanwhile make one reload.
                    if self.reload_pending.is_none() {
                        crate::log::info!("Reload in progress: the new configuration is read again once it is up");
                        self.reload_pending = Some(Instant::now());
                    }
                    return Ok(());
                }
                self.reload_now(py)
            }
            libc::SIGTERM => Err(Interrupt::Stop { graceful: true }),
            libc::SIGINT | libc::SIGQUIT => Err(Interrupt::Stop { graceful: false }),
            libc::SIGTTIN => {
                self.reload_before_resizing(py)?;
                self.set_num_workers(py, self.num_workers + 1)?;
                self.manage_workers(py)
            }
            libc::SIGTTOU => {
                self.reload_before_resizing(py)?;
                if self.num_workers <= 1 {
                    return Ok(());
                }
                self.set_num_workers(py, self.num_workers - 1)?;
                self.manage_workers(py)
            }
            libc::SIGUSR1 => {
                if let Err(e) = crate::log::reopen() {
                    crate::log::error!("reopening log files failed: {e}");
                }
                self.kill_workers(libc::SIGUSR1);
                self.signal_dirty(libc::SIGUSR1);
                Ok(())
            }
            libc::SIGUSR2 => self.reexec(py),
            // Gunicorn stops its workers on WINCH only when daemonized; an old
            // master whose upgrade is under way does so too, which is the
            // step the upgrade procedure needs.
            libc::SIGWINCH if self.settings.daemon || self.reexec_pid != 0 => {
                crate::log::info!("graceful stop of workers");
                self.reload_before_resizing(py)?;
                if self.reexec_pid != 0 {
                    self.hand_metrics_over();
                }
                self.set_num_workers(py, 0)?;
                self.kill_workers(libc::SIGTERM);
                Ok(())
            }
            libc::SIGWINCH => {
                crate::log::debug!("SIGWINCH ignored. Not daemonized");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// HUP: read the settings again, start a new generation of workers with
    /// them, and stop the old generation gracefully.
    fn reload_now(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        self.reload_pending = None;
        self.service.reloading();
        // `?` first: a worker forked by the reload unwinds here and must
        // not speak for the master.
        self.reload(py)?;
        self.report_service_ready();
        Ok(())
    }

    /// A deferred HUP came before this TTIN, TTOU or WINCH, and a reload
    /// sets the pool back to the configured size: it runs first, as it
    /// would have in Gunicorn's signal order, or it would undo the resize.
    fn reload_before_resizing(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        if self.reload_pending.is_some() {
            self.reload_now(py)?;
        }
        Ok(())
    }

    /// Workers of the current generation still booting.
    fn generation_booting(&self) -> bool {
        self.workers.values().any(|w| w.retiring_since.is_none() && !self.board.slot(w.slot).booted())
    }

    /// A deferred HUP, once the generation it waited for is up (or it has
    /// waited too long).
    fn reload_if_pending(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        match self.reload_pending {
            Some(since) if !self.generation_booting() || since.elapsed() >= RELOAD_DEFER_MAX => self.reload_now(py),
            _ => Ok(()),
        }
    }

    fn reload(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        self.stats.reloads += 1;
        crate::log::info!("Hang up: Master");
        let loaded = match crate::settings::load(py, &self.argv) {
            Ok(l) => l,
            Err(exit) => {
                // Gunicorn exits here; a running server keeps its old
                // configuration instead, and says why.
                crate::log::error!("Reload failed, keeping the previous configuration:{}", exit.message.trim_end());
                return Ok(());
            }
        };
        let kind = match WorkerKind::resolve(&loaded.settings.worker_class, loaded.settings.threads) {
            Ok(k) => k,
            Err(e) => {
                crate::log::error!("Reload failed, keeping the previous configuration: {e}");
                return Ok(());
            }
        };
        // New certificate files are read now; broken ones keep the old.
        let tls = match crate::net::tls::TlsAcceptor::from_settings(py, &loaded.settings) {
            Ok(tls) => tls,
            Err(e) => {
                crate::log::error!("Reload failed, keeping the previous configuration: {e}");
                return Ok(());
            }
        };
        if let Err(e) = crate::runtime::apply(py, &loaded.settings, Some(&self.settings)) {
            crate::log::error!("Reload failed, keeping the previous configuration: {e}");
            return Ok(());
        }
        self.tls = tls;
        if let Err(e) = crate::runtime::configure_logs(py, &loaded.settings) {
            crate::log::error!("{e}");
        }
        if loaded.settings.spew {
            if let Err(e) = py.import("ferrocorn.debug").and_then(|m| m.call_method0("spew")) {
                crate::log::error!("--spew: {e}");
            }
        }
        let old_binds = self.settings.bind.clone();
        self.settings = Arc::new(loaded.settings);
        self.app_uri = loaded.app_uri;
        self.kind = kind;
        // Gunicorn's setup() assigns num_workers (calling nworkers_changed)
        // before it rebinds and calls on_reload.
        self.set_num_workers(py, self.settings.workers)?;
        if old_binds != self.settings.bind && self.systemd {
            // The sockets belong to systemd; closing them would leave
            // nothing to accept on (Gunicorn closes them and binds).
            crate::log::warning!("--bind changed, but the listeners come from systemd socket activation: keeping them");
        } else if old_binds != self.settings.bind && !self.settings.reuse_port {
            for l in self.listeners.drain(..) {
                l.close(true);
            }
            self.listeners = bind_all(py, &self.settings).map_err(|reason| Interrupt::Halt { reason, status: 1 })?;
            let shown: Vec<String> = self.listeners.iter().map(|l| l.to_string()).collect();
            crate::log::info!("Listening at: {}", shown.join(","));
        }
        self.hooks.on_reload(py, &server_state!(self))?;
        if let Some(pf) = self.pidfile.take() {
            pf.unlink();
        }
        if let Some(path) = &self.settings.pidfile {
            match Pidfile::create(path, self.pid) {
                Ok(pf) => self.pidfile = Some(pf),
                Err(e) => crate::log::error!("{e}"),
            }
        }
        crate::util::proctitle::set(&format!("ferrocorn: master [{}]", self.proc_name()));
        self.open_services(py);
        // The new generation starts before the old one is asked to stop,
        // so the listeners always have someone accepting.
        let now = Instant::now();
        for w in self.workers.values_mut() {
            if w.retiring_since.is_none() {
                w.retiring_since = Some(now);
                w.stop_asked = Some(stats::StopAsked::Reload);
            }
        }
        // Before the new generation forks: it finds the dirty socket (or
        // none) in the environment.
        self.reload_dirty(py)?;
        self.manage_workers(py)?;
        self.kill_retiring_once();
        Ok(())
    }

    fn active(&self) -> usize {
        self.workers.values().filter(|w| w.retiring_since.is_none()).count()
    }

    fn manage_workers(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        while self.active() < self.num_workers {
            if !self.spawn_worker(py)? {
                break;
            }
            // Gunicorn staggers spawns by up to 0.1 s.
            let pause = Duration::from_millis(self.next_random() % 100);
            py.detach(|| std::thread::sleep(pause));
        }
        let excess = self.active().saturating_sub(self.num_workers);
        if excess > 0 {
            let mut oldest: Vec<(u64, i32)> =
                self.workers.iter().filter(|(_, w)| w.retiring_since.is_none()).map(|(p, w)| (w.age, *p)).collect();
            oldest.sort_unstable();
            let now = Instant::now();
            for (_, pid) in oldest.into_iter().take(excess) {
                if let Some(w) = self.workers.get_mut(&pid) {
                    w.retiring_since = Some(now);
                    w.stop_asked = Some(stats::StopAsked::Shrink);
                }
                kill(pid, libc::SIGTERM);
            }
        }
        // A retiring worker that outlives graceful_timeout is killed.
        let grace = self.settings.graceful_timeout;
        let overdue: Vec<i32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.retiring_since.is_some_and(|t| t.elapsed() > grace))
            .map(|(p, _)| *p)
            .collect();
        for pid in overdue {
            kill(pid, libc::SIGKILL);
        }
        self.report_metrics();
        Ok(())
    }

    /// Gunicorn's manage_workers reporting: the worker count when it
    /// changes (debug log and `gunicorn.workers` gauge) and, with
    /// `--enable-backlog-metric`, the listeners' accept queues.
    fn report_metrics(&mut self) {
        let active = self.active();
        if self.reported_workers != Some(active) {
            self.reported_workers = Some(active);
            crate::log::debug!("{active} workers");
            crate::log::statsd::gauge("gunicorn.workers", active as i64);
        }
        if self.settings.enable_backlog_metric {
            let backlog: i64 = self.listeners.iter().map(Listener::backlog).sum();
            if backlog >= 0 {
                crate::log::debug!("socket backlog: {backlog}");
                crate::log::statsd::histogram("gunicorn.backlog", backlog);
            }
        }
    }

    /// The periodic STATUS line for systemd (workers, requests served).
    fn report_service_status(&mut self) {
        let active = self.active();
        let (workers, board, gone) = (&self.workers, &self.board, &self.stats.gone);
        self.service.tick(active, || observe::request_totals(workers, board, gone).count());
    }

    /// READY=1 again after a HUP, whether or not the reload took.
    fn report_service_ready(&mut self) {
        let served = observe::request_totals(&self.workers, &self.board, &self.stats.gone).count();
        self.service.reloaded(self.active(), served);
    }

    fn kill_retiring_once(&self) {
        for (pid, w) in &self.workers {
            if w.retiring_since.is_some() {
                kill(*pid, libc::SIGTERM);
            }
        }
    }

    /// Forks one worker. Ok(false) when no scoreboard slot is left.
    fn spawn_worker(&mut self, py: Python<'_>) -> Result<bool, Interrupt> {
        let Some(slot) = self.board.claim() else {
            crate::log::error!("Cannot start more than {} workers", scoreboard::MAX_WORKERS);
            self.set_num_workers(py, self.active())?;
            return Ok(false);
        };
        self.worker_age += 1;
        let max_requests = match self.settings.max_requests {
            0 => u64::MAX,
            n => {
                let jitter = self.settings.max_requests_jitter;
                n.saturating_add(if jitter > 0 { self.next_random() % jitter.saturating_add(1) } else { 0 })
            }
        };
        let hook_worker = self.hooks.pre_fork(py, &server_state!(self), self.worker_age, max_requests)?;
        freeze::before_fork(py, &self.settings);
        match self.signals.fork(py) {
            Ok(Forked::Parent(pid)) => {
                self.board.slot(slot).pid.store(pid, std::sync::atomic::Ordering::Relaxed);
                let worker = Worker {
                    age: self.worker_age,
                    slot,
                    aborted: false,
                    retiring_since: None,
                    started: Instant::now(),
                    stop_asked: None,
                };
                self.workers.insert(pid, worker);
                self.stats.spawned += 1;
                if let Some(w) = &hook_worker {
                    self.hooks.forked(py, &server_state!(self), w, pid);
                }
                Ok(true)
            }
            Ok(Forked::Child) => {
                let ctx = WorkerCtx {
                    kind: self.kind,
                    age: self.worker_age,
                    ppid: self.pid,
                    listeners: self.listeners.clone(),
                    slot: self.board.handle(slot),
                    settings: self.settings.clone(),
                    app_uri: self.app_uri.clone(),
                    app: self.app.as_ref().map(|a| a.clone_ref(py)),
                    max_requests,
                    proc_name: self.proc_name(),
                    hooks: self.hooks.for_child(py, hook_worker.as_ref()),
                    tls: self.tls.clone(),
                };
                Err(Interrupt::Worker(Box::new(ctx)))
            }
            Err(e) => {
                self.board.release(slot);
                crate::log::error!("fork failed: {e}");
                Ok(false)
            }
        }
    }

    /// Sends ABRT, then KILL, to workers silent for longer than `timeout`.
    fn murder_workers(&mut self) {
        let timeout = u64::try_from(self.settings.timeout.as_millis()).unwrap_or(u64::MAX);
        if timeout == 0 {
            return;
        }
        let now = now_ms();
        for (pid, w) in self.workers.iter_mut() {
            if self.board.slot(w.slot).silent_for_ms(now) <= timeout {
                continue;
            }
            if !w.aborted {
                crate::log::critical!("WORKER TIMEOUT (pid:{pid})");
                w.aborted = true;
                kill(*pid, libc::SIGABRT);
            } else {
                kill(*pid, libc::SIGKILL);
            }
        }
    }

    fn reap_workers(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return Ok(());
            }
            if pid == self.dirty.pid {
                self.dirty_exited(pid, status);
                continue;
            }
            if pid == self.reexec_pid {
                self.reexec_pid = 0;
                crate::log::info!("The new master (pid:{pid}) exited; a re-exec may be asked again");
                continue;
            }
            let Some(worker) = self.workers.remove(&pid) else {
                crate::log::debug!("Reaped unknown child process (pid:{pid}, status:{status})");
                continue;
            };
            self.account_exit(pid, &worker, status);
            self.board.release(worker.slot);
            let mut exit_code = None;
            if libc::WIFEXITED(status) {
                exit_code = Some(libc::WEXITSTATUS(status));
            } else if libc::WIFSIGNALED(status) {
                let sig = libc::WTERMSIG(status);
                let name = signals::full_name(sig);
                match sig {
                    libc::SIGKILL => crate::log::error!("Worker (pid:{pid}) was sent {name}! Perhaps out of memory?"),
                    libc::SIGTERM => crate::log::info!("Worker (pid:{pid}) was sent {name}!"),
                    _ => crate::log::warning!("Worker (pid:{pid}) was sent {name}!"),
                }
            }
            if let Some(code) = exit_code.filter(|c| *c != 0) {
                crate::log::error!("Worker (pid:{pid}) exited with code {code}.");
            }
            match exit_code {
                Some(WORKER_BOOT_ERROR) => {
                    return Err(Interrupt::Halt { reason: "Worker failed to boot.".into(), status: WORKER_BOOT_ERROR })
                }
                Some(APP_LOAD_ERROR) => {
                    return Err(Interrupt::Halt { reason: "App failed to load.".into(), status: APP_LOAD_ERROR })
                }
                _ => {}
            }
            self.hooks.child_exit(py, &server_state!(self), pid)?;
        }
    }

    fn kill_workers(&self, sig: libc::c_int) {
        for pid in self.workers.keys() {
            kill(*pid, sig);
        }
    }

    /// Stops every worker: TERM (graceful) or QUIT (fast), waiting up to
    /// graceful_timeout (2 s after a fast stop is asked for), then KILL.
    fn stop(&mut self, py: Python<'_>, graceful: bool) {
        self.service.stopping();
        self.stopping = true;
        // systemd made (and will remove) the sockets it passed; the other
        // master of an upgrade still serves on the same ones.
        let unlink = !self.settings.reuse_port && !self.systemd && self.reexec_pid == 0 && self.master_pid == 0;
        self.close_control();
        for l in self.listeners.drain(..) {
            l.close(unlink);
        }
        let sig = if graceful { libc::SIGTERM } else { libc::SIGQUIT };
        let mut deadline = Instant::now() + self.settings.graceful_timeout;
        self.kill_workers(sig);
        let mut quick = !graceful;
        while !self.workers.is_empty() && Instant::now() < deadline {
            let _ = self.reap_workers(py);
            if self.workers.is_empty() {
                break;
            }
            // Probes keep being answered ("shutting down") meanwhile.
            let signals = py.detach(|| self.serve_metrics_while_stopping(Duration::from_millis(100)));
            if !quick && signals.iter().any(|s| *s == libc::SIGINT || *s == libc::SIGQUIT) {
                crate::log::info!("Quick shutdown requested");
                quick = true;
                self.kill_workers(libc::SIGQUIT);
                deadline = Instant::now() + Duration::from_secs(2);
            }
        }
        self.kill_workers(libc::SIGKILL);
        let _ = self.reap_workers(py);
        self.stop_dirty(py, graceful && !quick);
        self.dirty.close();
        self.services.close();
    }

    fn halt(&mut self, py: Python<'_>, reason: Option<String>, status: i32) -> i32 {
        if status == 0 {
            crate::log::info!("Shutting down: {}", self.master_name());
        } else {
            crate::log::error!("Shutting down: {}", self.master_name());
        }
        if let Some(reason) = reason {
            if status == 0 {
                crate::log::info!("Reason: {reason}");
            } else {
                crate::log::error!("Reason: {reason}");
            }
        }
        if let Some(pf) = self.pidfile.take() {
            pf.unlink();
        }
        match self.hooks.on_exit(py, &server_state!(self)) {
            Ok(()) => status,
            Err(exit) => exit.status,
        }
    }

    /// USR2: fork a new master that execs the same command line with the
    /// listening sockets (Gunicorn's `reexec`). Only one upgrade at a time.
    fn reexec(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        if self.reexec_pid != 0 {
            crate::log::warning!("USR2 signal ignored. Child exists.");
            return Ok(());
        }
        if self.master_pid != 0 {
            crate::log::warning!("USR2 signal ignored. Parent exists.");
            return Ok(());
        }
        let old_master = self.pid;
        match self.signals.fork(py) {
            Ok(Forked::Parent(pid)) => {
                self.reexec_pid = pid;
                Ok(())
            }
            Ok(Forked::Child) => {
                // Gunicorn calls pre_exec in the child, just before the exec.
                if let Err(exit) = self.hooks.pre_exec(py, &server_state!(self)) {
                    crate::log::error!("pre_exec called sys.exit({}): not re-executing", exit.status);
                    // SAFETY: leaving the forked child without the parent's
                    // destructors.
                    unsafe { libc::_exit(exit.status) };
                }
                let handover = if self.systemd {
                    reexec::Handover::Systemd(&self.listeners)
                } else {
                    reexec::Handover::Fds(&self.listeners)
                };
                reexec::exec_new_master(py, old_master, handover)
            }
            Err(e) => {
                crate::log::error!("fork failed: {e}");
                Ok(())
            }
        }
    }

    /// A new master whose old master has exited takes over: its pid file
    /// gets the real name and its title loses the ".2" (Gunicorn's
    /// `maybe_promote_master`).
    fn maybe_promote(&mut self, py: Python<'_>) {
        // SAFETY: getppid cannot fail.
        if self.master_pid == 0 || self.master_pid == unsafe { libc::getppid() } {
            return;
        }
        crate::log::info!("Master has been promoted.");
        self.master_pid = 0;
        // Python's os.environ too, as Gunicorn's `del os.environ[...]`.
        crate::python::unset_env(py, reexec::MASTER_PID_VAR);
        if let (Some(pf), Some(path)) = (self.pidfile.take(), self.settings.pidfile.as_ref()) {
            match pf.rename(path) {
                Ok(pf) => self.pidfile = Some(pf),
                Err(e) => crate::log::error!("{e}"),
            }
        }
        crate::util::proctitle::set(&format!("ferrocorn: master [{}]", self.proc_name()));
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: spreads spawn pauses and max-requests jitter; nothing
        // here needs a cryptographic generator.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// The listeners a USR2 re-exec handed over, by fd. An fd named twice is
/// taken once: two owners of one descriptor would close it twice (the
/// second time, whatever the number had been reused for).
fn inherit(fds: &[std::os::fd::RawFd], settings: &Settings) -> Result<Vec<Listener>, String> {
    let backlog = settings.listen_backlog();
    let mut seen = Vec::with_capacity(fds.len());
    let mut out = Vec::with_capacity(fds.len());
    for &fd in fds {
        if seen.contains(&fd) {
            continue;
        }
        seen.push(fd);
        out.push(Listener::from_fd(fd, backlog).map_err(|e| format!("cannot use inherited socket fd {fd}: {e}"))?);
    }
    Ok(out)
}

fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid we forked; ESRCH (already gone) is harmless,
    // the reaper will account for it.
    if unsafe { libc::kill(pid, sig) } == 0 {
        stats::note_signal_sent(sig);
    }
}
