//! Worker types: the names Gunicorn (and uvicorn) users give them, and where
//! each is served. A new worker type is a folder under `src/workers/` and
//! its `serve` in [`TYPES`].

use super::core::signals::Wakeup;
use super::WorkerCtx;
use crate::http::policy::HttpPolicy;
use pyo3::prelude::*;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    Sync,
    Gthread,
    Asgi,
    Gevent,
    Tornado,
    Eventlet,
    /// A Gunicorn worker class run in Python under ferrocorn's master
    /// (`workers/foreign.rs`): not in [`TYPES`], since it has no name of
    /// its own; `python_class::adopt` gives it `worker_class`.
    Python,
}

/// A worker type's engine and executor: runs until the worker stops.
pub type Serve = fn(Python<'_>, &WorkerCtx, Py<PyAny>, HttpPolicy, Wakeup) -> PyResult<()>;

/// One worker type.
pub struct WorkerType {
    pub kind: WorkerKind,
    /// The `-k` name.
    pub name: &'static str,
    /// Other names for it: Gunicorn's (and uvicorn's) class paths.
    pub aliases: &'static [&'static str],
    /// None: recognised, not available yet.
    pub serve: Option<Serve>,
    /// The Python package it runs on, and the oldest version that will do:
    /// checked at start-up, so a missing one stops the master with a
    /// message that names it (not every worker failing to boot).
    pub requires: Option<Package>,
}

/// A Python package a worker type needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    pub name: &'static str,
    pub min_version: Option<(u32, u32, u32)>,
}

pub static TYPES: &[WorkerType] = &[
    WorkerType {
        kind: WorkerKind::Sync,
        name: "sync",
        aliases: &["gunicorn.workers.sync.SyncWorker"],
        serve: Some(super::sync::serve),
        requires: None,
    },
    WorkerType {
        kind: WorkerKind::Gthread,
        name: "gthread",
        aliases: &["gunicorn.workers.gthread.ThreadWorker"],
        serve: Some(super::gthread::serve),
        requires: None,
    },
    WorkerType {
        kind: WorkerKind::Asgi,
        name: "asgi",
        aliases: &[
            "gunicorn.workers.gasgi.ASGIWorker",
            "uvicorn.workers.UvicornWorker",
            "uvicorn.workers.UvicornH11Worker",
            "uvicorn_worker.UvicornWorker",
            "uvicorn_worker.UvicornH11Worker",
        ],
        serve: Some(super::asgi::serve),
        requires: None,
    },
    WorkerType {
        kind: WorkerKind::Gevent,
        name: "gevent",
        aliases: &[
            "gevent_wsgi",
            "gevent_pywsgi",
            "gunicorn.workers.ggevent.GeventWorker",
            "gunicorn.workers.ggevent.GeventPyWSGIWorker",
        ],
        serve: Some(super::green::serve),
        // Gunicorn 27's floor for its gevent worker.
        requires: Some(Package { name: "gevent", min_version: Some((24, 10, 1)) }),
    },
    WorkerType {
        kind: WorkerKind::Tornado,
        name: "tornado",
        aliases: &["gunicorn.workers.gtornado.TornadoWorker"],
        serve: Some(super::tornado::serve),
        requires: Some(Package { name: "tornado", min_version: None }),
    },
    WorkerType {
        kind: WorkerKind::Eventlet,
        name: "eventlet",
        aliases: &["gunicorn.workers.geventlet.EventletWorker"],
        serve: Some(super::green::serve),
        requires: Some(Package { name: "eventlet", min_version: None }),
    },
];

/// Why `-k` cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindError {
    /// No worker type has this name. `available`: the worker types that
    /// can run here (served, and their package installed).
    Unknown { class: String, available: Vec<&'static str> },
    /// A worker type ferrocorn recognises but does not serve yet.
    NotYet { kind: WorkerKind, class: String, threads: usize, available: Vec<&'static str> },
    /// The worker type's Python package is not installed (or too old).
    Missing { kind: WorkerKind, package: Package, found: Option<String> },
}

impl fmt::Display for KindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KindError::Unknown { class, available } => {
                write!(
                    f,
                    "Invalid worker class '{class}': valid worker classes are {} (also by their Gunicorn and uvicorn \
                     class paths), and Python subclasses of Gunicorn's gunicorn.workers.base.Worker",
                    available.join(", ")
                )
            }
            KindError::NotYet { kind, class, threads, available } => {
                write!(f, "worker class {kind}")?;
                if class.trim() != kind.to_string() {
                    let with = if *threads > 1 { format!(" with --threads {threads}") } else { String::new() };
                    write!(f, " ('{class}'{with} means {kind})")?;
                }
                write!(f, " is not available yet in ferrocorn (available: {})", available.join(", "))
            }
            KindError::Missing { kind, package, found } => {
                write!(f, "worker class {kind} requires the Python package '{}'", package.name)?;
                if let Some((a, b, c)) = package.min_version {
                    write!(f, " {a}.{b}.{c} or higher")?;
                }
                match found {
                    Some(v) => write!(f, " (installed: {v})")?,
                    None => write!(f, ", which is not installed")?,
                }
                write!(f, ": pip install '{}", package.name)?;
                if let Some((a, b, c)) = package.min_version {
                    write!(f, ">={a}.{b}.{c}")?;
                }
                f.write_str("'")
            }
        }
    }
}

