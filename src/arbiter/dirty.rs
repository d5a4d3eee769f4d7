//! The master's side of the dirty arbiters: the dirty socket, bound once
//! here and kept for the master's life (a dirty arbiter that is replaced
//! hands over the same path, and callers wait in its backlog meanwhile),
//! forking the dirty arbiter and replacing it when it dies, passing HUP and
//! USR1 on, stopping it after the HTTP workers, and the shared board the
//! control socket and the metrics read.

use super::{Arbiter, Interrupt};
use crate::dirty::arbiter::ArbiterCtx;
use crate::dirty::board::{Board, Restart};
use crate::python::Forked;
use pyo3::prelude::*;
use socket2::{Domain, SockAddr, Socket, Type};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A dirty arbiter that dies is replaced at most this often.
const RESPAWN_EVERY: Duration = Duration::from_secs(1);
/// Connections waiting for the dirty arbiter to accept them.
const BACKLOG: i32 = 1024;

struct DirtySocket {
    sock: Socket,
    dir: PathBuf,
    path: PathBuf,
}

#[derive(Default)]
pub struct DirtySide {
    socket: Option<DirtySocket>,
    /// The dirty arbiter's pid, 0 when none runs.
    pub pid: i32,
    board: Option<Board>,
    respawn_at: Option<Instant>,
    /// Dirty arbiters that died and were replaced.
    pub restarts: u64,
}

/// One dirty worker, as the board shows it.
pub struct DirtyWorkerView {
    pub pid: i32,
    pub age: u64,
    pub apps: Vec<String>,
    pub booted: bool,
    pub silent: Duration,
    pub calls: u64,
    pub in_flight: u64,
    pub retiring: bool,
}

/// One dirty app, as the board shows it.
pub struct DirtyAppView {
    pub path: String,
    /// None: every worker loads it.
    pub worker_count: Option<usize>,
    pub worker_pids: Vec<i32>,
    pub calls: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub in_flight: u64,
    /// Call durations: per latency bucket, and their sum in microseconds.
    pub latency: ([u64; crate::scoreboard::counts::BUCKETS], u64),
}

/// The dirty side for `ferrocornc` and the metrics, read from the board
/// without asking the dirty arbiter anything.
pub struct DirtyView {
    pub pid: i32,
    pub target: u64,
    pub queued: u64,
    pub clients: u64,
    /// Oldest first.
    pub workers: Vec<DirtyWorkerView>,
    pub apps: Vec<DirtyAppView>,
    /// Dirty arbiters that died and were replaced.
    pub arbiter_restarts: u64,
    /// Dirty workers replaced, by cause.
    pub restarts: Vec<(&'static str, u64)>,
    pub spawned: u64,
}

impl DirtySide {
    /// What runs now; None while no dirty arbiter runs.
    pub fn view(&self) -> Option<DirtyView> {
        let board = self.board.as_ref()?;
        if self.pid == 0 {
            return None;
        }
        let apps = board.apps();
        let now = crate::scoreboard::now_ms();
        let mut workers: Vec<DirtyWorkerView> = board
            .live_workers()
            .map(|w| {
                let mask = w.apps.load(Ordering::Relaxed);
                DirtyWorkerView {
                    pid: w.pid.load(Ordering::Relaxed),
                    age: w.age.load(Ordering::Relaxed),
                    apps: apps.iter().filter(|(i, _, _)| mask & (1u64 << i) != 0).map(|(_, n, _)| n.clone()).collect(),
                    booted: w.booted(),
                    silent: Duration::from_millis(w.silent_for_ms(now)),
                    calls: w.calls.load(Ordering::Relaxed),
                    in_flight: w.in_flight.load(Ordering::Relaxed),
                    retiring: w.retiring(),
                }
            })
            .collect();
        workers.sort_by_key(|w| w.age);
        let apps = apps
            .into_iter()
            .map(|(i, path, worker_count)| {
                let slot = board.app(i);
                let load = |f: fn(&crate::dirty::board::AppSlot) -> &std::sync::atomic::AtomicU64| {
                    slot.map_or(0, |s| f(s).load(Ordering::Relaxed))
                };
                let worker_pids = workers.iter().filter(|w| w.apps.contains(&path)).map(|w| w.pid).collect();
                DirtyAppView {
                    worker_pids,
                    worker_count,
                    calls: load(|s| &s.calls),
                    errors: load(|s| &s.errors),
                    timeouts: load(|s| &s.timeouts),
                    in_flight: load(|s| &s.in_flight),
                    latency: slot.map(|s| s.latency()).unwrap_or_default(),
                    path,
                }
            })
            .collect();
        let head = board.head();
        Some(DirtyView {
            pid: self.pid,
            target: head.target.load(Ordering::Relaxed),
            queued: head.queued.load(Ordering::Relaxed),
            clients: head.clients.load(Ordering::Relaxed),
            workers,
            apps,
            arbiter_restarts: self.restarts,
            restarts: Restart::ALL.iter().map(|r| (r.label(), board.restarts(*r))).collect(),
            spawned: head.spawned.load(Ordering::Relaxed),
        })
    }

