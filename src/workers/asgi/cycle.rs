//! One request through the ASGI app (Gunicorn's and uvicorn's "cycle"):
//! its state on the server, the `receive`/`send` callables the app awaits,
//! and what happens when its task ends (500 page, cut connection, access
//! log, `post_request`).
//!
//! `receive()` and `send()` return an already-completed awaitable whenever
//! they can (body already read, socket took the bytes); only a real wait
//! (body not here yet, slow client) costs an asyncio future, completed by
//! the server when the connection is ready.

use super::server::{AConn, AsgiServer, Fate, Start, State, OUT_HIGH};
use crate::asgi::awaitable::Ready;
use crate::asgi::messages::{self, HttpSend};
use crate::asgi::response::{AsgiResponse, RequestFacts, StartError, StartOptions};
use crate::http::body::{BodyDecoder, Decoded};
use crate::http::error::HttpError;
use crate::http::request::RequestHead;
use crate::net::stream::Peer;
use crate::workers::evconn::{slot_generation, slot_index, slot_token, Phase};
use pyo3::prelude::*;
use std::io;
use std::time::{Duration, Instant};

/// Body bytes read ahead of the app's `receive()` calls, per request; past
/// it the connection is not read until the app takes them.
const BODY_HIGH: usize = 64 * 1024;
/// How long `receive()` waits for body bytes before it says the client is
/// gone, when `--timeout` is 0 (Gunicorn's default wait).
const DEFAULT_BODY_WAIT: Duration = Duration::from_secs(30);
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How an app call ended.
pub enum Outcome {
    Returned,
    Raised(PyErr),
    Cancelled,
    /// SystemExit or KeyboardInterrupt went through the app (a timeout's
    /// ABRT, QUIT): the worker is going, the client gets no answer, as
    /// with Gunicorn's workers.
    Exiting,
}

pub struct CycleState {
    /// The connection's token.
    pub conn: u64,
    pub head: RequestHead,
    pub peer: Peer,
    decoder: BodyDecoder,
    /// Body bytes read and not yet given to the app.
    pub body: Vec<u8>,
    /// A framing error met while the engine prebuffered the body.
    body_error: Option<HttpError>,
    /// The body cannot be completed (framing error, truncated, the wait for
    /// it timed out): `receive()` says http.disconnect.
    body_failed: bool,
    /// The app got `more_body: False`.
    body_finished: bool,
    /// `Expect: 100-continue` not answered yet: it goes out when the app
    /// first waits for the body, unless a final response came first.
    continue_pending: bool,
    waiters: Vec<Py<PyAny>>,
    wait_deadline: Option<Instant>,
    pub response: AsgiResponse,
    body_warned: bool,
    /// `send()` waiting for the client to take what is queued.
    drain: Option<Py<PyAny>>,
    pub disconnected: bool,
    pub task: Option<Py<PyAny>>,
    cancel_at: Option<Instant>,
    pub started: Instant,
    pub hook_req: Option<Py<PyAny>>,
    pub ws: Option<Box<super::websocket::WsState>>,
}

impl CycleState {
    pub fn new(
        conn: u64,
        head: RequestHead,
        peer: Peer,
        decoder: BodyDecoder,
        body: Vec<u8>,
        body_error: Option<HttpError>,
        now: Instant,
    ) -> CycleState {
        CycleState {
            conn,
            continue_pending: head.expect_continue,
            head,
            peer,
            decoder,
            body,
            body_failed: false,
            body_error,
            body_finished: false,
            waiters: Vec::new(),
            wait_deadline: None,
            response: AsgiResponse::default(),
            body_warned: false,
            drain: None,
            disconnected: false,
            task: None,
            cancel_at: None,
            started: now,
            hook_req: None,
            ws: None,
        }
    }

    /// The whole body arrived (the app may not have taken it all).
    pub fn body_done(&self) -> bool {
        self.decoder.is_done() && !self.body_failed && self.body_error.is_none()
    }

    fn wants_body(&self) -> bool {
        !self.decoder.is_done() && !self.body_failed && self.body_error.is_none() && self.body.len() < BODY_HIGH
    }

