//! The application's I/O for an HTTP call: `receive()` and `send()`, the
//! request body read ahead for them, and response bytes on their way to a
//! client (written straight from the app's buffers when the socket takes
//! them, queued when it does not, a pathsend file with sendfile(2)).
//!
//! `receive()` and `send()` return an already-completed awaitable whenever
//! they can (body already read, socket took the bytes); only a real wait
//! (body not here yet, slow client) costs an asyncio future, completed by
//! the engine when the connection is ready.

use super::engine::{AsgiServer, Client, Disposition, Role, OUT_HIGH, OUT_LOW};
use super::exec::{ready, resolve, CycleState, TaskStart, BODY_HIGH};
use crate::bridge::asgi::messages::{self, HttpSend, Payload};
use crate::bridge::asgi::response::{RequestFacts, StartError, StartOptions};
use crate::http::conn::BodyRead;
use crate::http::error::HttpError;
use crate::workers::core::conn::log_refused;
use crate::workers::core::slab::CycleKey;
use crate::workers::core::sock::log_socket_error;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Body chunks this large are lent to the output queue, not copied, when
/// the client cannot take them at once.
const LEND_FROM: usize = 64 * 1024;
/// How long `receive()` waits for body bytes before it says the client is
/// gone, when `--timeout` is 0 (Gunicorn's default wait).
pub(super) const DEFAULT_BODY_WAIT: Duration = Duration::from_secs(30);

/// A file being sent (`http.response.pathsend`), then `after` (the chunked
/// terminator, if any).
pub(super) struct FileOut {
    file: File,
    offset: u64,
    remaining: u64,
    after: &'static [u8],
    /// sendfile(2) is allowed (`--no-sendfile` turns it off) and works here.
    sendfile: bool,
}

impl Client {
    /// What the connection still has to send, in bytes.
    pub(super) fn pending_out(&self) -> usize {
        let file = self.file.as_ref().map_or(0, |f| f.remaining.saturating_add(f.after.len() as u64));
        self.conn.out.len().saturating_add(usize::try_from(file).unwrap_or(usize::MAX))
    }

    /// Sends `parts` in order, after anything already on its way.
    pub(super) fn send(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        if self.file.is_some() {
            for p in parts {
                self.conn.out.push(p);
            }
            return Ok(());
        }
        self.conn.send(parts)
    }

    /// A body chunk framed by `prefix` and `suffix`. A large `bytes` body is
    /// lent to the output queue rather than copied: a client that reads
    /// slowly then costs no copy of it (the app's `send()` waits meanwhile).
    pub(super) fn send_body(
        &mut self,
        prefix: &[u8],
        body: &Payload<'_>,
        take: usize,
        suffix: &[u8],
    ) -> io::Result<()> {
        match body {
            Payload::Bytes(b) if take >= LEND_FROM && self.file.is_none() && take == b.as_bytes().len() => {
                let lent: PyBackedBytes = b.clone().into();
                self.conn.send_lending(prefix, Box::new(lent), suffix)
            }
            _ => self.send(&[prefix, &body.as_slice()[..take], suffix]),
        }
    }

