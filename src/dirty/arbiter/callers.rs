//! The callers' connections (HTTP workers' dirty clients, stash users,
//! `gunicornc`'s management messages): accepting them, reading one
//! message at a time (the next is read once this one is answered, as
//! Gunicorn's arbiter does), answering what the arbiter answers itself
//! (the stash, status, management), and a caller going away.

use super::sockio::{self, Outbox, Read};
use super::{answers, Arbiter, CallerKey, Unwind, FRAME_STALL, INPUT_BUDGET, MAX_CALLERS};
use crate::dirty::wire::frame::{Header, Kind, HEADER_LEN};
use crate::dirty::wire::py as wire;
use crate::dirty::wire::tlv::Value;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use socket2::Socket;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// At most this much of a request is read per read call.
const READ_STEP: usize = 256 * 1024;
/// Messages answered per caller per turn.
const MESSAGES_PER_TURN: usize = 16;

/// A request waiting for a worker's thread.
pub struct Pending {
    /// The whole frame, as received.
    pub frame: Vec<u8>,
    pub id: u64,
    pub app: String,
    pub action: String,
    pub since: Instant,
}

pub enum CallerState {
    Reading,
    Queued(Pending),
    Calling { pid: i32, lane: usize },
}

pub struct Caller {
    sock: Socket,
    input: Vec<u8>,
    header: Option<Header>,
    /// When bytes of a partly received message last came.
    progress: Option<Instant>,
    pub state: CallerState,
    pub out: Outbox,
}

