//! The dirty workers: which apps a new one loads (Gunicorn's allocation:
//! apps for every worker, plus limited apps until they reach their count;
//! a replacement gets the apps of the worker it replaces), forking, reaping,
//! the pool size, and killing workers that stopped beating or outlived
//! their stop.

use super::calls::LaneState;
use super::relay::Relay;
use super::sockio::Outbox;
use super::{Arbiter, Unwind};
use crate::dirty::board::Restart;
use crate::dirty::worker::{WorkerCtx, BOOT_ERROR};
use crate::python::Forked;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use socket2::{Domain, Socket, Type};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// After ABRT, how long a worker has before KILL.
const ABORT_GRACE: Duration = Duration::from_secs(2);
/// The longest wait before spawning again after failed boots.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why the arbiter asked a worker to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// The pool shrank (TTOU, `dirty remove`): nobody replaces it.
    Shrink,
    /// A HUP's new generation took over.
    Reload,
    /// A call outlived `dirty_timeout`, or its heartbeat stopped.
    Timeout,
    /// The arbiter is stopping.
    Stop,
}

/// One thread's socket to a worker, and what it carries now.
pub struct Lane {
    pub sock: Socket,
    pub out: Outbox,
    pub relay: Relay,
    /// The worker's thread said it takes calls.
    pub ready: bool,
    pub state: LaneState,
}

impl Lane {
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

pub struct Worker {
    pub age: u64,
    pub slot: usize,
    /// The apps it loads, by import path.
    pub apps: Vec<String>,
    /// The same, as bits of the current app table.
    pub mask: u64,
    pub lanes: Vec<Lane>,
    /// The hooks' `worker` object.
    pub obj: Py<PyAny>,
    /// When ABRT was sent.
    pub aborted: Option<Instant>,
    pub leaving: Option<(Leaving, Instant)>,
    /// Of the generation before a HUP: serves until the new one can.
    pub outdated: bool,
}

impl Worker {
    pub fn leave(&mut self, why: Leaving) {
        if self.leaving.is_none() {
            self.leaving = Some((why, Instant::now()));
        }
    }

    /// Takes new calls: not asked to stop, not aborted.
    pub fn serving(&self) -> bool {
        self.leaving.is_none() && self.aborted.is_none()
    }
}

pub fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child of ours; ESRCH (already gone) is harmless,
    // the reaper accounts for it.
    unsafe { libc::kill(pid, sig) };
}

/// Python's repr of a list of str, as Gunicorn logs a worker's apps.
fn py_list(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        crate::util::pyrepr::repr_str(s, false, &mut out);
    }
    out.push(']');
    out
}

enum Spawned {
    Yes,
    /// No app needs another worker, or no fork could be made.
    No,
}

impl Arbiter {
    /// Workers of the current generation that take calls.
    fn current(&self) -> impl Iterator<Item = (&i32, &Worker)> {
        self.workers.iter().filter(|(_, w)| w.serving() && !w.outdated)
    }

    /// The most workers one app asks for: the pool never shrinks below it.
    pub(super) fn min_workers(&self) -> usize {
        self.apps.iter().filter_map(|a| a.workers).max().unwrap_or(1).max(1)
    }

    /// The bit of `path` in the current app table.
    pub(super) fn app_bit(&self, path: &str) -> u64 {
        self.apps.iter().position(|a| a.path == path).map_or(0, |i| 1u64 << i)
    }

    /// After the app table changed: each worker's bits, from its paths.
    pub(super) fn remap_workers(&mut self) {
        let masks: Vec<(i32, u64)> = self
            .workers
            .iter()
            .map(|(pid, w)| (*pid, w.apps.iter().map(|p| self.app_bit(p)).fold(0, |a, b| a | b)))
            .collect();
        for (pid, mask) in masks {
            if let Some(w) = self.workers.get_mut(&pid) {
                w.mask = mask;
                if let Some(slot) = self.board.worker(w.slot) {
                    slot.apps.store(mask, Ordering::Relaxed);
                }
            }
        }
    }

    /// The apps a new worker loads: every app without a limit, and the
    /// limited ones that have fewer workers than their limit.
    fn apps_for_new_worker(&self) -> Vec<String> {
        self.apps
            .iter()
            .filter(|a| match a.workers {
                None => true,
                Some(limit) => {
                    let bit = self.app_bit(&a.path);
                    self.current().filter(|(_, w)| w.mask & bit != 0).count() < limit
                }
            })
            .map(|a| a.path.clone())
            .collect()
    }

