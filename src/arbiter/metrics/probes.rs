//! What `/readyz` answers: whether this master's workers can take requests
//! now. `/healthz` needs no state: a master that answers it is turning its
//! loop, which is all a liveness probe should restart a server for.

/// Probes are read by machines; plain text keeps them readable by people.
pub const CONTENT_TYPE: &str = "text/plain; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// At least one worker of the pool has booted (loaded the app, or
    /// finished ASGI lifespan startup) and is not being retired.
    Ready { booted: usize, target: usize },
    /// Every worker is still booting, or none is left (after WINCH).
    NoWorkerReady { target: usize },
    /// TERM, INT or QUIT: the listeners are closed, workers are finishing.
    Stopping,
}

impl Readiness {
    pub fn status(&self) -> &'static str {
        match self {
            Readiness::Ready { .. } => "200 OK",
            Readiness::NoWorkerReady { .. } | Readiness::Stopping => "503 Service Unavailable",
        }
    }

    pub fn body(&self) -> String {
        match self {
            Readiness::Ready { booted, target } => format!("ready: {booted} of {target} workers booted\n"),
            Readiness::NoWorkerReady { target } => format!("not ready: no worker booted (0 of {target})\n"),
            Readiness::Stopping => "not ready: shutting down\n".to_owned(),
        }
    }
}