impl Caller {
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl Arbiter {
    pub(super) fn caller_interest(&self, c: &Caller) -> i16 {
        let mut events = libc::POLLRDHUP;
        if c.out.pending() > 0 {
            events |= libc::POLLOUT;
        }
        if matches!(c.state, CallerState::Reading) && (c.header.is_none() || self.buffered < INPUT_BUDGET) {
            events |= libc::POLLIN;
        }
        events
    }

    pub(super) fn accept_callers(&mut self) {
        let Some(listener) = &self.listener else { return };
        for _ in 0..64 {
            if self.callers.len() >= MAX_CALLERS {
                return;
            }
            match listener.accept() {
                Ok((sock, _)) => {
                    if let Err(e) = sock.set_nonblocking(true) {
                        crate::log::debug!("dirty client socket: {e}");
                        continue;
                    }
                    crate::log::debug!("New client connection from HTTP worker");
                    self.callers.insert(Caller {
                        sock,
                        input: Vec::new(),
                        header: None,
                        progress: None,
                        state: CallerState::Reading,
                        out: Outbox::default(),
                    });
                    self.board.head().clients.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: try again next turn.
                    crate::log::warning!("Dirty arbiter cannot accept: {e}");
                    return;
                }
            }
        }
    }

    /// Errs only in a worker forked by a management message.
    pub(super) fn caller_ready(&mut self, py: Python<'_>, key: CallerKey, revents: i16) -> Result<(), Unwind> {
        if revents & libc::POLLOUT != 0 {
            let failed = self.callers.get_mut(key).is_some_and(|c| c.out.flush(c.fd()).is_err());
            if failed {
                self.drop_caller(key);
                return Ok(());
            }
        }
        let reading = self.callers.get(key).is_some_and(|c| matches!(c.state, CallerState::Reading));
        if reading && revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0 {
            self.read_messages(py, key)?;
        } else if !reading && revents & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0 {
            // Gone while its call waits or runs.
            self.drop_caller(key);
        }
        Ok(())
    }

    fn read_messages(&mut self, py: Python<'_>, key: CallerKey) -> Result<(), Unwind> {
        for _ in 0..MESSAGES_PER_TURN {
            match self.read_one(key) {
                Ok(Some((header, frame))) => {
                    self.buffered = self.buffered.saturating_sub(frame.len());
                    self.on_message(py, key, header, frame)?;
                }
                Ok(None) => return Ok(()),
                Err(why) => {
                    if let Some(why) = why {
                        crate::log::error!("Dirty client connection error: {why}");
                    }
                    self.drop_caller(key);
                    return Ok(());
                }
            }
            if !self.callers.get(key).is_some_and(|c| matches!(c.state, CallerState::Reading)) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reads toward one whole message. Err(None): the caller closed;
    /// Err(Some(why)): it sent what is not the protocol.
    fn read_one(&mut self, key: CallerKey) -> Result<Option<(Header, Vec<u8>)>, Option<String>> {
        loop {
            let budget_left = self.buffered < INPUT_BUDGET;
            let Some(c) = self.callers.get_mut(key) else { return Ok(None) };
            let want = match c.header {
                None => HEADER_LEN - c.input.len(),
                Some(h) => HEADER_LEN + h.len - c.input.len(),
            };
            if want == 0 {
                let header = c.header.take();
                c.progress = None;
                let frame = std::mem::take(&mut c.input);
                return Ok(header.map(|h| (h, frame)));
            }
            if c.header.is_some() && !budget_left {
                return Ok(None);
            }
            let start = c.input.len();
            c.input.resize(start + want.min(READ_STEP), 0);
            let got = sockio::read(c.sock.as_raw_fd(), &mut c.input[start..]);
            let n = match got {
                Ok(Read::Data(n)) => n,
                Ok(Read::Blocked) => 0,
                Ok(Read::Eof) if start == 0 => {
                    c.input.truncate(start);
                    return Err(None);
                }
                Ok(Read::Eof) => {
                    c.input.truncate(start);
                    return Err(Some(format!("connection closed inside a message ({start} bytes of it)")));
                }
                Err(e) => {
                    c.input.truncate(start);
                    return Err(if start == 0 { None } else { Some(e.to_string()) });
                }
            };
            c.input.truncate(start + n);
            if n == 0 {
                return Ok(None);
            }
            c.progress = Some(Instant::now());
            self.buffered += n;
            if c.header.is_none() && c.input.len() == HEADER_LEN {
                let mut head = [0u8; HEADER_LEN];
                head.copy_from_slice(&c.input);
                c.header = Some(Header::parse(&head, false).map_err(|e| Some(e.to_string()))?);
            }
        }
    }

    /// One whole message (no longer counted in `buffered`: a request that
    /// waits for a thread is counted again while it waits).
    fn on_message(&mut self, py: Python<'_>, key: CallerKey, header: Header, frame: Vec<u8>) -> Result<(), Unwind> {
        match header.kind {
            Kind::Request => self.route(key, header.id, frame),
            Kind::Stash => self.stash(py, key, header.id, &frame[HEADER_LEN..]),
            Kind::Status => {
                let status = self.status();
                self.reply(key, Kind::Response, header.id, &answers::result_payload(status));
            }
            Kind::Manage => self.manage_message(py, key, header.id, &frame[HEADER_LEN..])?,
            other => {
                // Gunicorn hands these to a worker, which answers so.
                let err = answers::unknown_type(other.name());
                self.reply(key, Kind::Error, header.id, &answers::error_payload(err));
            }
        }
        Ok(())
    }

    fn stash(&mut self, py: Python<'_>, key: CallerKey, id: u64, payload: &[u8]) {
        let answered = (|| -> PyResult<Vec<u8>> {
            let message = if payload.is_empty() {
                PyDict::new(py).into_any()
            } else {
                wire::decode(py, payload).map_err(|e| e.into_py(py))?
            };
            let outcome = self.stash.bind(py).call_method1("handle", (message,))?;
            let outcome = outcome.cast::<PyTuple>()?;
            let ok: bool = outcome.get_item(0)?.extract()?;
            let body = PyDict::new(py);
            let (kind, field) = if ok { (Kind::Response, "result") } else { (Kind::Error, "error") };
            body.set_item(field, outcome.get_item(1)?)?;
            wire::frame(kind, id, Some(body.as_any())).map_err(|e| e.into_py(py))
        })();
        match answered {
            Ok(bytes) => self.send_bytes(key, &bytes),
            Err(e) => {
                crate::log::error!("Stash operation error: {e}");
                let err = answers::dirty_error(&crate::python::exception_text(py, &e));
                self.reply(key, Kind::Error, id, &answers::error_payload(err));
            }
        }
    }

    fn manage_message(&mut self, py: Python<'_>, key: CallerKey, id: u64, payload: &[u8]) -> Result<(), Unwind> {
        let message = crate::dirty::wire::tlv::decode(payload).unwrap_or(Value::None);
        let op = message.get("op").and_then(Value::as_int);
        let count = message.get("count").and_then(Value::as_int).unwrap_or(1).max(1);
        let count = usize::try_from(count).unwrap_or(usize::MAX).min(crate::dirty::board::MAX_WORKERS);
        let answer = match op {
            Some(answers::MANAGE_ADD) => {
                let spawned = self.add_workers(py, count)?;
                crate::log::info!("Worker management: add {count} workers (spawned/removed: {spawned})");
                answers::added(count, spawned, self.worker_count(), self.num_workers)
            }
            Some(answers::MANAGE_REMOVE) => {
                let removed = self.remove_workers(py, count);
                crate::log::info!("Worker management: remove {count} workers (spawned/removed: {removed})");
                answers::removed(count, removed, self.worker_count(), self.num_workers)
            }
            other => {
                let shown = other.map_or("None".to_owned(), |n| n.to_string());
                let err = answers::dirty_error(&format!("Unknown manage operation: {shown}"));
                self.reply(key, Kind::Error, id, &answers::error_payload(err));
                return Ok(());
            }
        };
        self.reply(key, Kind::Response, id, &answers::result_payload(answer));
        Ok(())
    }

    /// A message the arbiter makes itself, to a caller.
    pub(super) fn reply(&mut self, key: CallerKey, kind: Kind, id: u64, payload: &Value) {
        let body = payload.encode();
        let bytes = crate::dirty::wire::frame::frame(kind, id, &body);
        self.send_bytes(key, &bytes);
    }

    fn send_bytes(&mut self, key: CallerKey, bytes: &[u8]) {
        let failed = match self.callers.get_mut(key) {
            Some(c) => {
                c.out.push(bytes);
                c.out.flush(c.fd()).is_err()
            }
            None => false,
        };
        if failed {
            self.drop_caller(key);
        }
    }

    /// A caller is gone (closed, broke the protocol, or could not be
    /// written to): its waiting call is forgotten, its running one
    /// cancelled.
    pub(super) fn drop_caller(&mut self, key: CallerKey) {
        let Some(c) = self.callers.remove(key) else { return };
        self.board.head().clients.fetch_sub(1, Ordering::Relaxed);
        self.buffered = self.buffered.saturating_sub(c.input.len());
        match c.state {
            CallerState::Reading => {}
            CallerState::Queued(p) => {
                self.buffered = self.buffered.saturating_sub(p.frame.len());
                if let Some(i) = self.queue.iter().position(|k| *k == key) {
                    self.queue.remove(i);
                    self.board.head().queued.fetch_sub(1, Ordering::Relaxed);
                }
            }
            CallerState::Calling { pid, lane } => self.cancel_call(pid, lane),
        }
    }

    /// Callers that began a message and stopped sending it.
    pub(super) fn drop_stalled_callers(&mut self, now: Instant) {
        if self.buffered >= INPUT_BUDGET {
            // Their bytes wait because the arbiter stopped reading, not
            // because they stopped sending: the clock starts again when
            // reading resumes.
            for (_, c) in self.callers.iter_mut() {
                if c.progress.is_some() {
                    c.progress = Some(now);
                }
            }
            return;
        }
        let stalled = self.callers.keys_where(|c| c.progress.is_some_and(|t| now.duration_since(t) > FRAME_STALL));
        for key in stalled {
            crate::log::warning!("Dirty client sent part of a message and stopped: dropped");
            self.drop_caller(key);
        }
    }
}