    pub fn add_waiter(&mut self, fut: Py<PyAny>) {
        self.waiters.push(fut);
    }

    pub fn take_waiters(&mut self) -> Vec<Py<PyAny>> {
        self.wait_deadline = None;
        std::mem::take(&mut self.waiters)
    }

    pub fn has_waiter(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// The first waiter still waiting (an app may cancel its receive()).
    pub fn next_waiter(&mut self, py: Python<'_>) -> Option<Py<PyAny>> {
        while !self.waiters.is_empty() {
            let fut = self.waiters.remove(0);
            if !is_done(py, &fut) {
                if self.waiters.is_empty() {
                    self.wait_deadline = None;
                }
                return Some(fut);
            }
        }
        self.wait_deadline = None;
        None
    }

    pub fn drain_waiter(&mut self) -> Option<Py<PyAny>> {
        self.drain.take()
    }

    pub fn set_drain(&mut self, fut: Py<PyAny>) {
        self.drain = Some(fut);
    }

    fn task_running(&self, py: Python<'_>) -> bool {
        self.task.as_ref().is_some_and(|t| !is_done(py, t))
    }

    fn cancel(&mut self, py: Python<'_>) {
        self.cancel_at = None;
        if let Some(task) = &self.task {
            if let Err(e) = task.bind(py).call_method0("cancel") {
                crate::log::error!("{}", crate::python::format_exception(py, &e));
            }
        }
    }
}

pub fn is_done(py: Python<'_>, fut: &Py<PyAny>) -> bool {
    fut.bind(py).call_method0(pyo3::intern!(py, "done")).and_then(|d| d.is_truthy()).unwrap_or(true)
}

/// Completes a future the app awaits, unless it is already done (an app
/// may cancel a wait, as anyio's cancel scopes do).
pub fn resolve(py: Python<'_>, fut: &Py<PyAny>, value: Bound<'_, PyAny>) {
    if is_done(py, fut) {
        return;
    }
    if let Err(e) = fut.bind(py).call_method1(pyo3::intern!(py, "set_result"), (value,)) {
        crate::log::error!("{}", crate::python::format_exception(py, &e));
    }
}

/// The cycles of one worker, by key (slot index and generation), so a
/// callable the app kept after its call ended finds nothing.
#[derive(Default)]
pub struct Cycles {
    entries: Vec<(u32, Option<CycleState>)>,
    free: Vec<u32>,
    count: usize,
}

impl Cycles {
    pub fn insert(&mut self, st: CycleState) -> u64 {
        self.count += 1;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push((0, None));
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[index as usize];
        entry.1 = Some(st);
        slot_token(index, entry.0)
    }

    fn entry(&self, key: u64) -> Option<&(u32, Option<CycleState>)> {
        self.entries.get(slot_index(key)).filter(|e| e.0 == slot_generation(key))
    }

