//! The master's own servers (for now the metrics endpoint) as the loop sees
//! them: opened after the first workers are forked, brought in line with
//! the settings after a reload, polled with the signal pipe, served each
//! turn without blocking, and closed when the master stops.

use super::metrics::{prometheus, MetricsServer};
use super::Arbiter;
use std::time::{Duration, Instant};

/// A metrics address that could not be bound is tried again this often
/// (it may be held by the master this one is replacing).
const METRICS_RETRY: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Services {
    metrics: Option<MetricsServer>,
    /// An address that failed to bind, and when to try again.
    metrics_retry: Option<(String, Instant)>,
}

impl Services {
    /// The fds the loop polls for the services, with the signal pipe.
    pub fn poll_fds(&self) -> Vec<libc::pollfd> {
        let mut fds = Vec::new();
        if let Some(m) = &self.metrics {
            m.poll_fds(&mut fds);
        }
        fds
    }

    /// The master is stopping: no more clients.
    pub fn close(&mut self) {
        self.metrics = None;
        self.metrics_retry = None;
    }
}

impl Arbiter {
    /// Opens, closes or moves the services to match the settings: at start
    /// and after each reload. Failures are logged and the master goes on:
    /// a metrics endpoint is not worth stopping a server for.
    pub(super) fn open_services(&mut self) {
        let want = self.settings.metrics_bind.clone();
        if self.services.metrics.as_ref().map(|m| &m.configured) != want.as_ref() {
            self.services.metrics = None;
            self.services.metrics_retry = None;
            if let Some(addr) = want {
                self.bind_metrics(&addr, true);
            }
        }
    }

    fn bind_metrics(&mut self, addr: &str, first: bool) {
        match MetricsServer::bind(addr) {
            Ok(m) => {
                crate::log::info!("Metrics at: http://{}/metrics", m.local);
                self.services.metrics = Some(m);
                self.services.metrics_retry = None;
            }
            Err(e) => {
                if first {
                    crate::log::error!("Cannot serve metrics at {addr}: {e}; trying again every {} s", METRICS_RETRY.as_secs());
                } else {
                    crate::log::debug!("Cannot serve metrics at {addr} yet: {e}");
                }
                self.services.metrics_retry = Some((addr.to_owned(), Instant::now() + METRICS_RETRY));
            }
        }
    }

    /// One turn of the services, after the poll that included their fds.
    pub(super) fn serve_services(&mut self, polled: &[libc::pollfd]) {
        let now = Instant::now();
        if let Some((addr, at)) = self.services.metrics_retry.clone() {
            if now >= at {
                self.bind_metrics(&addr, false);
            }
        }
        let wants_page = self.services.metrics.as_mut().is_some_and(|m| m.turn(polled, now));
        if wants_page {
            let page = prometheus::render(&self.snapshot());
            if let Some(m) = self.services.metrics.as_mut() {
                m.answer(&page);
            }
        }
    }
}