    /// `dirty add N` / `dirty remove N`: Gunicorn's MANAGE message to the
    /// dirty arbiter, whose answer is passed on. It answers at once (a
    /// spawn is a fork); two seconds at most, as Gunicorn waits.
    pub fn manage(&self, add: bool, count: i64) -> Result<crate::dirty::wire::tlv::Value, String> {
        use crate::dirty::wire::frame::{self, Header, Kind, HEADER_LEN};
        use crate::dirty::wire::tlv::{self, Value};
        use std::io::{Read, Write};
        let path = self.socket.as_ref().ok_or("Cannot find dirty arbiter socket path")?.path.clone();
        let op = if add { 1 } else { 2 };
        let body = Value::dict([("op", Value::Int(op)), ("count", Value::Int(count.max(1)))]).encode();
        let message = frame::frame(Kind::Manage, 1, &body);
        let talk = || -> Result<Value, String> {
            let mut sock = std::os::unix::net::UnixStream::connect(&path).map_err(|e| e.to_string())?;
            let limit = Some(Duration::from_secs(2));
            sock.set_read_timeout(limit).map_err(|e| e.to_string())?;
            sock.set_write_timeout(limit).map_err(|e| e.to_string())?;
            sock.write_all(&message).map_err(|e| e.to_string())?;
            let mut head = [0u8; HEADER_LEN];
            sock.read_exact(&mut head).map_err(|e| e.to_string())?;
            let h = Header::parse(&head, false).map_err(|e| e.to_string())?;
            let mut payload = vec![0u8; h.len];
            sock.read_exact(&mut payload).map_err(|e| e.to_string())?;
            let v = tlv::decode(&payload).map_err(|e| e.to_string())?;
            match h.kind {
                Kind::Response => Ok(v.get("result").cloned().unwrap_or(Value::None)),
                _ => Err(v
                    .get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("Unexpected response")
                    .to_owned()),
            }
        };
        talk()
    }