    /// Spawns and retires to keep the pool at its size; kills workers that
    /// outlived their stop.
    pub(super) fn manage(&mut self, py: Python<'_>) -> Result<(), Unwind> {
        let now = Instant::now();
        self.kill_overdue(now);
        if self.stopping.is_some() || self.probe.is_some() {
            return Ok(());
        }
        while self.current().count() < self.num_workers && now >= self.spawn_after {
            match self.spawn(py)? {
                Spawned::Yes => {}
                Spawned::No => break,
            }
        }
        let excess = self.current().count().saturating_sub(self.num_workers);
        if excess > 0 {
            let mut oldest: Vec<(u64, i32)> = self.current().map(|(pid, w)| (w.age, *pid)).collect();
            oldest.sort_unstable();
            for (_, pid) in oldest.into_iter().take(excess) {
                self.retire(pid, Leaving::Shrink);
            }
        }
        self.retire_replaced();
        Ok(())
    }

    fn retire(&mut self, pid: i32, why: Leaving) {
        if let Some(w) = self.workers.get_mut(&pid) {
            w.leave(why);
            if let Some(slot) = self.board.worker(w.slot) {
                slot.set_retiring();
            }
            kill(pid, libc::SIGTERM);
        }
    }

    /// Workers of the generation before a HUP go once every app they load
    /// has a booted worker of the new one (or is no longer configured).
    fn retire_replaced(&mut self) {
        let covered = |path: &String, this: &Arbiter| {
            let bit = this.app_bit(path);
            bit == 0 || this.current().any(|(_, w)| w.mask & bit != 0 && w.lanes.iter().any(|l| l.ready))
        };
        let done: Vec<i32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.outdated && w.serving() && w.apps.iter().all(|p| covered(p, self)))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in done {
            self.retire(pid, Leaving::Reload);
        }
    }

    fn kill_overdue(&mut self, now: Instant) {
        let grace = self.settings.dirty_graceful_timeout;
        for (pid, w) in &self.workers {
            let overdue_abort = w.aborted.is_some_and(|t| now.duration_since(t) > ABORT_GRACE);
            let overdue_stop = w.leaving.is_some_and(|(why, t)| why != Leaving::Stop && now.duration_since(t) > grace);
            if overdue_abort || overdue_stop {
                kill(*pid, libc::SIGKILL);
            }
        }
    }

    /// ABRT to a worker (its call timed out, or it stopped beating); KILL
    /// follows if it has not gone after [`ABORT_GRACE`].
    pub(super) fn abort_worker(&mut self, pid: i32) {
        if let Some(w) = self.workers.get_mut(&pid) {
            if w.aborted.is_none() {
                crate::log::critical!("DIRTY WORKER TIMEOUT (pid:{pid})");
                w.aborted = Some(Instant::now());
                w.leave(Leaving::Timeout);
                kill(pid, libc::SIGABRT);
            }
        }
    }

    /// Workers silent for longer than `dirty_timeout` (loading apps counts:
    /// the heartbeat starts at the fork).
    pub(super) fn murder_workers(&mut self, _now: Instant) {
        let timeout = u64::try_from(self.settings.dirty_timeout.as_millis()).unwrap_or(u64::MAX);
        if timeout == 0 {
            return;
        }
        let now_ms = crate::scoreboard::now_ms();
        let silent: Vec<i32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.aborted.is_none())
            .filter(|(_, w)| self.board.worker(w.slot).is_some_and(|s| s.silent_for_ms(now_ms) > timeout))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in silent {
            self.abort_worker(pid);
        }
    }

    fn spawn(&mut self, py: Python<'_>) -> Result<Spawned, Unwind> {
        let apps = match self.respawns.pop_front() {
            Some(apps) => apps,
            None => self.apps_for_new_worker(),
        };
        if apps.is_empty() {
            crate::log::debug!("No apps need more workers, skipping spawn");
            return Ok(Spawned::No);
        }
        let Some(slot) = self.free_slots.pop() else {
            crate::log::error!("Cannot run more than {} dirty workers", crate::dirty::board::MAX_WORKERS);
            return Ok(Spawned::No);
        };
        let threads = self.settings.dirty_threads.max(1);
        let mut ours = Vec::with_capacity(threads);
        let mut theirs = Vec::with_capacity(threads);
        for _ in 0..threads {
            match Socket::pair(Domain::UNIX, Type::STREAM, None) {
                Ok((a, b)) => {
                    ours.push(a);
                    theirs.push(OwnedFd::from(b));
                }
                Err(e) => {
                    crate::log::error!("Cannot make a dirty worker's sockets: {e}");
                    self.free_slots.push(slot);
                    return Ok(Spawned::No);
                }
            }
        }
        self.worker_age += 1;
        let age = self.worker_age;
        let obj = match super::super::hooks::worker_object(py, age, self.pid, &apps, &self.socket_path) {
            Ok(o) => o,
            Err(e) => {
                crate::log::error!("Cannot make a dirty worker: {}", crate::python::format_exception(py, &e));
                self.free_slots.push(slot);
                return Ok(Spawned::No);
            }
        };
        let mask = apps.iter().map(|p| self.app_bit(p)).fold(0, |a, b| a | b);
        if let Some(s) = self.board.worker(slot) {
            s.claim(age, mask, threads);
        }
        match self.signals.fork(py) {
            Ok(Forked::Parent(pid)) => {
                drop(theirs);
                let mut lanes = Vec::with_capacity(ours.len());
                for sock in ours {
                    if let Err(e) = sock.set_nonblocking(true) {
                        crate::log::error!("dirty worker socket: {e}");
                    }
                    lanes.push(Lane {
                        sock,
                        out: Outbox::default(),
                        relay: Relay::default(),
                        ready: false,
                        state: LaneState::Idle,
                    });
                }
                if let Some(s) = self.board.worker(slot) {
                    s.pid.store(pid, Ordering::Relaxed);
                }
                self.board.head().spawned.fetch_add(1, Ordering::Relaxed);
                let worker =
                    Worker { age, slot, apps, mask, lanes, obj, aborted: None, leaving: None, outdated: false };
                crate::log::info!("Spawned dirty worker (pid: {pid}) with apps: {}", py_list(&worker.apps));
                let (arbiter, wobj) = (self.obj.bind(py).clone(), worker.obj.bind(py).clone());
                let registered = wobj
                    .setattr("pid", pid)
                    .and_then(|()| arbiter.getattr("workers"))
                    .and_then(|d| d.set_item(pid, &wobj))
                    .and_then(|()| arbiter.setattr("worker_age", age));
                if let Err(e) = registered {
                    crate::hooks::log_failure(py, "dirty_post_fork", &e);
                }
                self.workers.insert(pid, worker);
                super::super::hooks::dirty_post_fork(py, &self.settings, &arbiter, &wobj);
                Ok(Spawned::Yes)
            }
            Ok(Forked::Child) => {
                drop(ours);
                let ctx = WorkerCtx {
                    settings: self.settings.clone(),
                    board: self.board.clone(),
                    slot,
                    ppid: self.pid,
                    lanes: theirs,
                    worker: obj,
                    proc_name: self.proc_name.clone(),
                };
                Err(Unwind::Worker(Box::new(ctx)))
            }
            Err(e) => {
                crate::log::error!("fork failed: {e}");
                if let Some(s) = self.board.worker(slot) {
                    s.release();
                }
                self.free_slots.push(slot);
                Ok(Spawned::No)
            }
        }
    }

    /// SIGCHLD: every exited worker is accounted for, its calls answered
    /// with an error, its apps queued for its replacement.
    pub(super) fn reap(&mut self, py: Python<'_>) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if self.probe.as_ref().is_some_and(|p| p.pid() == pid) {
                continue;
            }
            let Some(worker) = self.workers.remove(&pid) else {
                crate::log::debug!("Reaped unknown child process (pid:{pid}, status:{status})");
                continue;
            };
            self.worker_gone(py, pid, worker, status);
        }
    }

    fn worker_gone(&mut self, py: Python<'_>, pid: i32, mut worker: Worker, status: i32) {
        let mut exit_code = None;
        if libc::WIFEXITED(status) {
            exit_code = Some(libc::WEXITSTATUS(status));
        } else if libc::WIFSIGNALED(status) {
            crate::log::warning!("Dirty worker (pid:{pid}) killed by signal {}", libc::WTERMSIG(status));
        }
        let boot_failed = exit_code == Some(BOOT_ERROR);
        if boot_failed {
            crate::log::error!("Dirty worker failed to boot (pid:{pid})");
        }
        crate::log::info!("Dirty worker exited (pid:{pid})");
        let booted = worker.lanes.iter().any(|l| l.ready);
        for i in 0..worker.lanes.len() {
            let lane = std::mem::replace(&mut worker.lanes[i].state, LaneState::Dead);
            self.lane_lost(pid, lane, "it exited");
        }
        let cause = match worker.leaving.map(|(why, _)| why) {
            Some(Leaving::Timeout) => Some(Restart::Timeout),
            Some(Leaving::Reload) => Some(Restart::Reload),
            Some(Leaving::Shrink | Leaving::Stop) => None,
            None if boot_failed => Some(Restart::BootFailed),
            None => {
                let clean = match exit_code {
                    Some(code) => code == 0,
                    None => matches!(libc::WTERMSIG(status), libc::SIGTERM | libc::SIGINT | libc::SIGQUIT),
                };
                Some(if clean { Restart::Terminated } else { Restart::Crash })
            }
        };
        if let Some(c) = cause {
            self.board.count_restart(c);
        }
        let replace =
            matches!(cause, Some(Restart::Timeout | Restart::BootFailed | Restart::Terminated | Restart::Crash));
        if replace && !worker.outdated && self.stopping.is_none() {
            self.respawns.push_back(worker.apps.clone());
        }
        if boot_failed {
            self.boot_failures += 1;
            let backoff = Duration::from_millis(500u64 << self.boot_failures.min(6)).min(MAX_BACKOFF);
            crate::log::warning!("Next dirty worker in {:.1} s", backoff.as_secs_f64());
            self.spawn_after = Instant::now() + backoff;
        } else if booted {
            self.boot_failures = 0;
        }
        if let Some(s) = self.board.worker(worker.slot) {
            s.release();
        }
        self.free_slots.push(worker.slot);
        let arbiter = self.obj.bind(py).clone();
        if let Ok(workers) = arbiter.getattr("workers") {
            let _ = workers.del_item(pid);
        }
        super::super::hooks::dirty_worker_exit(py, &self.settings, &arbiter, worker.obj.bind(py));
        self.fail_unservable();
    }

    /// The hooks' `arbiter` object and the board see the pool size.
    pub(super) fn publish_pool(&self, py: Python<'_>) {
        let _ = self.obj.bind(py).setattr("num_workers", self.num_workers);
        self.board.head().target.store(self.num_workers as u64, Ordering::Relaxed);
    }

    /// `arbiter.app_specs`, as Gunicorn's: import path -> its spec.
    pub(super) fn publish_specs(&self, py: Python<'_>) {
        let built = (|| -> PyResult<()> {
            let specs = PyDict::new(py);
            for (app, original) in self.apps.iter().zip(self.settings.dirty_apps.iter()) {
                let spec = PyDict::new(py);
                spec.set_item("import_path", &app.path)?;
                spec.set_item("worker_count", app.workers)?;
                spec.set_item("original_spec", original)?;
                specs.set_item(&app.path, spec)?;
            }
            self.obj.bind(py).setattr("app_specs", specs)
        })();
        if let Err(e) = built {
            crate::log::debug!("app_specs: {e}");
        }
    }

    /// `dirty add N` (Gunicorn's MANAGE add): spawns now, each new worker
    /// raising the pool size. Returns how many were spawned.
    pub(super) fn add_workers(&mut self, py: Python<'_>, count: usize) -> Result<usize, Unwind> {
        let mut spawned = 0;
        for _ in 0..count {
            if let Spawned::Yes = self.spawn(py)? {
                self.num_workers += 1;
                spawned += 1;
            }
        }
        self.publish_pool(py);
        Ok(spawned)
    }

    /// `dirty remove N`: the oldest leave, never below the apps' minimum
    /// nor the last worker.
    pub(super) fn remove_workers(&mut self, py: Python<'_>, count: usize) -> usize {
        let mut removed = 0;
        for _ in 0..count {
            if self.num_workers <= self.min_workers() || self.current().count() <= 1 {
                break;
            }
            let Some(pid) = self.current().min_by_key(|(_, w)| w.age).map(|(pid, _)| *pid) else { break };
            self.num_workers -= 1;
            self.retire(pid, Leaving::Shrink);
            removed += 1;
        }
        self.publish_pool(py);
        removed
    }

    /// `dirty_workers` of live workers, for `status` and `dirty add`.
    pub(super) fn worker_count(&self) -> usize {
        self.workers.len()
    }

    pub(super) fn worker_pids_by_age(&self) -> Vec<i32> {
        let mut pids: Vec<(u64, i32)> = self.workers.iter().map(|(pid, w)| (w.age, *pid)).collect();
        pids.sort_unstable();
        pids.into_iter().map(|(_, pid)| pid).collect()
    }
}
