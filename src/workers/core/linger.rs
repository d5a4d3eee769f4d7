//! Gunicorn's `close_graceful` (RFC 9112 section 9.6) for a worker that
//! serves one connection at a time, without making it wait for the client:
//! the write side is shut at once (the client sees the end of the
//! response), and the socket is kept until the client closes its side,
//! `http::conn::LINGER_MAX` bytes have been discarded or two seconds have
//! passed, so that closing with unread input never resets the connection
//! and truncates the response. The worker serves the next request
//! meanwhile. (Event-driven workers linger each connection in their own
//! loop: `core::conn`.)

use super::sock::{discard_input, wait_fd, Discarded};
use crate::http::conn::LINGER_MAX;
use crate::net::stream::Stream;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LINGER: Duration = Duration::from_secs(2);
/// Past this many, lingering sockets are serviced after every request.
const BATCH: usize = 16;
/// The most sockets kept at once: beyond it the oldest is waited for.
const CAP: usize = 512;

#[derive(Default)]
pub struct Lingerer {
    socks: Vec<Lingering>,
}

struct Lingering {
    stream: Arc<Stream>,
    deadline: Instant,
    allowance: usize,
}

impl Lingering {
    /// Drops what the client sent; true when the socket is done with.
    fn discard(&mut self) -> bool {
        match discard_input(self.stream.fd(), self.allowance) {
            Discarded::WouldBlock(n) => {
                self.allowance -= n.min(self.allowance);
                false
            }
            Discarded::Closed | Discarded::Limit => true,
        }
    }
}

impl Lingerer {
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// Ends a connection whose response has been written.
    pub fn close(&mut self, stream: Arc<Stream>) {
        if stream.shutdown(std::net::Shutdown::Write).is_err() {
            return;
        }
        let mut l = Lingering { stream, deadline: Instant::now() + LINGER, allowance: LINGER_MAX };
        // Often the client has already closed: no need to keep it.
        if l.discard() {
            return;
        }
        self.socks.push(l);
        if self.socks.len() > CAP {
            let mut oldest = self.socks.remove(0);
            let left = oldest.deadline.saturating_duration_since(Instant::now());
            let _ = wait_fd(oldest.stream.fd(), libc::POLLIN, Some(left));
            oldest.discard();
        }
    }

    /// Whether enough sockets wait that they should be looked at now.
    pub fn due(&self) -> bool {
        self.socks.len() >= BATCH
    }

    /// The fds to poll for, and how long the earliest may still wait.
    pub fn poll_set(&self, fds: &mut Vec<libc::pollfd>) -> Option<Duration> {
        let now = Instant::now();
        fds.extend(self.socks.iter().map(|l| libc::pollfd { fd: l.stream.fd(), events: libc::POLLIN, revents: 0 }));
        self.socks.iter().map(|l| l.deadline.saturating_duration_since(now)).min()
    }

    /// Drops every socket whose client closed, that drained enough, or
    /// whose time is up; `ready` are the pollfds [`Lingerer::poll_set`]
    /// added, after poll.
    pub fn service(&mut self, ready: &[libc::pollfd]) {
        let now = Instant::now();
        let mut i = 0;
        self.socks.retain_mut(|l| {
            let readable = ready.get(i).is_some_and(|p| p.revents != 0);
            i += 1;
            let finished = (readable && l.discard()) || now >= l.deadline;
            !finished
        });
    }

    /// A non-blocking pass over all sockets (while busy serving).
    pub fn service_now(&mut self) {
        let mut fds = Vec::with_capacity(self.socks.len());
        self.poll_set(&mut fds);
        poll(&mut fds, Duration::ZERO);
        self.service(&fds);
    }

    /// At worker exit: waits (up to each deadline) for the rest to finish.
    pub fn finish(&mut self) {
        while !self.socks.is_empty() {
            let mut fds = Vec::with_capacity(self.socks.len());
            let wait = self.poll_set(&mut fds).unwrap_or_default();
            poll(&mut fds, wait);
            self.service(&fds);
        }
    }
}

fn poll(fds: &mut [libc::pollfd], wait: Duration) {
    let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a valid array for the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}
