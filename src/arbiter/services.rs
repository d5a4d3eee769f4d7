//! The master's own servers (the metrics endpoint, the control socket) as
//! the loop sees them: opened after the first workers are forked, as
//! Gunicorn starts its control server, brought in line with the settings
//! after a reload, polled with the signal pipe, served each turn without
//! blocking, and closed when the master stops.

use super::control::{answer, command::Command, command::Refused, command::Show, protocol, ControlServer};
use super::metrics::{prometheus, MetricsServer};
use super::stats::StopAsked;
use super::{Arbiter, Interrupt};
use pyo3::prelude::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A metrics address that could not be bound is tried again this often
/// (it may be held by the master this one is replacing).
const METRICS_RETRY: Duration = Duration::from_secs(5);
const UPGRADE_RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Services {
    metrics: Option<MetricsServer>,
    /// An address that failed to bind, and when to try again.
    metrics_retry: Option<(String, Instant)>,
    control: Option<ControlServer>,
}

/// What a control command does once its answer is sent.
enum Act {
    /// The same as the signal (HUP, USR1, TERM, INT): the master sends it to
    /// itself, as Gunicorn's handlers do, so it takes the signal's path.
    Signal(libc::c_int),
    /// `worker add`/`worker remove`: the pool size, as TTIN/TTOU set it.
    SetWorkers(usize),
    /// `worker kill PID`: TERM to one worker, replaced once it exits.
    Kill(i32),
}

impl Services {
    /// The fds the loop polls for the services, with the signal pipe.
    /// The master's loop must not sleep: control commands are waiting.
    pub fn busy(&self) -> bool {
        self.control.as_ref().is_some_and(|c| c.has_backlog())
    }

    pub fn poll_fds(&self) -> Vec<libc::pollfd> {
        let mut fds = Vec::new();
        if let Some(m) = &self.metrics {
            m.poll_fds(&mut fds);
        }
        if let Some(c) = &self.control {
            c.poll_fds(&mut fds);
        }
        fds
    }

    /// The master is stopping: no more clients, the control socket file
    /// goes (Gunicorn stops its control server first thing in `halt`).
    pub fn close(&mut self) {
        self.metrics = None;
        self.metrics_retry = None;
        if let Some(c) = self.control.take() {
            c.close();
        }
    }
}

/// `--control-socket` as a path: relative to the working directory.
fn control_path(configured: &str) -> PathBuf {
    let p = PathBuf::from(configured);
    if p.is_absolute() {
        return p;
    }
    std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
}

impl Arbiter {
    /// Opens, closes or moves the services to match the settings: at start
    /// and after each reload. Failures are logged and the master goes on,
    /// as Gunicorn does for its control socket: neither service is worth
    /// stopping a server for.
    pub(super) fn open_services(&mut self, py: Python<'_>) {
        let want = self.settings.metrics_bind.clone();
        if self.services.metrics.as_ref().map(|m| &m.configured) != want.as_ref() {
            self.services.metrics = None;
            self.services.metrics_retry = None;
            if let Some(addr) = want {
                self.bind_metrics(py, &addr, true);
            }
        }

        let want = (!self.settings.control_socket_disable)
            .then(|| (control_path(&self.settings.control_socket), self.settings.control_socket_mode as u32));
        match (&mut self.services.control, want) {
            (Some(c), Some((path, mode))) if c.configured == path => {
                if c.mode != mode {
                    if let Err(e) = c.set_mode(mode) {
                        crate::log::warning!("Failed to change the control socket's mode: {e}");
                    }
                }
            }
            (_, want) => {
                if let Some(old) = self.services.control.take() {
                    old.close();
                }
                match want {
                    None => crate::log::debug!("Control socket disabled"),
                    Some((configured, mode)) => match ControlServer::open(&self.control_path_free(&configured), mode) {
                        Ok(mut c) => {
                            crate::log::info!("Control socket listening at {}", c.path.display());
                            c.configured = configured;
                            self.services.control = Some(c);
                        }
                        Err(e) => crate::log::warning!("Failed to start control socket: {e}"),
                    },
                }
            }
        }
    }

