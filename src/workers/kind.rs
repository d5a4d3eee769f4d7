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
}

pub static TYPES: &[WorkerType] = &[
    WorkerType {
        kind: WorkerKind::Sync,
        name: "sync",
        aliases: &["gunicorn.workers.sync.SyncWorker"],
        serve: Some(super::sync::serve),
    },
    WorkerType {
        kind: WorkerKind::Gthread,
        name: "gthread",
        aliases: &["gunicorn.workers.gthread.ThreadWorker"],
        serve: Some(super::gthread::serve),
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
        serve: None,
    },
    WorkerType {
        kind: WorkerKind::Tornado,
        name: "tornado",
        aliases: &["gunicorn.workers.gtornado.TornadoWorker"],
        serve: None,
    },
    WorkerType {
        kind: WorkerKind::Eventlet,
        name: "eventlet",
        aliases: &["gunicorn.workers.geventlet.EventletWorker"],
        serve: None,
    },
];

/// Why `-k` cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindError {
    /// No worker type has this name.
    Unknown { class: String },
    /// A worker type ferrocorn recognises but does not serve yet.
    NotYet { kind: WorkerKind, class: String, threads: usize },
}

impl fmt::Display for KindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let available: Vec<&str> = TYPES.iter().filter(|t| t.serve.is_some()).map(|t| t.name).collect();
        match self {
            KindError::Unknown { class } => {
                let all: Vec<&str> = TYPES.iter().map(|t| t.name).collect();
                write!(
                    f,
                    "Invalid worker class '{class}': valid worker classes are {} (also by their Gunicorn and uvicorn \
                     class paths); ferrocorn workers are written in Rust, so Python worker classes cannot be loaded",
                    all.join(", ")
                )
            }
            KindError::NotYet { kind, class, threads } => {
                write!(f, "worker class {kind}")?;
                if class.trim() != kind.to_string() {
                    let with = if *threads > 1 { format!(" with --threads {threads}") } else { String::new() };
                    write!(f, " ('{class}'{with} means {kind})")?;
                }
                write!(f, " is not available yet in ferrocorn (available: {})", available.join(", "))
            }
        }
    }
}

impl std::error::Error for KindError {}

impl WorkerKind {
    /// `-k` and `--threads` as Gunicorn reads them: `sync` with more than
    /// one thread means gthread. Only worker types ferrocorn serves are Ok.
    pub fn resolve(worker_class: &str, threads: usize) -> Result<WorkerKind, KindError> {
        let found = by_name(worker_class).ok_or_else(|| KindError::Unknown { class: worker_class.to_owned() })?;
        let kind = if found.kind == WorkerKind::Sync && threads > 1 { WorkerKind::Gthread } else { found.kind };
        if kind.serve().is_none() {
            return Err(KindError::NotYet { kind, class: worker_class.to_owned(), threads });
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
        TYPES.iter().find(|t| t.kind == self).map_or("?", |t| t.name)
    }
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

    #[test]
    fn names() {
        assert_eq!(WorkerKind::resolve("sync", 1), Ok(WorkerKind::Sync));
        assert_eq!(WorkerKind::resolve("gunicorn.workers.sync.SyncWorker", 1), Ok(WorkerKind::Sync));
        assert_eq!(WorkerKind::resolve("egg:gunicorn#sync", 1), Ok(WorkerKind::Sync));
        assert_eq!(WorkerKind::resolve("sync", 4), Ok(WorkerKind::Gthread));
        assert_eq!(WorkerKind::resolve("gthread", 1), Ok(WorkerKind::Gthread));
        assert_eq!(WorkerKind::resolve("uvicorn.workers.UvicornWorker", 1), Ok(WorkerKind::Asgi));
        assert_eq!(WorkerKind::resolve("uvicorn_worker.UvicornH11Worker", 1), Ok(WorkerKind::Asgi));
        assert!(WorkerKind::alias_note("uvicorn.workers.UvicornWorker").is_some());
        assert!(WorkerKind::alias_note("asgi").is_none());
        let e = WorkerKind::resolve("gevent", 1).unwrap_err();
        assert!(matches!(e, KindError::NotYet { kind: WorkerKind::Gevent, .. }));
        assert!(e.to_string().contains("gevent") && e.to_string().contains("not available yet"), "{e}");
        let e = WorkerKind::resolve("mypkg.MyWorker", 1).unwrap_err();
        assert!(matches!(e, KindError::Unknown { .. }));
        assert!(e.to_string().contains("Invalid worker class") && e.to_string().contains("gthread"), "{e}");
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
