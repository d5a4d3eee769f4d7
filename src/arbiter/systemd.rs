//! The master under systemd: the sockets it may be handed at start (socket
//! activation, `net::systemd`) and what it tells the service manager
//! (`notify`): READY once it serves, a STATUS line with the workers and the
//! requests they served (at most once a second), RELOADING/READY around a
//! HUP, STOPPING when it shuts down. Gunicorn sends only the first READY;
//! the rest is what `Type=notify` units can show (`systemctl status`) and
//! what `Type=notify-reload` needs.

use super::notify::Notifier;
use crate::net::bind::BindSpec;
use crate::net::listener::Listener;
use crate::net::systemd as activation;
use crate::settings::Settings;
use pyo3::prelude::*;
use std::time::{Duration, Instant};

/// STATUS updates go out at most this often.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// The first STATUS, sent with READY=1 (Gunicorn: "Gunicorn arbiter booted").
pub const BOOTED: &str = "ferrocorn arbiter booted";

/// Socket activation at start: when `LISTEN_PID` is this process, clears
/// the variables (so workers and anything they start do not see them) and
/// takes the passed sockets, plus any `fd://` binds as Gunicorn adds them;
/// the other `--bind` addresses are not bound. `None` when not activated.
pub fn activated_listeners(py: Python<'_>, settings: &Settings) -> Result<Option<Vec<Listener>>, String> {
    let listen_pid = std::env::var(activation::LISTEN_PID).ok();
    let listen_fds = std::env::var(activation::LISTEN_FDS).ok();
    let count = activation::passed_count(listen_pid.as_deref(), listen_fds.as_deref(), std::process::id());
    if activation::names_pid(listen_pid.as_deref(), std::process::id()) {
        // The variables were for us (even if unusable): clear them now,
        // as Gunicorn's listen_fds does whenever the pid matches.
        for name in [activation::LISTEN_PID, activation::LISTEN_FDS, activation::LISTEN_FDNAMES] {
            crate::python::unset_env(py, name);
        }
    }
    let Some(n) = count.map_err(|e| e.to_string())? else { return Ok(None) };
    let backlog = settings.listen_backlog();
    let mut listeners = activation::take_listeners(n, backlog).map_err(|e| e.to_string())?;
    let mut skipped = Vec::new();
    let passed = activation::LISTEN_FDS_START..activation::LISTEN_FDS_START + n as i32;
    for bind in &settings.bind {
        match BindSpec::parse(py, bind)? {
            // Already taken: owning one fd twice would close it twice.
            BindSpec::Fd(fd) if passed.contains(&fd) => {}
            BindSpec::Fd(fd) => listeners.push(Listener::from_fd(fd, backlog).map_err(|e| format!("fd://{fd}: {e}"))?),
            other => skipped.push(other.to_string()),
        }
    }
    crate::log::info!("Using {n} socket(s) from systemd socket activation");
    if !skipped.is_empty() {
        crate::log::info!("Not binding {}: the sockets come from systemd", skipped.join(", "));
    }
    if settings.reuse_port {
        crate::log::info!("--reuse-port has no effect: the workers share the sockets systemd passed");
    }
    Ok(Some(listeners))
}

/// The STATUS text while running.
pub fn status_line(workers: usize, requests: u64) -> String {
    let w = if workers == 1 { "worker" } else { "workers" };
    let r = if requests == 1 { "request" } else { "requests" };
    format!("{workers} {w}, {requests} {r} served")
}

/// CLOCK_MONOTONIC in microseconds, for `MONOTONIC_USEC=` with RELOADING=1
/// (systemd matches it against the reload it asked for).
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// What the master tells systemd, and when.
pub struct ServiceStatus {
    notifier: Notifier,
    last_status: Option<(Instant, String)>,
}

impl ServiceStatus {
    pub fn new(notifier: Notifier) -> ServiceStatus {
        ServiceStatus { notifier, last_status: None }
    }

    pub fn from_env() -> ServiceStatus {
        ServiceStatus::new(Notifier::from_env())
    }

    /// The master listens and its first workers are forked.
    pub fn ready(&mut self) {
        self.send_status("READY=1", BOOTED.to_owned());
    }