    pub fn get(&self, key: u64) -> Option<&CycleState> {
        self.entry(key).and_then(|e| e.1.as_ref())
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut CycleState> {
        self.entries.get_mut(slot_index(key)).filter(|e| e.0 == slot_generation(key)).and_then(|e| e.1.as_mut())
    }

    pub fn remove(&mut self, key: u64) -> Option<CycleState> {
        let index = slot_index(key);
        let entry = self.entries.get_mut(index).filter(|e| e.0 == slot_generation(key))?;
        let st = entry.1.take()?;
        entry.0 = entry.0.wrapping_add(1);
        self.free.push(index as u32);
        self.count -= 1;
        Some(st)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    fn keys(&self) -> impl Iterator<Item = (u64, &CycleState)> {
        self.entries.iter().enumerate().filter_map(|(i, (g, st))| st.as_ref().map(|st| (slot_token(i as u32, *g), st)))
    }

    /// Cycles whose `receive()` waited too long for body bytes.
    pub fn expired_waits(&self, now: Instant) -> Vec<u64> {
        self.keys().filter(|(_, st)| st.wait_deadline.is_some_and(|d| d <= now)).map(|(k, _)| k).collect()
    }

    /// Cancels the app calls whose client left longer than the grace
    /// period ago.
    pub fn cancel_due(&mut self, py: Python<'_>, now: Instant) {
        for (_, st) in self.entries.iter_mut() {
            if let Some(st) = st.as_mut() {
                if st.cancel_at.is_some_and(|d| d <= now) {
                    st.cancel(py);
                }
            }
        }
    }

    pub fn cancel_all(&mut self, py: Python<'_>) {
        for (_, st) in self.entries.iter_mut() {
            if let Some(st) = st.as_mut() {
                if st.task_running(py) {
                    st.cancel(py);
                }
            }
        }
    }
}

/// The exception classes `send()` raises once the client is gone (ASGI
/// 2.4: a subclass of OSError).
pub struct Errors {
    pub client_disconnected: Py<PyAny>,
    pub websocket_disconnected: Py<PyAny>,
}

impl Errors {
    pub fn new(py: Python<'_>) -> PyResult<Errors> {
        let m = py.import("ferrocorn.errors")?;
        Ok(Errors {
            client_disconnected: m.getattr("ClientDisconnected")?.unbind(),
            websocket_disconnected: m.getattr("WebSocketDisconnected")?.unbind(),
        })
    }

    pub fn gone(&self, py: Python<'_>) -> PyErr {
        match self.client_disconnected.bind(py).call1(("client disconnected",)) {
            Ok(e) => PyErr::from_value(e),
            Err(e) => e,
        }
    }
}

pub fn ready(py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    if value.is_none() {
        return crate::asgi::awaitable::done(py);
    }
    Ok(Py::new(py, Ready::new(value.unbind()))?.into_any())
}

fn runtime_error(message: &str) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(message.to_owned())
}

fn start_error(e: StartError) -> PyErr {
    match e {
        StartError::InvalidHeaderName(_) => crate::wsgi::response::InvalidResponseHeaderName::new_err(e.to_string()),
        StartError::InvalidHeaderValue(_) => crate::wsgi::response::InvalidResponseHeader::new_err(e.to_string()),
        StartError::InvalidStatus(_) => pyo3::exceptions::PyValueError::new_err(e.to_string()),
    }
}

impl AsgiServer {
    fn new_future(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.refs()?.create_future.bind(py).call0()?.unbind())
    }

    /// A connection taken out of its slot, driven and put back.
    fn resume(&mut self, py: Python<'_>, tok: u64, starts: &mut Vec<Start>) {
        if let Some(conn) = self.take_conn(tok) {
            self.settle(py, conn, starts);
        }
    }

    pub fn receive(&mut self, py: Python<'_>, key: u64, starts: &mut Vec<Start>) -> PyResult<Py<PyAny>> {
        let k = &self.scope.keys;
        let Some(st) = self.cycles.get_mut(key) else {
            return ready(py, messages::http_disconnect(py, k)?.into_any());
        };
        if st.ws.is_some() {
            return self.ws_receive(py, key, starts);
        }
        if st.disconnected || st.body_failed || st.body_error.is_some() {
            return ready(py, messages::http_disconnect(py, k)?.into_any());
        }
        let tok = st.conn;
        if st.body_finished {
            // After the body, receive() waits for the client to leave (or,
            // for a half-closed client, says so at once).
            let rdhup = self.conn_mut(tok).is_none_or(|c| c.c.edge.rdhup);
            if rdhup {
                return ready(py, messages::http_disconnect(py, &self.scope.keys)?.into_any());
            }
            let fut = self.new_future(py)?;
            if let Some(st) = self.cycles.get_mut(key) {
                st.add_waiter(fut.clone_ref(py));
            }
            return Ok(fut);
        }
        if !st.body.is_empty() || st.decoder.is_done() {
            let body = std::mem::take(&mut st.body);
            let more = !st.decoder.is_done();
            st.body_finished = !more;
            let msg = messages::http_request(py, &self.scope.keys, &body, more)?;
            if more {
                // Room for more: read on.
                self.resume(py, tok, starts);
            }
            return ready(py, msg.into_any());
        }
        let send_continue = st.continue_pending && !st.response.started;
        st.continue_pending = false;
        let wait = match self.settings.timeout {
            t if t > 0 => Duration::from_secs(t as u64),
            _ => DEFAULT_BODY_WAIT,
        };
        let fut = self.new_future(py)?;
        if let Some(st) = self.cycles.get_mut(key) {
            st.add_waiter(fut.clone_ref(py));
            st.wait_deadline = Some(Instant::now() + wait);
        }
        if let Some(mut conn) = self.take_conn(tok) {
            if send_continue && conn.state == State::Busy(key) {
                if let Err(e) = super::output::write(&mut conn.c, &conn.file, &[CONTINUE]) {
                    crate::workers::wsgi_request::log_socket_error(&e);
                    conn.c.edge.hup = true;
                }
            }
            self.settle(py, conn, starts);
        }
        Ok(fut)
    }