    /// The master stops: the socket's file and directory go.
    pub fn close(&mut self) {
        if let Some(s) = self.socket.take() {
            let _ = std::fs::remove_file(&s.path);
            let _ = std::fs::remove_dir(&s.dir);
        }
    }
}

/// A private directory in the temporary directory (Python's
/// `tempfile.mkdtemp`, as Gunicorn makes it), holding `arbiter.sock` with
/// mode 0600; with `-u`/`-g` both belong to the workers' user, who connect.
fn bind_socket(py: Python<'_>, uid: i64, gid: i64) -> Result<DirtySocket, String> {
    let dir: String = py
        .import("tempfile")
        .and_then(|t| t.call_method1("mkdtemp", ((), "ferrocorn-dirty-")))
        .or_else(|_| {
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("prefix", "ferrocorn-dirty-")?;
            py.import("tempfile")?.call_method("mkdtemp", (), Some(&kwargs))
        })
        .and_then(|d| d.extract())
        .map_err(|e| format!("cannot make the dirty socket's directory: {e}"))?;
    let dir = PathBuf::from(dir);
    let path = dir.join("arbiter.sock");
    let made = (|| -> std::io::Result<Socket> {
        let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        let addr = SockAddr::unix(&path)?;
        crate::util::owner::with_umask(0o177, || sock.bind(&addr))?;
        sock.listen(BACKLOG)?;
        Ok(sock)
    })();
    let sock = made.map_err(|e| format!("cannot bind the dirty socket {}: {e}", path.display()))?;
    // SAFETY: geteuid/getegid cannot fail.
    let (me_u, me_g) = unsafe { (i64::from(libc::geteuid()), i64::from(libc::getegid())) };
    if uid != me_u || gid != me_g {
        for p in [&dir, &path] {
            if let Err(e) = crate::util::owner::chown(&p.to_string_lossy(), uid, gid) {
                crate::log::warning!("Cannot give {} to the workers' user: {e}", p.display());
            }
        }
    }
    Ok(DirtySocket { sock, dir, path })
}

impl Arbiter {
    /// At start, as Gunicorn starts its dirty arbiter: after the listeners,
    /// before `when_ready` and the first HTTP worker (which find the socket
    /// through `GUNICORN_DIRTY_SOCKET`).
    pub(super) fn start_dirty(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        if !crate::dirty::enabled(&self.settings) {
            // A master re-executed by USR2 inherits its old master's
            // variable: its workers must not call a dirty arbiter that is
            // not theirs.
            crate::python::unset_env(py, crate::dirty::SOCKET_ENV);
            if !self.settings.dirty_apps.is_empty() || self.settings.dirty_workers > 0 {
                crate::log::info!("No dirty arbiter: it needs both dirty_apps and dirty_workers");
            }
            return Ok(());
        }
        self.spawn_dirty(py)
    }

    fn spawn_dirty(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        if self.dirty.socket.is_none() {
            let s = bind_socket(py, self.settings.user, self.settings.group)
                .map_err(|reason| Interrupt::Halt { reason, status: 1 })?;
            crate::python::set_env(py, crate::dirty::SOCKET_ENV, &s.path.to_string_lossy());
            self.dirty.socket = Some(s);
        }
        if self.dirty.board.is_none() {
            let board = Board::new().map_err(|e| Interrupt::Halt { reason: format!("dirty board: {e}"), status: 1 })?;
            self.dirty.board = Some(board);
        }
        let (Some(socket), Some(board)) = (&self.dirty.socket, &self.dirty.board) else { return Ok(()) };
        let listener =
            socket.sock.try_clone().map_err(|e| Interrupt::Halt { reason: format!("dirty socket: {e}"), status: 1 })?;
        let socket_path = socket.path.to_string_lossy().into_owned();
        let board = board.clone();
        board.head().arbiters.fetch_add(1, Ordering::Relaxed);
        match self.signals.fork(py) {
            Ok(Forked::Parent(pid)) => {
                drop(listener);
                self.dirty.pid = pid;
                crate::log::info!("Spawned dirty arbiter (pid: {pid}) at {socket_path}");
                Ok(())
            }
            Ok(Forked::Child) => {
                let ctx = ArbiterCtx {
                    settings: self.settings.clone(),
                    argv: self.argv.clone(),
                    listener,
                    socket_path,
                    board,
                    master_pid: self.pid,
                    proc_name: self.proc_name(),
                    fresh_start: self.master_pid == 0,
                };
                Err(Interrupt::Dirty(Box::new(ctx)))
            }
            Err(e) => {
                crate::log::error!("fork failed: {e}");
                self.dirty.respawn_at = Some(Instant::now() + RESPAWN_EVERY);
                Ok(())
            }
        }
    }