    /// The control socket's path, unless another live master answers there
    /// (two servers started by one user share Gunicorn's default path):
    /// taking it over would leave that master unreachable, and its exit
    /// would remove ours. Only the old master of our own upgrade (USR2)
    /// hands its path over, as in Gunicorn.
    fn control_path_free(&self, configured: &std::path::Path) -> PathBuf {
        use super::control::{instance_path, occupant, Occupant};
        match occupant(configured) {
            Occupant::Live(pid) if pid.is_none_or(|p| p != self.master_pid || p == 0) => {
                let own = instance_path(configured, self.pid);
                let who = pid.map_or_else(String::new, |p| format!(" (pid {p})"));
                crate::log::warning!(
                    "Control socket {} is in use by a running master{who}; this one listens at {}",
                    configured.display(),
                    own.display()
                );
                own
            }
            _ => configured.to_owned(),
        }
    }

    fn bind_metrics(&mut self, py: Python<'_>, addr: &str, first: bool) {
        match MetricsServer::bind(py, addr) {
            Ok(m) => {
                crate::log::info!("Metrics at: http://{}/metrics", m.local);
                self.services.metrics = Some(m);
                self.services.metrics_retry = None;
            }
            Err(e) => {
                if first && self.master_pid != 0 {
                    crate::log::info!("Metrics at {addr} are still served by the old master; taken when it lets go");
                } else if first {
                    crate::log::error!(
                        "Cannot serve metrics at {addr}: {e}; trying again every {} s",
                        METRICS_RETRY.as_secs()
                    );
                } else {
                    crate::log::debug!("Cannot serve metrics at {addr} yet: {e}");
                }
                // The new master of an upgrade waits for the old one to let
                // go (at WINCH): it takes the address within a second.
                let retry = if self.master_pid != 0 { UPGRADE_RETRY } else { METRICS_RETRY };
                self.services.metrics_retry = Some((addr.to_owned(), Instant::now() + retry));
            }
        }
    }

    /// The metrics endpoint's turn: the page rendered only when a scraper
    /// waits for it, the readiness read only when a probe does.
    fn serve_metrics(&mut self, polled: &[libc::pollfd], now: Instant) {
        let Some(wanted) = self.services.metrics.as_mut().map(|m| m.turn(polled, now)) else { return };
        if !wanted.page && !wanted.probe {
            return;
        }
        let page = wanted.page.then(|| prometheus::render(&self.snapshot()));
        let ready = self.readiness();
        if let Some(m) = self.services.metrics.as_mut() {
            m.answer(page.as_deref(), &ready);
        }
    }

    /// While the master stops: probes (which now say "shutting down") and
    /// scrapes are still answered as workers finish, waiting at most
    /// `wait` for a client; the signals that came meanwhile are returned.
    pub(super) fn serve_metrics_while_stopping(&mut self, wait: Duration) -> Vec<libc::c_int> {
        let mut polled = Vec::new();
        if let Some(m) = &self.services.metrics {
            m.poll_fds(&mut polled);
        }
        let signals = self.signals.wait_with(&mut polled, wait);
        self.serve_metrics(&polled, Instant::now());
        signals
    }

    /// WINCH on the old master of an upgrade: its workers go, so the new
    /// master answers for this host from now on; the old one lets go of
    /// the metrics address for it to take.
    pub(super) fn hand_metrics_over(&mut self) {
        if let Some(m) = self.services.metrics.take() {
            crate::log::info!("Metrics at http://{}/ left to the new master", m.local);
        }
        self.services.metrics_retry = None;
    }

    /// The master is stopping: no more control clients (Gunicorn stops its
    /// control server first thing in `halt`); metrics stay until the end.
    pub(super) fn close_control(&mut self) {
        if let Some(c) = self.services.control.take() {
            c.close();
        }
    }

    /// One turn of the services, after the poll that included their fds.
    pub(super) fn serve_services(&mut self, py: Python<'_>, polled: &[libc::pollfd]) -> Result<(), Interrupt> {
        let now = Instant::now();
        if let Some((addr, at)) = self.services.metrics_retry.clone() {
            if now >= at {
                self.bind_metrics(py, &addr, false);
            }
        }
        self.serve_metrics(polled, now);

        let requests = match self.services.control.as_mut() {
            Some(c) => c.turn(polled, now),
            None => return Ok(()),
        };
        let mut acts = Vec::new();
        let mut replies = Vec::with_capacity(requests.len());
        for (fd, request) in requests {
            let (reply, act) = self.control_answer(py, &request);
            replies.push((fd, protocol::encode(&reply)));
            acts.extend(act);
        }
        if let Some(c) = self.services.control.as_mut() {
            for (fd, bytes) in &replies {
                c.reply(*fd, bytes);
            }
            c.settle(now);
        }
        // Answers are on their way before anything changes (a shutdown or
        // a fork must not keep a client waiting).
        for act in acts {
            self.control_act(py, act)?;
        }
        Ok(())
    }