    pub fn send(
        &mut self,
        py: Python<'_>,
        key: u64,
        message: &Bound<'_, PyAny>,
        starts: &mut Vec<Start>,
    ) -> PyResult<Py<PyAny>> {
        let Some(st) = self.cycles.get(key) else {
            return Err(runtime_error("send() called after the application call ended"));
        };
        if st.ws.is_some() {
            return self.ws_send(py, key, message, starts);
        }
        let msg = messages::http_send(message)?;
        if st.disconnected {
            return Err(self.errors.gone(py));
        }
        let tok = st.conn;
        let Some(mut conn) = self.take_conn(tok) else {
            return Err(self.errors.gone(py));
        };
        let result = self.send_on(py, &mut conn, key, msg);
        let fate = match &result {
            Err(_) if conn.c.edge.hup => Fate::Close,
            _ => Fate::Keep,
        };
        if fate == Fate::Close {
            self.close(py, conn);
        } else {
            self.settle(py, conn, starts);
        }
        let wait = result?;
        if !wait {
            return ready(py, py.None().into_bound(py));
        }
        // The client is slow: wait until it has taken most of it.
        let fut = self.new_future(py)?;
        match self.cycles.get_mut(key) {
            Some(st) if !st.disconnected => st.set_drain(fut.clone_ref(py)),
            _ => resolve(py, &fut, py.None().into_bound(py)),
        }
        Ok(fut)
    }

    /// One `send()` message on the connection; Ok(true) when the caller
    /// must wait for the client to take what is queued.
    fn send_on(&mut self, py: Python<'_>, conn: &mut AConn, key: u64, msg: HttpSend<'_>) -> PyResult<bool> {
        let busy = conn.state == State::Busy(key);
        let must_close = self.must_close();
        let date = self.date();
        let keep_headers = self.keep_headers;
        let sendfile = self.settings.sendfile;
        let Some(st) = self.cycles.get_mut(key) else { return Err(runtime_error("unknown request")) };
        let facts = RequestFacts { is_head: st.head.method == "HEAD", version: st.head.version };
        let complete;
        match msg {
            HttpSend::Start { status, headers } => {
                if st.response.started {
                    return Err(runtime_error("Response already started"));
                }
                let pairs = messages::header_slices(&headers);
                let close = must_close || st.head.should_close() || conn.c.edge.rdhup;
                let opts = StartOptions { close, server: crate::SERVER_HEADER.as_bytes(), date: &date, keep_headers };
                st.response.start(facts, status, &pairs, &opts).map_err(start_error)?;
                st.continue_pending = false;
                return Ok(false);
            }
            HttpSend::Informational { status, headers } => {
                if st.response.started {
                    return Err(runtime_error("Informational response after response start"));
                }
                let pairs = messages::header_slices(&headers);
                if let Some(bytes) =
                    crate::asgi::response::informational(facts.version, status, &pairs).map_err(start_error)?
                {
                    if status == 100 {
                        st.continue_pending = false;
                    }
                    if busy {
                        write(conn, &[&bytes])?;
                    }
                }
                return Ok(false);
            }
            HttpSend::Body { body, more } => {
                if !st.response.started {
                    return Err(runtime_error("Response not started"));
                }
                if st.response.complete {
                    return Err(runtime_error("Response already complete"));
                }
                let data = body.as_slice();
                if !data.is_empty() && st.response.omits_body() && !st.body_warned {
                    st.body_warned = true;
                    crate::log::warning!(
                        "ASGI app sent body bytes on a no-body response (method={} status={}); dropping per RFC 9110.",
                        st.head.method,
                        st.response.status
                    );
                }
                let framed = st.response.frame(data.len(), more);
                if busy {
                    write(conn, &[&framed.prefix, &data[..framed.take], framed.suffix])?;
                }
                complete = !more;
            }
            HttpSend::PathSend { path } => {
                if !st.response.started {
                    return Err(runtime_error("Response not started"));
                }
                if st.response.complete {
                    return Err(runtime_error("Response already complete"));
                }
                let file = std::fs::File::open(&path)?;
                let len = file.metadata()?.len();
                let framed = st.response.frame(len.try_into().unwrap_or(usize::MAX), false);
                if busy {
                    write(conn, &[&framed.prefix])?;
                    conn.file = Some(super::output::FileOut::new(file, framed.take as u64, framed.suffix, sendfile));
                    if conn.c.edge.writable {
                        if let Err(e) = super::output::flush(&mut conn.c, &mut conn.file) {
                            conn.c.edge.hup = true;
                            crate::workers::wsgi_request::log_socket_error(&e);
                            return Err(self.errors.gone(py));
                        }
                    }
                }
                complete = true;
            }
        }
        if !busy {
            // The connection went on without this response (a body error
            // answered it): nothing more goes out.
            return Err(self.errors.gone(py));
        }
        if complete {
            self.response_complete(conn, key);
            return Ok(false);
        }
        Ok(conn.pending_out() > OUT_HIGH)
    }

