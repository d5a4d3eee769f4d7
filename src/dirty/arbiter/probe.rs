//! Reading the `workers` attribute of app classes whose `dirty_apps` entry
//! has no `:N`. Gunicorn imports the apps in its own process to read it;
//! the dirty arbiter instead forks a short-lived child that imports them,
//! sends the counts back through a pipe and exits, so the arbiter itself
//! never imports app code (its workers, forked from it, import the code as
//! it is on disk: a HUP loads new code) and keeps serving while a slow
//! import runs.

use super::sockio::Read;
use super::App;
use crate::arbiter::signals::SignalQueue;
use crate::dirty::spec::AppSpec;
use crate::dirty::wire::tlv::{self, Value};
use crate::python::Forked;
use crate::settings::Settings;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the import may take when `dirty_timeout` is 0.
const DEFAULT_LIMIT: Duration = Duration::from_secs(300);

pub struct Probe {
    pid: i32,
    pipe: OwnedFd,
    got: Vec<u8>,
    deadline: Instant,
    settings: Arc<Settings>,
    specs: Vec<AppSpec>,
    reload: bool,
}

pub enum Started {
    /// Every count was in the settings.
    Done {
        settings: Arc<Settings>,
        apps: Vec<App>,
        reload: bool,
    },
    Running(Probe),
}

fn apps_from(specs: &[AppSpec], counts: impl Fn(&str) -> Option<usize>) -> Vec<App> {
    specs
        .iter()
        .map(|s| App { path: s.import_path.clone(), workers: s.workers.or_else(|| counts(&s.import_path)) })
        .collect()
}

impl Probe {
    pub fn start(
        py: Python<'_>,
        signals: &SignalQueue,
        settings: Arc<Settings>,
        specs: Vec<AppSpec>,
        reload: bool,
    ) -> std::io::Result<Started> {
        let paths: Vec<String> = specs.iter().filter(|s| s.workers.is_none()).map(|s| s.import_path.clone()).collect();
        if paths.is_empty() {
            let apps = apps_from(&specs, |_| None);
            return Ok(Started::Done { settings, apps, reload });
        }
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both fds were just made by pipe2 and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        match signals.fork(py)? {
            Forked::Child => {
                drop(read);
                child(py, &paths, write.as_raw_fd())
            }
            Forked::Parent(pid) => {
                drop(write);
                // SAFETY: fcntl on our own pipe end.
                unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
                let limit = if settings.dirty_timeout.is_zero() { DEFAULT_LIMIT } else { settings.dirty_timeout };
                Ok(Started::Running(Probe {
                    pid,
                    pipe: read,
                    got: Vec::new(),
                    deadline: Instant::now() + limit,
                    settings,
                    specs,
                    reload,
                }))
            }
        }
    }

    pub fn fd(&self) -> RawFd {
        self.pipe.as_raw_fd()
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Reads what the child sent; the apps once it has all come.
    pub fn readable(&mut self) -> Option<Vec<App>> {
        let mut buf = [0u8; 4096];
        loop {
            match sockio_read(self.pipe.as_raw_fd(), &mut buf) {
                Ok(Read::Data(n)) => self.got.extend_from_slice(&buf[..n]),
                Ok(Read::Blocked) => return None,
                Ok(Read::Eof) | Err(_) => return Some(self.parse()),
            }
        }
    }

    fn parse(&self) -> Vec<App> {
        let paths: Vec<&str> =
            self.specs.iter().filter(|s| s.workers.is_none()).map(|s| s.import_path.as_str()).collect();
        let answers = match tlv::decode(&self.got) {
            Ok(Value::List(items)) if items.len() == paths.len() => items,
            _ => {
                crate::log::warning!("Could not read the dirty apps' workers attributes: every worker loads them");
                return self.fallback();
            }
        };
        let counts: Vec<(&str, Option<usize>)> = paths
            .iter()
            .zip(answers)
            .map(|(path, v)| match v {
                Value::Int(n) => (*path, Some(usize::try_from(n).unwrap_or(0))),
                Value::Str(why) => {
                    crate::log::warning!("Could not read workers attribute from {path}: {why}");
                    (*path, None)
                }
                _ => (*path, None),
            })
            .collect();
        apps_from(&self.specs, |p| counts.iter().find(|(path, _)| *path == p).and_then(|(_, n)| *n))
    }

    /// Every app on every worker (the class attributes could not be read).
    pub fn fallback(&self) -> Vec<App> {
        apps_from(&self.specs, |_| None)
    }

    /// The settings it was reading for, and whether for a reload.
    pub fn finish(self) -> (Arc<Settings>, bool) {
        self.stop_child();
        (self.settings.clone(), self.reload)
    }

    /// A newer reload replaces this one.
    pub fn abandon(self) {
        self.stop_child();
    }

    fn stop_child(&self) {
        // SAFETY: kill(2) on our own child; the arbiter's reaper collects it.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

fn sockio_read(fd: RawFd, buf: &mut [u8]) -> std::io::Result<Read> {
    // SAFETY: reads into `buf`, valid for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n > 0 {
        return Ok(Read::Data(n as usize));
    }
    if n == 0 {
        return Ok(Read::Eof);
    }
    let e = std::io::Error::last_os_error();
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(Read::Blocked),
        _ => Err(e),
    }
}

/// The forked child: imports, answers, and leaves without running any of
/// the arbiter's cleanup.
fn child(py: Python<'_>, paths: &[String], out: RawFd) -> ! {
    let answered = (|| -> PyResult<Vec<u8>> {
        let list = PyList::new(py, paths)?;
        let counts = py.import("ferrocorn.dirty._arbiter")?.call_method1("workers_attributes", (list,))?;
        let mut bytes = Vec::new();
        crate::dirty::wire::py::encode(&counts, &mut bytes).map_err(|e| e.into_py(py))?;
        Ok(bytes)
    })();
    let status = match answered {
        Ok(bytes) => {
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                // SAFETY: writes from `rest` to our pipe end.
                let n = unsafe { libc::write(out, rest.as_ptr().cast(), rest.len()) };
                if n <= 0 {
                    break;
                }
                rest = &rest[n as usize..];
            }
            0
        }
        Err(e) => {
            crate::log::warning!("Could not read the dirty apps' workers attributes: {e}");
            1
        }
    };
    for stream in ["stdout", "stderr"] {
        let _ = py.import("sys").and_then(|s| s.getattr(stream)).and_then(|s| s.call_method0("flush"));
    }
    // SAFETY: ends the forked child at once, as a helper must.
    unsafe { libc::_exit(status) }
}