    /// The dirty arbiter was reaped (Gunicorn's log lines).
    pub(super) fn dirty_exited(&mut self, pid: i32, status: i32) {
        if libc::WIFEXITED(status) {
            match libc::WEXITSTATUS(status) {
                0 => crate::log::info!("Dirty arbiter (pid:{pid}) exited"),
                code => crate::log::error!("Dirty arbiter (pid:{pid}) exited with code {code}"),
            }
        } else if libc::WIFSIGNALED(status) {
            crate::log::warning!("Dirty arbiter (pid:{pid}) killed by signal {}", libc::WTERMSIG(status));
        }
        self.dirty.pid = 0;
        if let Some(b) = &self.dirty.board {
            b.head().arbiter_pid.store(0, Ordering::Relaxed);
            b.clear_pool();
        }
        self.dirty.respawn_at = Some(Instant::now() + RESPAWN_EVERY);
    }

    /// Each turn: a dirty arbiter that died is replaced (not while
    /// stopping: `stop` does not come back here).
    pub(super) fn manage_dirty(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        if self.dirty.pid != 0 || !crate::dirty::enabled(&self.settings) {
            return Ok(());
        }
        if self.dirty.respawn_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        if self.dirty.respawn_at.is_some() {
            self.dirty.restarts += 1;
            crate::log::info!("Spawning dirty arbiter...");
        }
        self.dirty.respawn_at = None;
        self.spawn_dirty(py)
    }

    /// After a HUP: the dirty arbiter reloads too, is stopped if the new
    /// configuration has none, or starts if it now has one.
    pub(super) fn reload_dirty(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        let wanted = crate::dirty::enabled(&self.settings);
        match (self.dirty.pid, wanted) {
            (0, true) => self.spawn_dirty(py),
            (0, false) => Ok(()),
            (pid, true) => {
                super::kill(pid, libc::SIGHUP);
                Ok(())
            }
            (pid, false) => {
                crate::log::info!("The configuration has no dirty workers any more: stopping the dirty arbiter");
                // The new generation of HTTP workers has none to call.
                crate::python::unset_env(py, crate::dirty::SOCKET_ENV);
                super::kill(pid, libc::SIGTERM);
                Ok(())
            }
        }
    }

    pub(super) fn signal_dirty(&self, sig: libc::c_int) {
        if self.dirty.pid != 0 {
            super::kill(self.dirty.pid, sig);
        }
    }

    /// Stops the dirty arbiter once the HTTP workers are gone (they may
    /// call dirty apps until their last request): TERM (it lets calls in
    /// progress finish, up to `dirty_graceful_timeout`) or QUIT, then KILL.
    pub(super) fn stop_dirty(&mut self, py: Python<'_>, graceful: bool) {
        if self.dirty.pid == 0 {
            return;
        }
        let (sig, limit) = if graceful {
            (libc::SIGTERM, self.settings.dirty_graceful_timeout + Duration::from_secs(5))
        } else {
            (libc::SIGQUIT, Duration::from_secs(3))
        };
        self.signal_dirty(sig);
        let deadline = Instant::now() + limit;
        while self.dirty.pid != 0 && Instant::now() < deadline {
            let _ = self.reap_workers(py);
            if self.dirty.pid != 0 {
                py.detach(|| std::thread::sleep(Duration::from_millis(50)));
            }
        }
        if self.dirty.pid != 0 {
            self.signal_dirty(libc::SIGKILL);
            let mut status = 0;
            // SAFETY: waits for our own child, which was just killed.
            let pid = unsafe { libc::waitpid(self.dirty.pid, &mut status, 0) };
            if pid > 0 {
                self.dirty_exited(pid, status);
            }
        }
    }
}
