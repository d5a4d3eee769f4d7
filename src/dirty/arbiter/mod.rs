//! The dirty arbiter process, forked by the master: it listens on the
//! dirty socket (`GUNICORN_DIRTY_SOCKET`, bound by the master), forks and
//! supervises the dirty workers, routes each call to a free thread of a
//! worker that loads the app, relays the answer (a stream chunk by chunk),
//! keeps the stash, and enforces `dirty_timeout`. One thread, one poll
//! loop; the only Python it runs is the hooks and the stash.
//!
//! Each worker thread has its own socket to the arbiter (a lane): a lane
//! carries one call at a time, so a worker runs up to `dirty_threads`
//! calls at once and a slow caller of a stream holds back only its own
//! lane. Answers are relayed without being assembled (`relay.rs`).
//!
//! Signals (sent by the master, or by hand to this pid): TERM stops
//! gracefully (calls in progress finish), INT and QUIT at once, HUP reads
//! the settings again and replaces the workers (the new ones first), USR1
//! reopens the logs, TTIN/TTOU add or remove a worker.

mod answers;
mod callers;
mod calls;
mod pool;
mod probe;
pub mod relay;
mod sockio;

use crate::arbiter::signals::SignalQueue;
use crate::dirty::board::Board;
use crate::dirty::spec::AppSpec;
use crate::dirty::worker::WorkerCtx;
use crate::settings::Settings;
use crate::workers::core::slab::{Key, Slab, SlotKey};
use callers::Caller;
use pool::Worker;
use pyo3::prelude::*;
use socket2::Socket;
use std::collections::{HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the dirty arbiter takes from the master across fork.
pub struct ArbiterCtx {
    pub settings: Arc<Settings>,
    /// The command line, to read the settings again on HUP.
    pub argv: Vec<String>,
    /// The dirty socket, listening (the master keeps its own copy, so a
    /// replacement arbiter takes the same socket).
    pub listener: Socket,
    pub socket_path: String,
    pub board: Board,
    pub master_pid: i32,
    pub proc_name: String,
    /// Not the new master of a USR2 upgrade: a dirty arbiter left behind by
    /// a crashed server may be stopped.
    pub fresh_start: bool,
}

/// How the dirty arbiter ended in this process.
pub enum Outcome {
    Exit(i32),
    /// This process is a freshly forked dirty worker.
    Worker(Box<WorkerCtx>),
}

/// Why the loop stopped turning; `?` carries it out of the loop.
enum Unwind {
    Worker(Box<WorkerCtx>),
    Exit(i32),
}

const SIGNALS: &[libc::c_int] = &[
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGUSR1,
    libc::SIGCHLD,
    // Queued and ignored: their default action would end the process.
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// A caller's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallerKey(SlotKey);

impl Key for CallerKey {
    fn from_slot(key: SlotKey) -> Self {
        CallerKey(key)
    }
    fn slot(self) -> SlotKey {
        self.0
    }
}

/// One of `dirty_apps`, with the worker count in force.
#[derive(Debug, Clone)]
pub struct App {
    pub path: String,
    /// None: every worker loads it.
    pub workers: Option<usize>,
}

struct Stopping {
    graceful: bool,
    deadline: Instant,
    killed: bool,
}

pub struct Arbiter {
    settings: Arc<Settings>,
    argv: Vec<String>,
    listener: Option<Socket>,
    socket_path: String,
    board: Board,
    signals: SignalQueue,
    master_pid: i32,
    pid: i32,
    proc_name: String,
    pidfile: Option<std::path::PathBuf>,
    apps: Vec<App>,
    callers: Slab<CallerKey, Caller>,
    /// Calls waiting for a free worker thread, oldest first.
    queue: VecDeque<CallerKey>,
    workers: HashMap<i32, Worker>,
    /// The pool size kept (`dirty_workers`, TTIN/TTOU, `dirty add`).
    num_workers: usize,
    worker_age: u64,
    /// The apps of workers that died, for their replacements (Gunicorn
    /// gives a replacement the same apps).
    respawns: VecDeque<Vec<String>>,
    free_slots: Vec<usize>,
    /// After a worker fails to boot, the next spawn waits (doubling).
    spawn_after: Instant,
    boot_failures: u32,
    /// Reading the apps' `workers` attributes (at start, and on HUP).
    probe: Option<probe::Probe>,
    stash: Py<PyAny>,
    /// The hooks' `arbiter` object.
    obj: Py<PyAny>,
    stopping: Option<Stopping>,
    /// Request bytes held (read, or waiting for a thread).
    buffered: usize,
    /// The next number given to a call on a lane.
    next_call: u64,
    /// Round-robin position per app.
    rr: Vec<usize>,
    scratch: Vec<u8>,
}

/// Bytes of requests the arbiter holds at most; past it, callers' payloads
/// wait in their sockets until calls drain.
const INPUT_BUDGET: usize = 256 * 1024 * 1024;
/// A request whose bytes stop coming for this long is dropped.
const FRAME_STALL: Duration = Duration::from_secs(30);
/// Callers connected at once, at most.
const MAX_CALLERS: usize = 4096;

pub fn run(py: Python<'_>, ctx: ArbiterCtx) -> Outcome {
    let pid = std::process::id() as i32;
    crate::util::proctitle::set(&format!("ferrocorn: dirty-arbiter [{}]", ctx.proc_name));
    // SAFETY: prctl with plain integer arguments: TERM when the master
    // dies, whatever this process is doing then.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    crate::log::info!("Dirty arbiter starting (pid: {pid})");
    crate::arbiter::freeze::in_dirty_arbiter(py, &ctx.settings);
    let mut arbiter = match Arbiter::new(py, ctx, pid) {
        Ok(a) => a,
        Err(e) => {
            crate::log::error!("Dirty arbiter failed to start: {e}");
            return Outcome::Exit(1);
        }
    };
    let ended = arbiter.start(py).and_then(|()| arbiter.serve(py));
    match ended {
        Ok(never) => match never {},
        Err(Unwind::Worker(ctx)) => Outcome::Worker(ctx),
        Err(Unwind::Exit(status)) => {
            arbiter.cleanup();
            Outcome::Exit(status)
        }
    }
}

impl Arbiter {
    fn new(py: Python<'_>, ctx: ArbiterCtx, pid: i32) -> Result<Arbiter, String> {
        let signals = SignalQueue::install_for(SIGNALS).map_err(|e| format!("cannot install signal handlers: {e}"))?;
        ctx.listener.set_nonblocking(true).map_err(|e| format!("dirty socket: {e}"))?;
        let stash = py
            .import("ferrocorn.dirty._arbiter")
            .and_then(|m| m.getattr("Store"))
            .and_then(|c| c.call0())
            .map_err(|e| crate::python::format_exception(py, &e))?
            .unbind();
        let obj = super::hooks::arbiter_object(py, pid, ctx.master_pid, &ctx.socket_path)
            .map_err(|e| crate::python::format_exception(py, &e))?;
        let pidfile = super::pidfile::path(&ctx.proc_name);
        if ctx.fresh_start {
            super::pidfile::stop_orphan(&pidfile, pid);
        }
        let pidfile = match super::pidfile::write(&pidfile, pid) {
            Ok(()) => Some(pidfile),
            Err(e) => {
                crate::log::warning!("Not writing dirty arbiter PID file {}: {e}", pidfile.display());
                None
            }
        };
        ctx.board.clear_pool();
        ctx.board.head().arbiter_pid.store(pid, std::sync::atomic::Ordering::Relaxed);
        let num_workers = ctx.settings.dirty_workers;
        Ok(Arbiter {
            settings: ctx.settings,
            argv: ctx.argv,
            listener: Some(ctx.listener),
            socket_path: ctx.socket_path,
            board: ctx.board,
            signals,
            master_pid: ctx.master_pid,
            pid,
            proc_name: ctx.proc_name,
            pidfile,
            apps: Vec::new(),
            callers: Slab::default(),
            queue: VecDeque::new(),
            workers: HashMap::new(),
            num_workers,
            worker_age: 0,
            respawns: VecDeque::new(),
            free_slots: (0..crate::dirty::board::MAX_WORKERS).rev().collect(),
            spawn_after: Instant::now(),
            boot_failures: 0,
            probe: None,
            stash,
            obj,
            stopping: None,
            buffered: 0,
            next_call: 1,
            rr: Vec::new(),
            scratch: vec![0u8; 64 * 1024],
        })
    }

    /// Gunicorn sets the socket for its workers' stash and calls
    /// `on_dirty_starting` before its loop; the apps' worker counts are
    /// read before the first worker is forked.
    fn start(&mut self, py: Python<'_>) -> Result<(), Unwind> {
        crate::python::set_env(py, crate::dirty::SOCKET_ENV, &self.socket_path);
        let obj = self.obj.bind(py).clone();
        if let Err(exit) = super::hooks::on_dirty_starting(py, &self.settings, &obj) {
            return Err(Unwind::Exit(exit.status));
        }
        crate::log::info!("Dirty arbiter listening on {}", self.socket_path);
        let specs = AppSpec::parse_all(&self.settings.dirty_apps).map_err(|e| {
            crate::log::error!("{e}");
            Unwind::Exit(1)
        })?;
        self.resolve_apps(py, self.settings.clone(), specs, false)
    }

    fn serve(&mut self, py: Python<'_>) -> Result<std::convert::Infallible, Unwind> {
        loop {
            self.manage(py)?;
            self.dispatch();
            let (mut fds, who) = self.poll_set();
            let wait = self.wait_time();
            let signals = &self.signals;
            let queued = py.detach(|| signals.wait_with(&mut fds, wait));
            for sig in queued {
                self.on_signal(py, sig)?;
            }
            for (pfd, w) in fds.iter().zip(who) {
                if pfd.revents != 0 {
                    self.on_ready(py, w, pfd.revents)?;
                }
            }
            self.tick(py);
            if let Some(status) = self.finished() {
                return Err(Unwind::Exit(status));
            }
        }
    }

    fn poll_set(&self) -> (Vec<libc::pollfd>, Vec<Who>) {
        let mut fds = Vec::with_capacity(2 + self.callers.len() + self.workers.len() * 2);
        let mut who = Vec::with_capacity(fds.capacity());
        let mut add = |fd: i32, events: i16, w: Who| {
            fds.push(libc::pollfd { fd, events, revents: 0 });
            who.push(w);
        };
        if let Some(l) = &self.listener {
            if self.callers.len() < MAX_CALLERS {
                add(l.as_raw_fd(), libc::POLLIN, Who::Listener);
            }
        }
        if let Some(p) = &self.probe {
            add(p.fd(), libc::POLLIN, Who::Probe);
        }
        for (key, c) in self.callers.iter() {
            add(c.fd(), self.caller_interest(c), Who::Caller(key));
        }
        for (pid, w) in &self.workers {
            for (i, lane) in w.lanes.iter().enumerate() {
                if let Some(events) = self.lane_interest(lane) {
                    add(lane.fd(), events, Who::Lane(*pid, i));
                }
            }
        }
        (fds, who)
    }

    /// Until the next deadline (a call's timeout, a stop, a backoff), a
    /// second at most.
    fn wait_time(&self) -> Duration {
        let now = Instant::now();
        let mut next = now + Duration::from_secs(1);
        if let Some(deadline) = self.next_call_deadline() {
            next = next.min(deadline);
        }
        if let Some(s) = &self.stopping {
            if !s.killed {
                next = next.min(s.deadline);
            }
        }
        if self.spawn_after > now {
            next = next.min(self.spawn_after);
        }
        next.saturating_duration_since(now)
    }

    fn on_ready(&mut self, py: Python<'_>, who: Who, revents: i16) -> Result<(), Unwind> {
        match who {
            Who::Listener => self.accept_callers(),
            Who::Probe => self.probe_readable(py)?,
            Who::Caller(key) => self.caller_ready(py, key, revents)?,
            Who::Lane(pid, i) => self.lane_ready(pid, i, revents),
        }
        Ok(())
    }

    fn on_signal(&mut self, py: Python<'_>, sig: libc::c_int) -> Result<(), Unwind> {
        if sig == libc::SIGCHLD {
            self.reap(py);
            return Ok(());
        }
        if sig == 0 {
            return Ok(());
        }
        crate::log::info!("Dirty arbiter handling signal: {}", crate::arbiter::signals::name(sig));
        match sig {
            libc::SIGTERM => self.begin_stop(py, true),
            libc::SIGINT | libc::SIGQUIT => self.begin_stop(py, false),
            libc::SIGHUP => self.reload(py)?,
            libc::SIGUSR1 => {
                if let Err(e) = crate::log::reopen() {
                    crate::log::error!("reopening log files failed: {e}");
                }
                for pid in self.workers.keys() {
                    pool::kill(*pid, libc::SIGUSR1);
                }
            }
            libc::SIGTTIN => {
                self.num_workers += 1;
                crate::log::info!("SIGTTIN: Increasing dirty workers to {}", self.num_workers);
                self.publish_pool(py);
            }
            libc::SIGTTOU => {
                let min = self.min_workers();
                if self.num_workers <= min {
                    crate::log::warning!("SIGTTOU: Cannot decrease below {min} workers (required by app specs)");
                } else {
                    self.num_workers -= 1;
                    crate::log::info!("SIGTTOU: Decreasing dirty workers to {}", self.num_workers);
                    self.publish_pool(py);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Timers: calls past `dirty_timeout`, silent workers, stalled
    /// requests, the parent, the stop's deadline.
    fn tick(&mut self, py: Python<'_>) {
        let now = Instant::now();
        self.expire_calls(now);
        self.murder_workers(now);
        self.drop_stalled_callers(now);
        if let Some(p) = &self.probe {
            if now >= p.deadline() {
                self.probe_expired(py);
            }
        }
        // SAFETY: getppid cannot fail.
        if self.stopping.is_none() && unsafe { libc::getppid() } != self.master_pid {
            crate::log::warning!("Parent changed, shutting down dirty arbiter");
            self.begin_stop(py, true);
        }
        if let Some(s) = &mut self.stopping {
            if !s.killed && now >= s.deadline {
                s.killed = true;
                for pid in self.workers.keys() {
                    pool::kill(*pid, libc::SIGKILL);
                }
            }
        }
    }

    fn begin_stop(&mut self, py: Python<'_>, graceful: bool) {
        if let Some(s) = &mut self.stopping {
            if s.graceful && !graceful {
                // A quick stop asked while stopping gracefully.
                s.graceful = false;
                s.deadline = s.deadline.min(Instant::now() + Duration::from_secs(2));
                for pid in self.workers.keys() {
                    pool::kill(*pid, libc::SIGQUIT);
                }
            }
            return;
        }
        let _ = self.obj.bind(py).setattr("alive", false);
        // Our copy of the socket only: the master's stays, for the next
        // arbiter.
        self.listener = None;
        self.fail_queue(|_| Some(answers::shutting_down()));
        let (sig, grace) = if graceful {
            (libc::SIGTERM, self.settings.dirty_graceful_timeout)
        } else {
            (libc::SIGQUIT, Duration::from_secs(2))
        };
        for (pid, w) in self.workers.iter_mut() {
            w.leave(pool::Leaving::Stop);
            pool::kill(*pid, sig);
        }
        self.stopping = Some(Stopping { graceful, deadline: Instant::now() + grace, killed: false });
    }

    /// The exit status once stopping is done: every worker reaped and the
    /// last answers sent (or given a moment).
    fn finished(&mut self) -> Option<i32> {
        let stopping = self.stopping.as_ref()?;
        if !self.workers.is_empty() {
            return None;
        }
        let flush_until = stopping.deadline.max(Instant::now()) + Duration::from_secs(1);
        let keys: Vec<CallerKey> = self.callers.iter().map(|(k, _)| k).collect();
        while Instant::now() < flush_until {
            let mut left = false;
            for k in &keys {
                if let Some(c) = self.callers.get_mut(*k) {
                    left |= matches!(c.out.flush(c.fd()), Ok(false));
                }
            }
            if !left {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(0)
    }

    fn cleanup(&mut self) {
        if let Some(path) = self.pidfile.take() {
            super::pidfile::remove(&path, self.pid);
        }
        self.board.head().arbiter_pid.store(0, std::sync::atomic::Ordering::Relaxed);
        crate::log::info!("Dirty arbiter exiting (pid: {})", self.pid);
    }

    /// HUP: the settings read again; the workers are replaced, the new
    /// generation first (the old one serves until the new one can).
    fn reload(&mut self, py: Python<'_>) -> Result<(), Unwind> {
        if self.stopping.is_some() {
            return Ok(());
        }
        crate::log::info!("Reloading dirty workers");
        let loaded = match crate::settings::load(py, &self.argv) {
            Ok(l) => l,
            Err(exit) => {
                crate::log::error!("Reload failed, keeping the previous configuration:{}", exit.message.trim_end());
                return Ok(());
            }
        };
        let new = loaded.settings;
        if !super::enabled(&new) {
            // The master stops this arbiter when it sees the same.
            crate::log::warning!("The new configuration has no dirty workers: keeping the previous one");
            return Ok(());
        }
        let specs = match AppSpec::parse_all(&new.dirty_apps) {
            Ok(s) => s,
            Err(e) => {
                crate::log::error!("Reload failed, keeping the previous configuration: {e}");
                return Ok(());
            }
        };
        if let Err(e) = crate::runtime::apply(py, &new, Some(&self.settings)) {
            crate::log::error!("Reload failed, keeping the previous configuration: {e}");
            return Ok(());
        }
        if let Err(e) = crate::runtime::configure_logs(py, &new) {
            crate::log::error!("{e}");
        }
        let _ = super::hooks::refresh(py, self.obj.bind(py));
        self.resolve_apps(py, Arc::new(new), specs, true)
    }

    /// The app table once every worker count is known: directly when the
    /// settings give them all, else after the probe reads the classes.
    fn resolve_apps(
        &mut self,
        py: Python<'_>,
        settings: Arc<Settings>,
        specs: Vec<AppSpec>,
        reload: bool,
    ) -> Result<(), Unwind> {
        if let Some(old) = self.probe.take() {
            old.abandon();
        }
        match probe::Probe::start(py, &self.signals, settings, specs, reload) {
            Ok(probe::Started::Done { settings, apps, reload }) => {
                self.install_apps(py, settings, apps, reload);
                Ok(())
            }
            Ok(probe::Started::Running(p)) => {
                self.probe = Some(p);
                Ok(())
            }
            Err(e) => {
                crate::log::error!("Cannot read the dirty apps' worker counts: {e}");
                Err(Unwind::Exit(1))
            }
        }
    }

    fn probe_readable(&mut self, py: Python<'_>) -> Result<(), Unwind> {
        let done = match self.probe.as_mut() {
            Some(p) => p.readable(),
            None => return Ok(()),
        };
        if let Some(apps) = done {
            if let Some(p) = self.probe.take() {
                let (settings, reload) = p.finish();
                self.install_apps(py, settings, apps, reload);
            }
        }
        Ok(())
    }

    fn probe_expired(&mut self, py: Python<'_>) {
        if let Some(p) = self.probe.take() {
            crate::log::warning!("Reading the dirty apps' worker counts took too long: every worker loads them");
            let apps = p.fallback();
            let (settings, reload) = p.finish();
            self.install_apps(py, settings, apps, reload);
        }
    }

    fn install_apps(&mut self, py: Python<'_>, settings: Arc<Settings>, apps: Vec<App>, reload: bool) {
        let published: Vec<(&str, Option<usize>)> = apps.iter().map(|a| (a.path.as_str(), a.workers)).collect();
        self.board.set_apps(&published);
        self.rr = vec![0; apps.len()];
        if reload {
            self.num_workers = settings.dirty_workers;
            self.respawns.clear();
            self.boot_failures = 0;
            self.spawn_after = Instant::now();
            for w in self.workers.values_mut() {
                w.outdated = true;
            }
        }
        self.apps = apps;
        self.settings = settings;
        self.remap_workers();
        self.publish_specs(py);
        self.publish_pool(py);
    }
}

/// What a polled fd belongs to.
#[derive(Debug, Clone, Copy)]
enum Who {
    Listener,
    Probe,
    Caller(CallerKey),
    Lane(i32, usize),
}