    /// Sends what is queued (bytes, then the file); Ok(true) once all is out.
    pub(super) fn flush(&mut self) -> io::Result<bool> {
        loop {
            if !self.conn.flush()? {
                return Ok(false);
            }
            let Some(f) = self.file.as_mut() else { return Ok(true) };
            if f.remaining == 0 {
                let after = f.after;
                self.file = None;
                self.conn.out.push(after);
                continue;
            }
            match send_file(&mut self.conn, f) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.conn.edge.writable = false;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A write failed: the connection is gone.
    fn lost(&mut self, e: io::Error) -> PyErr {
        log_socket_error(&e);
        self.conn.edge.hup = true;
        PyErr::from(e)
    }
}

/// One step of the file: sendfile(2), or a read into the queue when it
/// cannot be used.
fn send_file(conn: &mut crate::workers::core::conn::Conn, f: &mut FileOut) -> io::Result<()> {
    const STEP: u64 = 1 << 20;
    if f.sendfile {
        let mut offset = libc::off_t::try_from(f.offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let count = f.remaining.min(STEP) as usize;
        // SAFETY: both fds are open for the call; offset is a local.
        let n = unsafe { libc::sendfile(conn.fd(), f.file.as_raw_fd(), &mut offset, count) };
        if n > 0 {
            f.offset += n.unsigned_abs() as u64;
            f.remaining -= (n.unsigned_abs() as u64).min(f.remaining);
            return Ok(());
        }
        if n == 0 {
            // The file is shorter than it was: the response cannot be
            // completed as announced.
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent"));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => f.sendfile = false,
            _ => return Err(e),
        }
    }
    let mut chunk = vec![0u8; f.remaining.min(64 * 1024) as usize];
    let offset = libc::off_t::try_from(f.offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pread into a local buffer of the given length.
    let n = unsafe { libc::pread(f.file.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len(), offset) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent"));
    }
    chunk.truncate(n.unsigned_abs());
    f.offset += n.unsigned_abs() as u64;
    f.remaining -= (n.unsigned_abs() as u64).min(f.remaining);
    conn.out.push(&chunk);
    Ok(())
}

fn runtime_error(message: &str) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(message.to_owned())
}

pub(super) fn start_error(e: StartError) -> PyErr {
    match e {
        StartError::InvalidHeaderName(_) => {
            crate::bridge::wsgi::response::InvalidResponseHeaderName::new_err(e.to_string())
        }
        StartError::InvalidHeaderValue(_) => {
            crate::bridge::wsgi::response::InvalidResponseHeader::new_err(e.to_string())
        }
        StartError::InvalidStatus(_) => pyo3::exceptions::PyValueError::new_err(e.to_string()),
    }
}

/// What reading the body ahead found.
enum BodyProgress {
    /// Bytes came (or the body ended).
    Got,
    /// Nothing new.
    Nothing,
    /// The body cannot be completed.
    Failed(HttpError),
    /// The socket failed.
    Lost,
}

impl AsgiServer {
    pub(super) fn receive(
        &mut self,
        py: Python<'_>,
        key: CycleKey,
        starts: &mut Vec<TaskStart>,
    ) -> PyResult<Py<PyAny>> {
        let keys = &self.scope.keys;
        let Some(st) = self.cycles.get_mut(key) else {
            return ready(py, messages::http_disconnect(py, keys)?.into_any());
        };
        if st.ws.is_some() {
            return self.ws_receive(py, key, starts);
        }
        if st.h2.is_some() {
            return self.h2_receive(py, key);
        }
        if st.disconnected || st.body_failed || st.body_error.is_some() {
            return ready(py, messages::http_disconnect(py, keys)?.into_any());
        }
        let token = st.conn;
        if st.body_finished {
            // After the body, receive() waits for the client to leave (or,
            // for a half-closed client, says so at once).
            if self.client(token).is_none_or(|c| c.conn.edge.rdhup) {
                return ready(py, messages::http_disconnect(py, &self.scope.keys)?.into_any());
            }
            let fut = self.new_future(py)?;
            if let Some(st) = self.cycles.get_mut(key) {
                st.add_waiter(fut.clone_ref(py));
            }
            return Ok(fut);
        }
        if !st.body.is_empty() || st.body_read {
            let message = take_body_message(py, st, &self.scope.keys)?;
            if !st.body_read {
                // Room for more: read on.
                self.resume(py, token, starts);
            }
            return ready(py, message);
        }
        self.wait_for_body(py, key, starts)
    }

    /// `receive()` with no body bytes at hand: a future the engine
    /// completes, and the `100 Continue` the client may be waiting for.
    fn wait_for_body(&mut self, py: Python<'_>, key: CycleKey, starts: &mut Vec<TaskStart>) -> PyResult<Py<PyAny>> {
        let wait = match self.settings.timeout {
            Duration::ZERO => DEFAULT_BODY_WAIT,
            t => t,
        };
        let fut = self.new_future(py)?;
        let Some(st) = self.cycles.get_mut(key) else { return Ok(fut) };
        st.add_waiter(fut.clone_ref(py));
        st.wait_deadline = Some(Instant::now() + wait);
        let token = st.conn;
        if let Some(mut client) = self.take_client(token) {
            if client.role == Role::Http(key) {
                if let Some(answer) = client.conn.http.take_continue() {
                    if let Err(e) = client.send(&[answer]) {
                        log_socket_error(&e);
                        client.conn.edge.hup = true;
                    }
                }
            }
            self.settle(py, client, starts);
        }
        Ok(fut)
    }

    pub(super) fn send(
        &mut self,
        py: Python<'_>,
        key: CycleKey,
        message: &Bound<'_, PyAny>,
        starts: &mut Vec<TaskStart>,
    ) -> PyResult<Py<PyAny>> {
        let Some(st) = self.cycles.get(key) else {
            return Err(runtime_error("send() called after the application call ended"));
        };
        if st.ws.is_some() {
            return self.ws_send(py, key, message, starts);
        }
        if st.h2.is_some() {
            return self.h2_send(py, key, message);
        }
        let msg = messages::http_send(message)?;
        if st.disconnected {
            return Err(self.errors.client_gone(py));
        }
        let Some(mut client) = self.take_client(st.conn) else {
            return Err(self.errors.client_gone(py));
        };
        let result = self.send_on(py, &mut client, key, msg);
        if result.is_err() && client.conn.edge.hup {
            self.close(py, client);
        } else {
            self.settle(py, client, starts);
        }
        if !result? {
            return ready(py, py.None().into_bound(py));
        }
        // The client is slow: wait until it has taken most of it.
        let fut = self.new_future(py)?;
        match self.cycles.get_mut(key) {
            Some(st) if !st.disconnected => st.set_drain_waiter(fut.clone_ref(py)),
            _ => resolve(py, &fut, py.None().into_bound(py)),
        }
        Ok(fut)
    }

    /// One `send()` message on the connection; Ok(true) when the caller
    /// must wait for the client to take what is queued.
    fn send_on(&mut self, py: Python<'_>, client: &mut Client, key: CycleKey, msg: HttpSend<'_>) -> PyResult<bool> {
        let on_conn = client.role == Role::Http(key);
        let complete = match msg {
            HttpSend::Start { status, headers, .. } => {
                self.start_response(client, key, status, &messages::header_slices(&headers))?;
                return Ok(false);
            }
            HttpSend::Informational { status, headers } => {
                self.send_informational(client, key, status, &messages::header_slices(&headers))?;
                return Ok(false);
            }
            HttpSend::Body { body, more } => {
                self.send_body(client, key, &body, more)?;
                !more
            }
            HttpSend::PathSend { path } => {
                self.send_path(py, client, key, &path)?;
                true
            }
            // Offered on HTTP/2 streams only.
            HttpSend::Trailers { .. } => {
                return Err(runtime_error("Unexpected ASGI message 'http.response.trailers' sent in a 'http' scope."))
            }
        };
        if !on_conn {
            // The connection went on without this response (a body error
            // answered it): nothing more goes out.
            return Err(self.errors.client_gone(py));
        }
        if complete {
            self.response_complete(client, key);
            return Ok(false);
        }
        Ok(client.pending_out() > OUT_HIGH)
    }

    fn start_response(
        &mut self,
        client: &mut Client,
        key: CycleKey,
        status: i64,
        headers: &[(&[u8], &[u8])],
    ) -> PyResult<()> {
        let close = self.must_close() || client.conn.edge.rdhup;
        let date = self.date();
        let keep_headers = self.keep_headers;
        let st = self.cycle(key)?;
        if st.response.started {
            return Err(runtime_error("Response already started"));
        }
        let facts = RequestFacts {
            is_head: st.head.method == "HEAD",
            version: st.head.version,
            http2: false,
            uwsgi: st.head.uwsgi.is_some(),
        };
        let mut close = close || st.head.should_close();
        if !close && self.shed_left > 0 && client.role == Role::Http(key) {
            self.shed_left -= 1;
            close = true;
        }
        let st = self.cycle(key)?;
        let opts = StartOptions { close, server: crate::SERVER_HEADER.as_bytes(), date: &date, keep_headers };
        st.response.start(facts, status, headers, &opts).map_err(start_error)?;
        if client.role == Role::Http(key) {
            client.conn.http.response_started();
        }
        Ok(())
    }

    fn send_informational(
        &mut self,
        client: &mut Client,
        key: CycleKey,
        status: i64,
        headers: &[(&[u8], &[u8])],
    ) -> PyResult<()> {
        let st = self.cycle(key)?;
        if st.response.started {
            return Err(runtime_error("Informational response after response start"));
        }
        let bytes =
            crate::bridge::asgi::response::informational(st.head.version, status, headers).map_err(start_error)?;
        if let Some(bytes) = bytes {
            if client.role == Role::Http(key) {
                if status == 100 {
                    client.conn.http.continue_sent();
                }
                client.send(&[&bytes]).map_err(|e| client.lost(e))?;
            }
        }
        Ok(())
    }

    fn send_body(&mut self, client: &mut Client, key: CycleKey, body: &Payload<'_>, more: bool) -> PyResult<()> {
        let data = body.as_slice();
        let st = self.cycle(key)?;
        if !st.response.started {
            return Err(runtime_error("Response not started"));
        }
        if st.response.complete {
            return Err(runtime_error("Response already complete"));
        }
        if !data.is_empty() && st.response.omits_body() && !st.body_warned {
            st.body_warned = true;
            crate::log::warning!(
                "ASGI app sent body bytes on a no-body response (method={} status={}); dropping per RFC 9110.",
                st.head.method,
                st.response.status
            );
        }
        let framed = st.response.frame(data.len(), more);
        if client.role == Role::Http(key) {
            client.send_body(&framed.prefix, body, framed.take, framed.suffix).map_err(|e| client.lost(e))?;
        }
        Ok(())
    }

    fn send_path(&mut self, py: Python<'_>, client: &mut Client, key: CycleKey, path: &str) -> PyResult<()> {
        // sendfile(2) cannot encrypt: over TLS the file is read and sent.
        let sendfile = self.settings.sendfile && client.conn.stream.tls().is_none();
        let st = self.cycle(key)?;
        if !st.response.started {
            return Err(runtime_error("Response not started"));
        }
        if st.response.complete {
            return Err(runtime_error("Response already complete"));
        }
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let framed = st.response.frame(usize::try_from(len).unwrap_or(usize::MAX), false);
        if client.role != Role::Http(key) {
            return Ok(());
        }
        client.send(&[&framed.prefix]).map_err(|e| client.lost(e))?;
        client.file = Some(FileOut { file, offset: 0, remaining: framed.take as u64, after: framed.suffix, sendfile });
        if client.conn.edge.writable {
            if let Err(e) = client.flush() {
                let _ = client.lost(e);
                return Err(self.errors.client_gone(py));
            }
        }
        Ok(())
    }

    fn cycle(&mut self, key: CycleKey) -> PyResult<&mut CycleState> {
        self.cycles.get_mut(key).ok_or_else(|| runtime_error("unknown request"))
    }

    /// A call the app is serving: send what is queued, read the body as far
    /// as the app's appetite goes, answer waiting `receive()` calls.
    pub(super) fn drive_request(&mut self, py: Python<'_>, client: &mut Client, key: CycleKey) -> Disposition {
        if self.flush_for(py, client, key).is_err() {
            return Disposition::Close;
        }
        let Some(st) = self.cycles.get_mut(key) else {
            client.role = Role::Idle;
            client.conn.abandon();
            return Disposition::Close;
        };
        match read_body_ahead(client, st) {
            BodyProgress::Lost => return Disposition::Close,
            BodyProgress::Failed(e) => return self.body_failed(py, client, key, e),
            BodyProgress::Got | BodyProgress::Nothing => {}
        }
        if let Some(st) = self.cycles.get_mut(key) {
            deliver_body(py, st, &self.scope.keys, client.conn.edge.rdhup);
        }
        if client.conn.edge.hup {
            return Disposition::Close;
        }
        Disposition::Keep
    }

    /// Sends what is queued for a call; a `send()` waiting for the client to
    /// catch up goes on once it has.
    pub(super) fn flush_for(&mut self, py: Python<'_>, client: &mut Client, key: CycleKey) -> Result<(), ()> {
        if client.conn.edge.writable && client.pending_out() > 0 {
            if let Err(e) = client.flush() {
                log_socket_error(&e);
                return Err(());
            }
        }
        if client.pending_out() <= OUT_LOW {
            if let Some(fut) = self.cycles.get_mut(key).and_then(|st| st.take_drain_waiter()) {
                resolve(py, &fut, py.None().into_bound(py));
            }
        }
        Ok(())
    }

    /// The body cannot be completed: waiting `receive()` calls get
    /// http.disconnect; Gunicorn answers a body it cannot frame with its
    /// error page (unless the response has started) and closes.
    fn body_failed(&mut self, py: Python<'_>, client: &mut Client, key: CycleKey, e: HttpError) -> Disposition {
        let Some(st) = self.cycles.get_mut(key) else { return Disposition::Close };
        st.body_failed = true;
        if let Ok(message) = messages::http_disconnect(py, &self.scope.keys) {
            st.answer_waiters(py, message.as_any());
        }
        if e == HttpError::NoMoreData {
            crate::log::debug!("Ignored premature client disconnection. No more data after: b''");
            return if client.conn.edge.hup { Disposition::Close } else { Disposition::Keep };
        }
        client.role = Role::Idle;
        if st.response.started {
            log_refused(client.conn.peer, &e);
            client.conn.abandon();
            return Disposition::Close;
        }
        st.disconnected = true;
        client.conn.refuse(&e);
        client.conn.http.end();
        Disposition::Keep
    }

    /// `receive()` waited too long for body bytes: Gunicorn says
    /// http.disconnect, and the connection cannot be reused.
    pub(super) fn receive_timed_out(&mut self, py: Python<'_>, key: CycleKey, _starts: &mut Vec<TaskStart>) {
        let Some(st) = self.cycles.get_mut(key) else { return };
        st.body_failed = true;
        if let Ok(message) = messages::http_disconnect(py, &self.scope.keys) {
            st.answer_waiters(py, message.as_any());
        }
    }
}

/// The body bytes at hand as an `http.request` message.
fn take_body_message<'py>(
    py: Python<'py>,
    st: &mut CycleState,
    keys: &crate::bridge::asgi::scope::Keys,
) -> PyResult<Bound<'py, PyAny>> {
    let body = std::mem::take(&mut st.body);
    let more = !st.body_read;
    st.body_finished = !more;
    Ok(messages::http_request(py, keys, &body, more)?.into_any())
}

/// Reads and decodes the body while the app wants more of it.
fn read_body_ahead(client: &mut Client, st: &mut CycleState) -> BodyProgress {
    if let Some(e) = st.body_error.take() {
        return BodyProgress::Failed(e);
    }
    let mut progress = BodyProgress::Nothing;
    while st.wants_body() {
        match client.conn.http.read_body(&mut st.body, BODY_HIGH) {
            Ok(BodyRead::Complete) => {
                st.body_read = true;
                return BodyProgress::Got;
            }
            Ok(BodyRead::Data) => progress = BodyProgress::Got,
            Ok(BodyRead::NeedData) => {
                if !client.conn.edge.readable || client.conn.http.peer_closed() {
                    break;
                }
                match client.conn.read_edge() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => client.conn.edge.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log_socket_error(&e);
                        return BodyProgress::Lost;
                    }
                }
            }
            Err(e) => return BodyProgress::Failed(e),
        }
    }
    progress
}

/// Waiting `receive()` calls get the body read so far, or, once it has
/// all been taken and the client has half-closed, http.disconnect.
fn deliver_body(py: Python<'_>, st: &mut CycleState, keys: &crate::bridge::asgi::scope::Keys, rdhup: bool) {
    if (!st.body.is_empty() || st.body_read) && !st.body_finished && st.has_waiter() {
        if let Some(fut) = st.next_waiter(py) {
            if let Ok(message) = take_body_message(py, st, keys) {
                resolve(py, &fut, message);
            }
        }
    }
    if rdhup && st.body_finished && st.has_waiter() {
        if let Ok(message) = messages::http_disconnect(py, keys) {
            st.answer_waiters(py, message.as_any());
        }
    }
}