    /// The answer to one control request, and what it then does.
    fn control_answer(&mut self, py: Python<'_>, r: &protocol::Request) -> (Value, Option<Act>) {
        let parsed = match (&r.command, &r.args) {
            (Ok(cmd), Ok(args)) => super::control::command::parse(py, cmd, args),
            (Err(e), _) | (_, Err(e)) => Err(Refused::Invalid(e.clone())),
        };
        let cmd = match parsed {
            Ok(c) => c,
            Err(refused) => return (protocol::error(&r.id, &refused.to_string()), None),
        };
        crate::log::debug!("Control command: {cmd:?}");
        let (data, act) = self.control_data(&cmd);
        (protocol::ok(&r.id, data), act)
    }

    fn control_data(&mut self, cmd: &Command) -> (Value, Option<Act>) {
        let old = self.num_workers;
        match cmd {
            Command::Show(what) => {
                let s = self.snapshot();
                let data = match what {
                    Show::All => answer::show_all(&s),
                    Show::Workers => answer::show_workers(&s),
                    Show::Dirty => answer::show_dirty(s.dirty.as_ref()),
                    Show::Config => answer::show_config(&s, &self.kind.to_string(), &self.proc_name()),
                    Show::Stats => answer::show_stats(&s),
                    Show::Listeners => answer::show_listeners(&s),
                };
                (data, None)
            }
            Command::Help => (answer::help(), None),
            Command::WorkerAdd(n) => {
                let total = old.saturating_add(usize::try_from(*n).unwrap_or(usize::MAX));
                (json!({"added": n, "previous": old, "total": total}), Some(Act::SetWorkers(total)))
            }
            Command::WorkerRemove(n) => {
                // Never below one worker, as Gunicorn's handler and TTOU.
                let total = old.saturating_sub(usize::try_from(*n).unwrap_or(usize::MAX)).max(1);
                (
                    json!({"removed": old.saturating_sub(total), "previous": old, "total": total}),
                    Some(Act::SetWorkers(total)),
                )
            }
            Command::WorkerKill(pid) => match i32::try_from(*pid).ok().filter(|p| self.workers.contains_key(p)) {
                Some(pid) => (json!({"success": true, "killed": pid}), Some(Act::Kill(pid))),
                None => (json!({"success": false, "error": format!("Worker {pid} not found")}), None),
            },
            Command::DirtyAdd(n) | Command::DirtyRemove(n) => {
                if self.dirty.pid == 0 {
                    return (answer::dirty_not_running(), None);
                }
                let add = matches!(cmd, Command::DirtyAdd(_));
                match self.dirty.manage(add, *n) {
                    Ok(v) => (answer::tlv_json(&v), None),
                    Err(e) => (json!({"success": false, "error": e}), None),
                }
            }
            Command::Reload => (json!({"status": "reloading"}), Some(Act::Signal(libc::SIGHUP))),
            Command::Reopen => (json!({"status": "reopening"}), Some(Act::Signal(libc::SIGUSR1))),
            Command::Shutdown(mode) => {
                let sig = if mode == "quick" { libc::SIGINT } else { libc::SIGTERM };
                (json!({"status": "shutting_down", "mode": mode}), Some(Act::Signal(sig)))
            }
        }
    }

    fn control_act(&mut self, py: Python<'_>, act: Act) -> Result<(), Interrupt> {
        match act {
            Act::Signal(sig) => {
                // SAFETY: kill(2) on our own pid; the handler queues it.
                unsafe { libc::kill(self.pid, sig) };
                Ok(())
            }
            Act::SetWorkers(n) => {
                self.set_num_workers(py, n)?;
                self.manage_workers(py)
            }
            Act::Kill(pid) => {
                if let Some(w) = self.workers.get_mut(&pid) {
                    w.stop_asked.get_or_insert(StopAsked::Kill);
                }
                super::kill(pid, libc::SIGTERM);
                Ok(())
            }
        }
    }
}