    /// A request the app is serving: send what is queued, read the body as
    /// far as the app's appetite goes, answer waiting `receive()` calls.
    pub fn drive_request(&mut self, py: Python<'_>, conn: &mut AConn, key: u64) -> Fate {
        if conn.c.edge.writable && conn.pending_out() > 0 {
            if let Err(e) = super::output::flush(&mut conn.c, &mut conn.file) {
                crate::workers::wsgi_request::log_socket_error(&e);
                return Fate::Close;
            }
        }
        let low = conn.pending_out() <= super::server::OUT_LOW;
        let Some(st) = self.cycles.get_mut(key) else {
            conn.state = State::Idle;
            conn.c.phase = Phase::Close;
            return Fate::Close;
        };
        if low {
            if let Some(fut) = st.drain_waiter() {
                resolve(py, &fut, py.None().into_bound(py));
            }
        }
        let mut failure: Option<HttpError> = st.body_error.take();
        let mut got = false;
        while failure.is_none() && st.wants_body() {
            match st.decoder.decode(conn.c.buf.unread()) {
                Ok((n, Decoded::Data(d))) => {
                    st.body.extend_from_slice(d);
                    conn.c.buf.consume(n);
                    got = true;
                }
                Ok((n, Decoded::Done)) => {
                    conn.c.buf.consume(n);
                    got = true;
                }
                Ok((n, Decoded::NeedMore)) => {
                    conn.c.buf.consume(n);
                    if conn.c.eof {
                        if let Err(e) = st.decoder.at_eof() {
                            failure = Some(e);
                        }
                        break;
                    }
                    if !conn.c.edge.readable {
                        break;
                    }
                    match conn.c.read_edge() {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.c.edge.readable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            crate::workers::wsgi_request::log_socket_error(&e);
                            return Fate::Close;
                        }
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        if got {
            // The client sent the body without waiting for a 100.
            st.continue_pending = false;
        }
        if let Some(e) = failure {
            st.body_failed = true;
            let waiters = st.take_waiters();
            let started = st.response.started;
            if let Ok(msg) = messages::http_disconnect(py, &self.scope.keys) {
                for fut in &waiters {
                    resolve(py, fut, msg.clone().into_any());
                }
            }
            match e {
                HttpError::NoMoreData => {
                    crate::log::debug!("Ignored premature client disconnection. No more data after: b''");
                }
                e => {
                    if started {
                        crate::workers::wsgi_request::log_rejected(conn.c.peer, &e);
                        conn.state = State::Idle;
                        conn.c.phase = Phase::Close;
                        return Fate::Close;
                    }
                    // Gunicorn answers a body it cannot frame with its error
                    // page and closes; the app sees the client leave.
                    conn.state = State::Idle;
                    conn.c.reject(&e);
                    if let Some(st) = self.cycles.get_mut(key) {
                        st.disconnected = true;
                    }
                    return Fate::Keep;
                }
            }
        } else if (!st.body.is_empty() || st.decoder.is_done()) && !st.body_finished && st.has_waiter() {
            if let Some(fut) = st.next_waiter(py) {
                let body = std::mem::take(&mut st.body);
                let more = !st.decoder.is_done();
                st.body_finished = !more;
                if let Ok(msg) = messages::http_request(py, &self.scope.keys, &body, more) {
                    resolve(py, &fut, msg.into_any());
                }
            }
        }
        if conn.c.edge.rdhup && st.body_finished && st.has_waiter() {
            let waiters = st.take_waiters();
            if let Ok(msg) = messages::http_disconnect(py, &self.scope.keys) {
                for fut in &waiters {
                    resolve(py, fut, msg.clone().into_any());
                }
            }
        }
        if conn.c.edge.hup {
            return Fate::Close;
        }
        Fate::Keep
    }

    /// The connection of `key` is gone: waiting calls learn it, and the app
    /// call is cancelled after `--asgi-disconnect-grace-period`.
    pub fn disconnected(&mut self, py: Python<'_>, key: u64) {
        let grace = self.grace;
        let Some(st) = self.cycles.get_mut(key) else { return };
        st.disconnected = true;
        let waiters = st.take_waiters();
        let msg = match &st.ws {
            Some(ws) => messages::ws_disconnect(py, &self.scope.keys, ws.disconnect_code(), ""),
            None => messages::http_disconnect(py, &self.scope.keys),
        };
        if let Some(ws) = st.ws.as_mut() {
            ws.disconnect_delivered = !waiters.is_empty();
        }
        if let Ok(msg) = msg {
            for fut in &waiters {
                resolve(py, fut, msg.clone().into_any());
            }
        }
        if let Some(fut) = st.drain_waiter() {
            resolve(py, &fut, py.None().into_bound(py));
        }
        if st.task_running(py) {
            if grace.is_zero() {
                st.cancel(py);
            } else {
                st.cancel_at = Some(Instant::now() + grace);
            }
        }
    }

    /// `receive()` waited too long for body bytes: Gunicorn says
    /// http.disconnect, and the connection cannot be reused.
    pub fn receive_timed_out(&mut self, py: Python<'_>, key: u64, _starts: &mut Vec<Start>) {
        let Some(st) = self.cycles.get_mut(key) else { return };
        st.body_failed = true;
        let waiters = st.take_waiters();
        if let Ok(msg) = messages::http_disconnect(py, &self.scope.keys) {
            for fut in &waiters {
                resolve(py, fut, msg.clone().into_any());
            }
        }
    }
}

fn write(conn: &mut AConn, parts: &[&[u8]]) -> PyResult<()> {
    super::output::write(&mut conn.c, &conn.file, parts).map_err(|e| {
        crate::workers::wsgi_request::log_socket_error(&e);
        conn.c.edge.hup = true;
        PyErr::from(e)
    })
}

/// The app's `receive` and `send` for one request.
#[pyclass(module = "ferrocorn._ferrocorn", unsendable, freelist = 64)]
pub struct Cycle {
    server: Py<AsgiServer>,
    key: u64,
}

#[pymethods]
impl Cycle {
    fn receive(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let server = self.server.bind(py);
        let mut starts = Vec::new();
        let result = server.borrow_mut().receive(py, self.key, &mut starts);
        run_starts(py, server, starts);
        result
    }

    fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let server = self.server.bind(py);
        let mut starts = Vec::new();
        let result = server.borrow_mut().send(py, self.key, message, &mut starts);
        run_starts(py, server, starts);
        result
    }
}

/// The coroutine asyncio's task runs for one request: it drives the app's
/// coroutine and, when that ends, finishes the request on the spot (no done
/// callback, no extra trip through the loop). An app's exception ends here
/// too, logged as Gunicorn logs it, so the task itself completes normally;
/// a cancellation is passed on, so the task is cancelled as it should be.
#[pyclass(module = "ferrocorn._ferrocorn", unsendable, freelist = 64)]
pub struct AppCall {
    server: Py<AsgiServer>,
    key: u64,
    coro: Option<Py<PyAny>>,
}

/// What one step of the app's coroutine gave.
enum Stepped {
    Yielded(Py<PyAny>),
    Ended,
}

impl AppCall {
    fn step(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Stepped> {
        let Some(coro) = &self.coro else { return Ok(Stepped::Ended) };
        let mut out: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
        // SAFETY: both objects are alive for the call; `out` receives a new
        // reference (or NULL with an exception set).
        let result = unsafe { pyo3::ffi::PyIter_Send(coro.as_ptr(), value.as_ptr(), &mut out) };
        match result {
            pyo3::ffi::PySendResult::PYGEN_NEXT => {
                // SAFETY: a new reference, owned from here on.
                Ok(Stepped::Yielded(unsafe { Bound::from_owned_ptr(py, out) }.unbind()))
            }
            pyo3::ffi::PySendResult::PYGEN_RETURN => {
                // SAFETY: the return value, a new reference, dropped here.
                drop(unsafe { Bound::<PyAny>::from_owned_ptr_or_opt(py, out) });
                self.end(py, Outcome::Returned)?;
                Ok(Stepped::Ended)
            }
            pyo3::ffi::PySendResult::PYGEN_ERROR => self.failed(py, PyErr::fetch(py)),
        }
    }

    fn failed(&mut self, py: Python<'_>, err: PyErr) -> PyResult<Stepped> {
        if err.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>(py) {
            self.end(py, Outcome::Cancelled)?;
            return Err(err);
        }
        if !err.is_instance_of::<pyo3::exceptions::PyException>(py) {
            // SystemExit, KeyboardInterrupt: the worker is stopping.
            self.end(py, Outcome::Exiting)?;
            return Err(err);
        }
        self.end(py, Outcome::Raised(err))?;
        Ok(Stepped::Ended)
    }

    fn end(&mut self, py: Python<'_>, outcome: Outcome) -> PyResult<()> {
        self.coro = None;
        complete(py, self.server.bind(py), self.key, outcome);
        Ok(())
    }
}

#[pymethods]
impl AppCall {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The task's step (`PyIter_Send(coro, None)` takes this path).
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.step(py, &py.None().into_bound(py))? {
            Stepped::Yielded(v) => Ok(Some(v)),
            Stepped::Ended => Ok(None),
        }
    }

    fn send(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.step(py, value)? {
            Stepped::Yielded(v) => Ok(v),
            Stepped::Ended => Err(pyo3::exceptions::PyStopIteration::new_err(())),
        }
    }

    /// A cancellation (or another exception) thrown into the app.
    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        &mut self,
        py: Python<'_>,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let Some(coro) = self.coro.as_ref().map(|c| c.clone_ref(py)) else {
            return Err(pyo3::exceptions::PyStopIteration::new_err(()));
        };
        let args = match (val, tb) {
            (Some(v), Some(t)) => vec![typ.clone(), v.clone(), t.clone()],
            (Some(v), None) => vec![typ.clone(), v.clone()],
            _ => vec![typ.clone()],
        };
        let args = pyo3::types::PyTuple::new(py, args)?;
        match coro.bind(py).call_method1(pyo3::intern!(py, "throw"), args) {
            Ok(v) => Ok(v.unbind()),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => {
                self.end(py, Outcome::Returned)?;
                Err(e)
            }
            Err(e) => match self.failed(py, e)? {
                Stepped::Yielded(v) => Ok(v),
                Stepped::Ended => Err(pyo3::exceptions::PyStopIteration::new_err(())),
            },
        }
    }

    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(coro) = self.coro.take() {
            coro.bind(py).call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        if let Some(c) = &self.coro {
            visit.call(c)?;
        }
        visit.call(&self.server)
    }