    /// The new master of a USR2 upgrade is ready: it also names itself the
    /// service's main process, so that with `NotifyAccess=all` systemd
    /// follows the upgrade (the old master's exit then ends nothing) and
    /// `$MAINPID` in `ExecReload=` reaches the new master. With
    /// `NotifyAccess=main` systemd ignores it, as it ignores every message
    /// from a process that is not the main one.
    pub fn ready_as_new_main(&mut self, pid: i32) {
        self.send_status(&format!("MAINPID={pid}\nREADY=1"), BOOTED.to_owned());
    }

    /// A HUP starts: systemd shows "reloading" until `reloaded`.
    pub fn reloading(&mut self) {
        let state = format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec());
        self.send_status(&state, "Reloading".to_owned());
    }

    /// The HUP is handled (the new generation is forked, or the reload
    /// failed and the old configuration goes on): serving again.
    pub fn reloaded(&mut self, workers: usize, requests: u64) {
        let line = status_line(workers, requests);
        self.send_status("READY=1", line);
    }

    pub fn stopping(&mut self) {
        self.send_status("STOPPING=1", "Stopping".to_owned());
    }

    /// Called every turn of the master's loop: a STATUS line when it
    /// changed and the last one is at least a second old. `requests` (every
    /// request served, by workers alive or gone) is only asked for then.
    pub fn tick(&mut self, workers: usize, requests: impl FnOnce() -> u64) {
        if !self.notifier.enabled() || self.last_status.as_ref().is_some_and(|(t, _)| t.elapsed() < STATUS_INTERVAL) {
            return;
        }
        let line = status_line(workers, requests());
        if self.last_status.as_ref().is_some_and(|(_, last)| *last == line) {
            return;
        }
        self.send_status("", line);
    }

    fn send_status(&mut self, state: &str, status: String) {
        if !self.notifier.enabled() {
            return;
        }
        let message = if state.is_empty() { format!("STATUS={status}") } else { format!("{state}\nSTATUS={status}") };
        self.notifier.notify(&message);
        self.last_status = Some((Instant::now(), status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn pair(name: &str) -> (ServiceStatus, UnixDatagram, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("ferrocorn-sd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).expect("bind");
        rx.set_nonblocking(true).expect("nonblocking");
        let status = ServiceStatus::new(Notifier::to_address(path.to_str().expect("utf-8")));
        (status, rx, path)
    }

    fn received(rx: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = rx.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_line(1, 1), "1 worker, 1 request served");
        assert_eq!(status_line(4, 0), "4 workers, 0 requests served");
    }

    #[test]
    fn lifecycle_messages() {
        let (mut s, rx, path) = pair("life");
        s.ready();
        s.reloading();
        s.reloaded(2, 8);
        s.stopping();
        let got = received(&rx);
        assert_eq!(got[0], format!("READY=1\nSTATUS={BOOTED}"));
        assert!(got[1].starts_with("RELOADING=1\nMONOTONIC_USEC="), "{}", got[1]);
        assert!(got[1].ends_with("\nSTATUS=Reloading"));
        assert_eq!(got[2], "READY=1\nSTATUS=2 workers, 8 requests served");
        assert_eq!(got[3], "STOPPING=1\nSTATUS=Stopping");
        assert_eq!(got.len(), 4);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_new_master_names_itself_main() {
        let (mut s, rx, path) = pair("mainpid");
        s.ready_as_new_main(4321);
        assert_eq!(received(&rx), vec![format!("MAINPID=4321\nREADY=1\nSTATUS={BOOTED}")]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn status_at_most_once_a_second_and_only_when_changed() {
        let (mut s, rx, path) = pair("tick");
        s.ready();
        let mut asked = 0;
        s.tick(2, || {
            asked += 1;
            10
        });
        // too soon after READY: not even computed
        assert_eq!(asked, 0);
        s.last_status = Some((Instant::now() - STATUS_INTERVAL, BOOTED.to_owned()));
        s.tick(2, || 10);
        s.tick(2, || 11); // within the second again
        s.last_status = Some((Instant::now() - STATUS_INTERVAL, status_line(2, 10)));
        s.tick(2, || 10); // unchanged: nothing
        let got = received(&rx);
        assert_eq!(got, vec![format!("READY=1\nSTATUS={BOOTED}"), "STATUS=2 workers, 10 requests served".to_owned()]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn without_notify_socket_nothing_is_counted_or_sent() {
        let mut s = ServiceStatus::new(Notifier::disabled());
        s.ready();
        s.tick(1, || panic!("not asked when nobody listens"));
        assert!(s.last_status.is_none());
    }
}