impl std::error::Error for KindError {}

impl WorkerKind {
    /// `-k` and `--threads` as Gunicorn reads them: `sync` with more than
    /// one thread means gthread. Only worker types ferrocorn serves, and
    /// whose package is installed, are Ok.
    pub fn resolve(worker_class: &str, threads: usize) -> Result<WorkerKind, KindError> {
        Self::resolve_with(worker_class, threads, &installed_version)
    }

    /// [`WorkerKind::resolve`] with the way installed packages are found
    /// (`version(name)`: Some(version) when installed).
    fn resolve_with(
        worker_class: &str,
        threads: usize,
        version: &dyn Fn(&str) -> Option<String>,
    ) -> Result<WorkerKind, KindError> {
        if worker_class.trim().starts_with(super::foreign::PREFIX) {
            return Ok(WorkerKind::Python);
        }
        let Some(found) = by_name(worker_class) else {
            return Err(KindError::Unknown { class: worker_class.to_owned(), available: available(version) });
        };
        let kind = if found.kind == WorkerKind::Sync && threads > 1 { WorkerKind::Gthread } else { found.kind };
        let Some(t) = TYPES.iter().find(|t| t.kind == kind) else {
            return Err(KindError::Unknown { class: worker_class.to_owned(), available: available(version) });
        };
        if t.serve.is_none() {
            return Err(KindError::NotYet {
                kind,
                class: worker_class.to_owned(),
                threads,
                available: available(version),
            });
        }
        if let Some(package) = t.requires {
            let found = version(package.name);
            if !package.satisfied_by(found.as_deref()) {
                return Err(KindError::Missing { kind, package, found });
            }
        }
        Ok(kind)
    }

    /// Where this worker type is served, if ferrocorn has it.
    pub fn serve(self) -> Option<Serve> {
        TYPES.iter().find(|t| t.kind == self).and_then(|t| t.serve)
    }

    /// The line the master logs when a uvicorn worker class was asked for:
    /// the command line keeps working, served by ferrocorn's own worker.
    pub fn alias_note(worker_class: &str) -> Option<String> {
        let name = worker_class.trim();
        (name.starts_with("uvicorn.") || name.starts_with("uvicorn_worker."))
            .then(|| format!("Worker class {name} is served by ferrocorn's native asgi worker"))
    }

    pub fn name(self) -> &'static str {
        if self == WorkerKind::Python {
            return "python";
        }
        TYPES.iter().find(|t| t.kind == self).map_or("?", |t| t.name)
    }
}

/// The `-k` names of the worker types that can run here.
pub fn available_names() -> Vec<&'static str> {
    available(&installed_version)
}

/// Whether `name` names a worker type (whether or not it can run here).
pub fn is_known_name(name: &str) -> bool {
    by_name(name).is_some()
}

/// The worker types that can run here: served, with their package.
fn available(version: &dyn Fn(&str) -> Option<String>) -> Vec<&'static str> {
    TYPES
        .iter()
        .filter(|t| t.serve.is_some())
        .filter(|t| t.requires.is_none_or(|p| p.satisfied_by(version(p.name).as_deref())))
        .map(|t| t.name)
        .collect()
}

impl Package {
    /// Whether an installed version (None: not installed) will do.
    fn satisfied_by(&self, installed: Option<&str>) -> bool {
        let Some(installed) = installed else { return false };
        let Some(min) = self.min_version else { return true };
        // Leading numbers of a PEP 440 version ("24.11.1", "25.4.2.dev0").
        let mut parts = installed.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().unwrap_or(0)
        });
        let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        v >= min
    }
}

