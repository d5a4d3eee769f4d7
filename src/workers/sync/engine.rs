//! The sync worker's loop: accept a connection while clients wait (polling
//! only when idle), read its request head with the GIL released, hand it
//! to the application, then close it gracefully in the background. It beats
//! at least every `timeout / 2` while idle.

use super::exec::Exec;
use crate::http::conn::{Event, Request, ServerConn};
use crate::http::policy::HttpPolicy;
use crate::net::listener::Listener;
use crate::net::stream::{Peer, Stream};
use crate::workers::core::accept::Exhaustion;
use crate::workers::core::blocking::{blocking, WaitError};
use crate::workers::core::life::{beat_interval, parent_gone};
use crate::workers::core::linger::Lingerer;
use crate::workers::core::signals::{self, Wakeup};
use crate::workers::core::sock::{self, log_socket_error};
use crate::workers::wsgi_request::reject;
use crate::workers::WorkerCtx;
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request head is read this much at a time.
const HEAD_READ: usize = 8192;

pub struct Engine<'a> {
    ctx: &'a WorkerCtx,
    policy: HttpPolicy,
    exec: Exec,
    linger: Lingerer,
    exhaustion: Exhaustion,
}

impl<'a> Engine<'a> {
    pub fn new(ctx: &'a WorkerCtx, policy: HttpPolicy, exec: Exec) -> Engine<'a> {
        Engine { ctx, policy, exec, linger: Lingerer::default(), exhaustion: Exhaustion::default() }
    }

    /// Serves until the worker is told to stop (or its master is gone).
    pub fn run(&mut self, py: Python<'_>, wakeup: &Wakeup) -> PyResult<()> {
        let result = self.serve(py, wakeup);
        // Responses already sent still get their graceful close.
        let linger = &mut self.linger;
        py.detach(|| linger.finish());
        result
    }

    fn serve(&mut self, py: Python<'_>, wakeup: &Wakeup) -> PyResult<()> {
        let wait = beat_interval(&self.ctx.settings);
        let mut fds: Vec<libc::pollfd> = self
            .ctx
            .listeners
            .iter()
            .map(|l| libc::pollfd { fd: l.fd(), events: libc::POLLIN, revents: 0 })
            .chain(std::iter::once(libc::pollfd { fd: wakeup.read_fd, events: libc::POLLIN, revents: 0 }))
            .collect();
        let fixed = fds.len();
        while signals::alive() {
            self.ctx.slot.beat();
            let accepting = self.exhaustion.may_accept(Instant::now());
            if accepting && self.accept_waiting(py)? {
                // Keep accepting while clients are waiting, without polling.
                if self.linger.due() {
                    self.linger.service_now();
                }
                continue;
            }
            if parent_gone(self.ctx.ppid) {
                break;
            }
            fds.truncate(fixed);
            // Out of descriptors: the listeners are left out of the poll
            // for a moment instead of waking it at once again.
            let listening = self.exhaustion.may_accept(Instant::now());
            for pfd in &mut fds[..fixed - 1] {
                pfd.events = if listening { libc::POLLIN } else { 0 };
            }
            let mut timeout = self.linger.poll_set(&mut fds).map_or(wait, |l| l.min(wait));
            if !listening {
                timeout = timeout.min(Exhaustion::PAUSE);
            }
            poll(py, &mut fds, timeout);
            if !self.linger.is_empty() {
                self.linger.service(&fds[fixed..]);
            }
            wakeup.drain();
            py.check_signals()?;
        }
        Ok(())
    }

    /// One connection from each listener that has one waiting; whether any
    /// was served.
    fn accept_waiting(&mut self, py: Python<'_>) -> PyResult<bool> {
        let mut served = false;
        for listener in &self.ctx.listeners {
            let (stream, peer) = match listener.accept() {
                Ok(Some(accepted)) => accepted,
                Ok(None) => continue,
                Err(e) if self.exhaustion.note(&e, Instant::now()) => break,
                Err(e) => return Err(e.into()),
            };
            let stream = match &self.ctx.tls {
                None => stream,
                Some(tls) => match tls.wrap(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        crate::log::debug!("TLS session refused: {e}");
                        continue;
                    }
                },
            };
            self.handle(py, stream, peer, listener)?;
            served = true;
            self.ctx.slot.beat();
            if !signals::alive() {
                break;
            }
        }
        Ok(served)
    }

    fn handle(&mut self, py: Python<'_>, stream: Stream, peer: Peer, listener: &Listener) -> PyResult<()> {
        let stream = Arc::new(stream);
        let mut http = ServerConn::new(self.policy.proxy_protocol);
        let head = HeadWait {
            slot: &self.ctx.slot,
            beat_every: beat_interval(&self.ctx.settings),
            limit: self.ctx.settings.request_head_timeout,
        };
        let result = match read_request(py, &stream, &mut http, &self.policy, peer, &head) {
            Ok(Some(request)) => self.exec.serve(py, &stream, peer, &listener.address, request, http),
            Ok(None) => Ok(()),
            Err(WaitError::Io(e)) => {
                log_socket_error(&e);
                Ok(())
            }
            Err(WaitError::Interrupted(e)) => Err(e),
        };
        self.linger.close(stream);
        result
    }
}

/// How long a request head may take, and the heartbeat to keep meanwhile
/// (a slow client is no reason for the master to kill the worker).
struct HeadWait<'a> {
    slot: &'a crate::scoreboard::SlotHandle,
    beat_every: Duration,
    /// `--request-head-timeout`, counted from the accept (zero: no limit).
    limit: Duration,
}

/// Reads until the connection has a request; None when it ended first (a
/// refused request was answered, the client left, or it took longer than
/// `--request-head-timeout`).
fn read_request(
    py: Python<'_>,
    stream: &Stream,
    http: &mut ServerConn,
    policy: &HttpPolicy,
    peer: Peer,
    wait: &HeadWait<'_>,
) -> Result<Option<Box<Request>>, WaitError> {
    let deadline = (!wait.limit.is_zero()).then(|| Instant::now() + wait.limit);
    loop {
        match http.next_event(policy, peer.ip()) {
            Event::Request(request) => return Ok(Some(request)),
            Event::NeedData => match stream.recv_into(http.buffer(), HEAD_READ) {
                Ok(got) if got.n == 0 => http.received_eof(),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left == Some(Duration::ZERO) {
                        let limit = wait.limit.as_secs();
                        crate::log::debug!("Closing connection: no complete request head within {limit}s");
                        return Ok(None);
                    }
                    let step = left.map_or(wait.beat_every, |l| l.min(wait.beat_every));
                    if !blocking(py, || sock::wait_input(stream, Some(step)))? {
                        wait.slot.beat();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WaitError::Io(e)),
            },
            Event::Reject(e) => {
                reject(py, stream, peer, &e);
                return Ok(None);
            }
            // The sync worker offers no HTTP/2 (as Gunicorn's).
            Event::Close | Event::Paused | Event::Http2 => {
                crate::log::debug!("Closing connection.");
                return Ok(None);
            }
        }
    }
}

/// Waits for the listeners, the wake-up pipe and lingering sockets, with
/// the GIL released.
fn poll(py: Python<'_>, fds: &mut [libc::pollfd], timeout: Duration) {
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    let (ptr, n) = (fds.as_mut_ptr() as usize, fds.len() as libc::nfds_t);
    // SAFETY: `fds` outlives the call and is not touched meanwhile.
    py.detach(|| unsafe { libc::poll(ptr as *mut libc::pollfd, n, ms) });
}
