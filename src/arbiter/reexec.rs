//! USR2: a new master started from the same command line, environment and
//! working directory as this one, that takes the listening sockets over
//! (Gunicorn's `reexec`, with its `GUNICORN_FD`/`GUNICORN_PID` protocol, so
//! an upgrade from Gunicorn to ferrocorn or back works the same way). Old
//! and new masters serve side by side until the operator stops the old one
//! (WINCH stops its workers, TERM ends it) or rolls back (HUP on the old
//! master, TERM on the new).

use crate::net::listener::Listener;
use crate::net::systemd;
use pyo3::prelude::*;
use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The old master's pid, in the environment of the new one.
pub const MASTER_PID_VAR: &str = "GUNICORN_PID";
/// The listening sockets handed over, as a comma-separated fd list.
pub const FDS_VAR: &str = "GUNICORN_FD";

/// What the process started with, before `--chdir` and `--env` changed it.
struct StartContext {
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
}

static START: OnceLock<StartContext> = OnceLock::new();

/// Remembers the start context; called first thing in `run`.
pub fn remember_start() {
    START.get_or_init(|| StartContext {
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        env: std::env::vars_os().collect(),
    });
}

/// The old master's pid when this master was started by a USR2 re-exec.
pub fn parent_master() -> Option<i32> {
    std::env::var(MASTER_PID_VAR).ok()?.trim().parse().ok().filter(|p| *p > 0)
}

/// Listener fds handed over by the old master (the variable is consumed,
/// as Gunicorn pops it from `os.environ`, so workers, the processes they
/// start and a later re-exec do not see it). `None` when there are none.
pub fn inherited_fds(py: Python<'_>) -> Result<Option<Vec<RawFd>>, String> {
    let Some(value) = std::env::var_os(FDS_VAR) else { return Ok(None) };
    crate::python::unset_env(py, FDS_VAR);
    let text = value.to_string_lossy();
    let fds = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<RawFd>().map_err(|_| format!("invalid {FDS_VAR} value: {text:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(fds))
}

/// How the sockets are handed over, for the new master's environment.
pub enum Handover<'a> {
    /// Gunicorn's protocol: the fds by number.
    Fds(&'a [Listener]),
    /// The sockets came from systemd: hand them on the way systemd did
    /// (fds from 3, `LISTEN_PID`/`LISTEN_FDS`), as Gunicorn's `reexec` does,
    /// so the new master knows they belong to systemd.
    Systemd(&'a [Listener]),
}

/// Variables of the start environment that describe sockets handed to
/// this master; they are stale for the new one, which gets fresh values.
const HANDOVER_VARS: [&str; 5] =
    [FDS_VAR, MASTER_PID_VAR, systemd::LISTEN_PID, systemd::LISTEN_FDS, systemd::LISTEN_FDNAMES];

/// In the freshly forked child: becomes the new master. Never returns; if
/// the exec fails the child says why and exits.
pub fn exec_new_master(py: Python<'_>, old_master: i32, handover: Handover<'_>) -> ! {
    let err = match command(py, old_master, handover) {
        Ok(mut cmd) => cmd.exec().to_string(),
        Err(e) => e,
    };
    crate::log::error!("Re-exec failed: {err}");
    // SAFETY: leaving the forked child without running the parent's
    // destructors or atexit handlers.
    unsafe { libc::_exit(1) }
}

fn command(py: Python<'_>, old_master: i32, handover: Handover<'_>) -> Result<std::process::Command, String> {
    let start = START.get().ok_or("the start context was not recorded")?;
    let sys = py.import("sys").map_err(|e| e.to_string())?;
    let executable: String = sys.getattr("executable").and_then(|e| e.extract()).map_err(|e| e.to_string())?;
    // sys.orig_argv is the command line as typed (`python -m ferrocorn ...`
    // or the console script); sys.argv loses `-m`.
    let args: Vec<String> = match sys.getattr("orig_argv").and_then(|a| a.extract::<Vec<String>>()) {
        Ok(orig) if !orig.is_empty() => orig[1..].to_vec(),
        _ => sys.getattr("argv").and_then(|a| a.extract()).map_err(|e| e.to_string())?,
    };
    let mut cmd = std::process::Command::new(executable);
    cmd.args(args).current_dir(&start.cwd).env_clear();
    for (k, v) in &start.env {
        if !HANDOVER_VARS.iter().any(|v| k == v) {
            cmd.env(k, v);
        }
    }
    cmd.env(MASTER_PID_VAR, old_master.to_string());
    match handover {
        Handover::Fds(listeners) => {
            let fds: Vec<String> = listeners.iter().map(|l| l.fd().to_string()).collect();
            cmd.env(FDS_VAR, fds.join(","));
        }
        Handover::Systemd(listeners) => {
            // This is the forked child that will exec, so LISTEN_PID (its
            // own pid) is the new master's.
            let vars = systemd::hand_over(listeners).map_err(|e| format!("cannot pass the systemd sockets on: {e}"))?;
            cmd.envs(vars);
        }
    }
    Ok(cmd)
}