/// The installed version of a Python package, read from its metadata
/// without importing it (importing gevent in the master would do work the
/// workers must redo after they patch).
fn installed_version(name: &str) -> Option<String> {
    Python::attach(|py| {
        let metadata = py.import("importlib.metadata").ok()?;
        metadata.call_method1("version", (name,)).ok()?.extract::<String>().ok()
    })
}

fn by_name(name: &str) -> Option<&'static WorkerType> {
    let name = name.trim();
    // Gunicorn's "egg:gunicorn#sync" entry-point form names the same workers.
    let name = name.strip_prefix("egg:gunicorn#").or_else(|| name.strip_prefix('#')).unwrap_or(name);
    TYPES.iter().find(|t| t.name == name || t.aliases.contains(&name))
}

impl fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything_installed(_: &str) -> Option<String> {
        Some("99.0".to_owned())
    }

    fn nothing_installed(_: &str) -> Option<String> {
        None
    }

    fn resolve(class: &str, threads: usize) -> Result<WorkerKind, KindError> {
        WorkerKind::resolve_with(class, threads, &everything_installed)
    }

    #[test]
    fn names() {
        assert_eq!(resolve("sync", 1), Ok(WorkerKind::Sync));
        assert_eq!(resolve("gunicorn.workers.sync.SyncWorker", 1), Ok(WorkerKind::Sync));
        assert_eq!(resolve("egg:gunicorn#sync", 1), Ok(WorkerKind::Sync));
        assert_eq!(resolve("sync", 4), Ok(WorkerKind::Gthread));
        assert_eq!(resolve("gthread", 1), Ok(WorkerKind::Gthread));
        assert_eq!(resolve("uvicorn.workers.UvicornWorker", 1), Ok(WorkerKind::Asgi));
        assert_eq!(resolve("uvicorn_worker.UvicornH11Worker", 1), Ok(WorkerKind::Asgi));
        assert_eq!(resolve("gevent", 1), Ok(WorkerKind::Gevent));
        assert_eq!(resolve("gunicorn.workers.ggevent.GeventWorker", 1), Ok(WorkerKind::Gevent));
        assert_eq!(resolve("eventlet", 1), Ok(WorkerKind::Eventlet));
        assert!(WorkerKind::alias_note("uvicorn.workers.UvicornWorker").is_some());
        assert!(WorkerKind::alias_note("asgi").is_none());
        assert_eq!(resolve("tornado", 1), Ok(WorkerKind::Tornado));
        let e = resolve("mypkg.MyWorker", 1).unwrap_err();
        assert!(matches!(e, KindError::Unknown { .. }));
        assert!(e.to_string().contains("Invalid worker class") && e.to_string().contains("gevent"), "{e}");
    }

    #[test]
    fn a_missing_package_is_named_and_its_type_is_not_offered() {
        let e = WorkerKind::resolve_with("gevent", 1, &nothing_installed).unwrap_err();
        assert!(matches!(e, KindError::Missing { kind: WorkerKind::Gevent, found: None, .. }));
        let text = e.to_string();
        assert!(text.contains("'gevent'") && text.contains("not installed") && text.contains("24.10.1"), "{text}");
        let old = |_: &str| Some("22.10.2".to_owned());
        let e = WorkerKind::resolve_with("gevent", 1, &old).unwrap_err();
        assert!(e.to_string().contains("(installed: 22.10.2)"), "{e}");
        let e = WorkerKind::resolve_with("eventlet", 1, &nothing_installed).unwrap_err();
        assert!(e.to_string().contains("'eventlet'"), "{e}");
        // The rule of the error message: a type that cannot run here is
        // never offered as a valid worker class.
        let e = WorkerKind::resolve_with("mypkg.MyWorker", 1, &nothing_installed).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("sync, gthread, asgi") && !text.contains("gevent") && !text.contains("eventlet"),
            "{text}"
        );
    }

    #[test]
    fn versions_compare_by_their_leading_numbers() {
        let p = Package { name: "gevent", min_version: Some((24, 10, 1)) };
        assert!(
            p.satisfied_by(Some("24.10.1")) && p.satisfied_by(Some("25.4.2.dev0")) && p.satisfied_by(Some("24.11"))
        );
        assert!(!p.satisfied_by(Some("24.2.1")) && !p.satisfied_by(None) && !p.satisfied_by(Some("garbage")));
    }

    #[test]
    fn every_type_and_alias_is_found_by_its_names() {
        for t in TYPES {
            assert_eq!(by_name(t.name).map(|f| f.kind), Some(t.kind));
            for alias in t.aliases {
                assert_eq!(by_name(alias).map(|f| f.kind), Some(t.kind), "{alias}");
            }
        }
    }
}