    fn __clear__(&mut self) {
        self.coro = None;
    }
}

/// The end of an app call: the server's part, then the logs and hooks.
fn complete(py: Python<'_>, server: &Bound<'_, AsgiServer>, key: u64, outcome: Outcome) {
    let mut starts = Vec::new();
    let st = server.borrow_mut().finished(py, key, &outcome, &mut starts);
    let Some(st) = st else {
        run_starts(py, server, starts);
        return;
    };
    let ws = st.ws.is_some();
    match &outcome {
        Outcome::Cancelled => crate::log::debug!("Request cancelled (client disconnected)"),
        Outcome::Exiting => {}
        Outcome::Raised(err) => {
            let gone = st.disconnected || {
                let s = server.borrow();
                err.is_instance(py, s.errors.client_disconnected.bind(py))
            };
            if gone {
                crate::log::debug!("Exception after the client disconnected");
            } else if !ws && st.response.complete {
                crate::log::debug!("Exception after response complete (client disconnected)");
            } else {
                let what = if ws { "Error in WebSocket ASGI application" } else { "Error in ASGI application" };
                crate::log::exception!("{what}\n{}", crate::python::format_exception(py, err));
            }
        }
        Outcome::Returned => {}
    }
    if !ws && !matches!(outcome, Outcome::Exiting) {
        let s = server.borrow();
        s.log_request(py, &st);
    }
    run_starts(py, server, starts);
}

impl AsgiServer {
    /// The access-log line (statsd, a Python logger) and `post_request`.
    fn log_request(&self, py: Python<'_>, st: &CycleState) {
        // Gunicorn logs 500 for a request that got no response (an app
        // that failed, returned without one, or was cancelled).
        let status = if st.response.started { st.response.status } else { 500 };
        let done = crate::workers::core::access::AsgiFinished {
            head: &st.head,
            peer: st.peer,
            status,
            headers: &st.response.headers,
            sent: st.response.sent,
            elapsed: st.started.elapsed(),
        };
        self.log.record_asgi(py, &done);
        if let (Some(h), Some(req)) = (&self.hooks, &st.hook_req) {
            h.post_request_asgi(py, req.bind(py), &done);
        }
    }
}

/// Hands requests to the app: `app(scope, receive, send)` in a new task.
/// Called with the server not borrowed (the app's call may do anything).
pub fn run_starts(py: Python<'_>, server: &Bound<'_, AsgiServer>, starts: Vec<Start>) {
    for Start { key, scope } in starts {
        if let Err(e) = start_one(py, server, key, scope) {
            complete(py, server, key, Outcome::Raised(e));
        }
    }
}

fn start_one(py: Python<'_>, server: &Bound<'_, AsgiServer>, key: u64, scope: Py<pyo3::types::PyDict>) -> PyResult<()> {
    let (app, create_task) = {
        let s = server.borrow();
        (s.app.clone_ref(py), s.refs()?.create_task.clone_ref(py))
    };
    let pre = {
        let s = server.borrow();
        match (&s.hooks, s.cycles.get(key)) {
            (Some(h), Some(st)) if st.ws.is_none() => Some(h.pre_request(py, &st.head, st.peer)),
            _ => None,
        }
    };
    if let Some((req, result)) = pre {
        if let Some(st) = server.borrow_mut().cycles.get_mut(key) {
            st.hook_req = req.map(Bound::unbind);
        }
        result?;
    }
    let cycle = Bound::new(py, Cycle { server: server.clone().unbind(), key })?;
    let receive = cycle.getattr(pyo3::intern!(py, "receive"))?;
    let send = cycle.getattr(pyo3::intern!(py, "send"))?;
    let coro = app.bind(py).call1((scope, receive, send))?;
    let call = Py::new(py, AppCall { server: server.clone().unbind(), key, coro: Some(coro.unbind()) })?;
    let task = create_task.bind(py).call1((call,))?;
    if let Some(st) = server.borrow_mut().cycles.get_mut(key) {
        st.task = Some(task.unbind());
    }
    Ok(())
}
