//! Worker types by the names Gunicorn (and uvicorn) users give them.

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

impl WorkerKind {
    /// `-k` and `--threads` as Gunicorn reads them: `sync` with more than
    /// one thread means gthread. Only worker types ferrocorn has are Ok.
    pub fn resolve(worker_class: &str, threads: i64) -> Result<WorkerKind, String> {
        let kind = Self::by_name(worker_class).ok_or_else(|| {
            format!(
                "Invalid worker class '{worker_class}': valid worker classes are sync, gthread, asgi, gevent, \
                 tornado and eventlet (also by their Gunicorn and uvicorn class paths); ferrocorn workers are \
                 written in Rust, so Python worker classes cannot be loaded"
            )
        })?;
        let kind = if kind == WorkerKind::Sync && threads > 1 { WorkerKind::Gthread } else { kind };
        if !matches!(kind, WorkerKind::Sync | WorkerKind::Gthread | WorkerKind::Asgi) {
            let why = if worker_class.trim() != kind.to_string() {
                format!(
                    " ('{worker_class}'{} means {kind})",
                    if threads > 1 { format!(" with --threads {threads}") } else { String::new() }
                )
            } else {
                String::new()
            };
            return Err(format!(
                "worker class {kind}{why} is not available yet in ferrocorn (available: sync, gthread, asgi)"
            ));
        }
        Ok(kind)
    }

    /// The line the master logs when a uvicorn worker class was asked for:
    /// the command line keeps working, served by ferrocorn's own worker.
    pub fn alias_note(worker_class: &str) -> Option<String> {
        let name = worker_class.trim();
        (name.starts_with("uvicorn.") || name.starts_with("uvicorn_worker."))
            .then(|| format!("Worker class {name} is served by ferrocorn's native asgi worker"))
    }

    fn by_name(name: &str) -> Option<WorkerKind> {
        let name = name.trim();
        // Gunicorn's "egg:gunicorn#sync" entry-point form names the same workers.
        let name = name.strip_prefix("egg:gunicorn#").or_else(|| name.strip_prefix('#')).unwrap_or(name);
        Some(match name {
            "sync" | "gunicorn.workers.sync.SyncWorker" => WorkerKind::Sync,
            "gthread" | "gunicorn.workers.gthread.ThreadWorker" => WorkerKind::Gthread,
            "asgi"
            | "gunicorn.workers.gasgi.ASGIWorker"
            | "uvicorn.workers.UvicornWorker"
            | "uvicorn.workers.UvicornH11Worker"
            | "uvicorn_worker.UvicornWorker"
            | "uvicorn_worker.UvicornH11Worker" => WorkerKind::Asgi,
            "gevent"
            | "gevent_wsgi"
            | "gevent_pywsgi"
            | "gunicorn.workers.ggevent.GeventWorker"
            | "gunicorn.workers.ggevent.GeventPyWSGIWorker" => WorkerKind::Gevent,
            "tornado" | "gunicorn.workers.gtornado.TornadoWorker" => WorkerKind::Tornado,
            "eventlet" | "gunicorn.workers.geventlet.EventletWorker" => WorkerKind::Eventlet,
            _ => return None,
        })
    }
}

impl fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkerKind::Sync => "sync",
            WorkerKind::Gthread => "gthread",
            WorkerKind::Asgi => "asgi",
            WorkerKind::Gevent => "gevent",
            WorkerKind::Tornado => "tornado",
            WorkerKind::Eventlet => "eventlet",
        })
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
        assert!(e.contains("gevent") && e.contains("not available yet"), "{e}");
        let e = WorkerKind::resolve("mypkg.MyWorker", 1).unwrap_err();
        assert!(e.contains("Invalid worker class") && e.contains("gthread"), "{e}");
    }
}
