//! The `websocket` scope (RFC 6455 through the sans-IO codec in `crate::ws`):
//! the handshake answer or refusal, frames to and from ASGI messages, pings
//! answered by the server, the close handshake both ways, and the stop
//! (1001), with Gunicorn's ASGI worker as the model for what the app sees.

use super::cycle::{ready, resolve, CycleState, Outcome};
use super::server::{AConn, AsgiServer, Fate, Start, State, OUT_HIGH, OUT_LOW};
use crate::asgi::messages::{self, HttpSend, WsSend};
use crate::asgi::response::{RequestFacts, StartOptions};
use crate::workers::evconn::{After, Phase};
use crate::ws::codec::{close_frame, EventRef, Reader};
use crate::ws::frame::{encode, encode_header, Opcode};
use crate::ws::handshake::{accept_response, reject_response, Upgrade};
use pyo3::prelude::*;
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

/// Stop reading frames while this many messages wait for the app
/// (Gunicorn's RECEIVE_QUEUE_HIGH_WATER), or this many bytes.
const INBOX_MESSAGES: usize = 32;
const INBOX_BYTES: usize = 1 << 20;
/// How long the server waits for the client's close frame after its own.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WsPhase {
    /// `websocket.connect` is the app's; no answer yet.
    Handshake,
    Open,
    /// The app refused with an HTTP response (or the server did for it).
    Denied,
}

pub struct WsState {
    key: String,
    pub phase: WsPhase,
    connect_delivered: bool,
    reader: Reader,
    inbox: VecDeque<(Py<PyAny>, usize)>,
    inbox_bytes: usize,
    close_sent: bool,
    /// No more messages come from the client (its close frame, an error).
    closed: bool,
    /// What `websocket.disconnect` carries.
    close_code: Option<u16>,
    pub disconnect_delivered: bool,
}

impl WsState {
    pub fn new(up: Upgrade, max_message_size: i64) -> WsState {
        let max = match max_message_size {
            n if n <= 0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        WsState {
            key: up.key,
            phase: WsPhase::Handshake,
            connect_delivered: false,
            reader: Reader::new(max),
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            close_sent: false,
            closed: false,
            close_code: None,
            disconnect_delivered: false,
        }
    }

    /// The code `websocket.disconnect` reports: the client's (1005 when its
    /// close frame had none), the one the server failed the connection
    /// with, or 1006 when the connection just ended.
    pub fn disconnect_code(&self) -> u16 {
        self.close_code.unwrap_or(1006)
    }

    fn wants_frames(&self) -> bool {
        self.phase == WsPhase::Open
            && !self.closed
            && self.inbox.len() < INBOX_MESSAGES
            && self.inbox_bytes < INBOX_BYTES
    }
}

fn ws_state(st: &mut CycleState) -> Option<&mut WsState> {
    st.ws.as_deref_mut()
}

fn disconnected_error(py: Python<'_>, server: &AsgiServer) -> PyErr {
    match server.errors.websocket_disconnected.bind(py).call1(("WebSocket closed",)) {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

fn write(conn: &mut AConn, parts: &[&[u8]]) -> io::Result<()> {
    super::output::write(&mut conn.c, &conn.file, parts)
}

impl AsgiServer {
    pub fn ws_receive(&mut self, py: Python<'_>, key: u64, starts: &mut Vec<Start>) -> PyResult<Py<PyAny>> {
        let keys = &self.scope.keys;
        let Some(st) = self.cycles.get_mut(key) else {
            return ready(py, messages::ws_disconnect(py, keys, 1006, "")?.into_any());
        };
        let disconnected = st.disconnected;
        let tok = st.conn;
        let Some(ws) = ws_state(st) else { return Err(pyo3::exceptions::PyRuntimeError::new_err("not a WebSocket")) };
        if !ws.connect_delivered {
            ws.connect_delivered = true;
            return ready(py, messages::ws_connect(py, keys)?.into_any());
        }
        if let Some((msg, size)) = ws.inbox.pop_front() {
            ws.inbox_bytes = ws.inbox_bytes.saturating_sub(size);
            // Room again: read on.
            self.resume_ws(py, tok, starts);
            return Ok(Py::new(py, crate::asgi::awaitable::Ready::new(msg))?.into_any());
        }
        if ws.closed || disconnected {
            ws.disconnect_delivered = true;
            let code = ws.disconnect_code();
            return ready(py, messages::ws_disconnect(py, keys, code, "")?.into_any());
        }
        let fut = self.refs()?.create_future.bind(py).call0()?.unbind();
        if let Some(st) = self.cycles.get_mut(key) {
            st.add_waiter(fut.clone_ref(py));
        }
        Ok(fut)
    }

    fn resume_ws(&mut self, py: Python<'_>, tok: u64, starts: &mut Vec<Start>) {
        if let Some(conn) = self.take_conn(tok) {
            self.settle(py, conn, starts);
        }
    }

    pub fn ws_send(
        &mut self,
        py: Python<'_>,
        key: u64,
        message: &Bound<'_, PyAny>,
        starts: &mut Vec<Start>,
    ) -> PyResult<Py<PyAny>> {
        let msg = messages::ws_send(message)?;
        let Some(st) = self.cycles.get(key) else { return Err(disconnected_error(py, self)) };
        let tok = st.conn;
        let Some(mut conn) = self.take_conn(tok) else {
            return match msg {
                WsSend::Close { .. } => ready(py, py.None().into_bound(py)),
                _ => Err(disconnected_error(py, self)),
            };
        };
        let result = self.ws_send_on(py, &mut conn, key, msg);
        if conn.c.edge.hup {
            self.close(py, conn);
        } else {
            self.settle(py, conn, starts);
        }
        if result? {
            let fut = self.refs()?.create_future.bind(py).call0()?.unbind();
            match self.cycles.get_mut(key) {
                Some(st) if !st.disconnected => st.set_drain(fut.clone_ref(py)),
                _ => resolve(py, &fut, py.None().into_bound(py)),
            }
            return Ok(fut);
        }
        ready(py, py.None().into_bound(py))
    }

    /// Ok(true): wait for the client to take what is queued.
    fn ws_send_on(&mut self, py: Python<'_>, conn: &mut AConn, key: u64, msg: WsSend<'_>) -> PyResult<bool> {
        let on_conn = conn.state == State::Ws(key);
        let date = self.date();
        let keep_headers = self.keep_headers;
        let gone = disconnected_error(py, self);
        let Some(st) = self.cycles.get_mut(key) else { return Err(gone) };
        let disconnected = st.disconnected;
        let version = st.head.version;
        let is_head = st.head.method == "HEAD";
        let Some(ws) = st.ws.as_deref_mut() else { return Err(gone) };
        let io_err = |conn: &mut AConn, e: io::Error| -> PyErr {
            crate::workers::wsgi_request::log_socket_error(&e);
            conn.c.edge.hup = true;
            PyErr::from(e)
        };
        match msg {
            WsSend::Accept { subprotocol, headers } => {
                if ws.phase != WsPhase::Handshake {
                    return Err(pyo3::exceptions::PyRuntimeError::new_err("WebSocket already accepted"));
                }
                if disconnected || !on_conn {
                    return Err(gone);
                }
                let pairs = messages::header_slices(&headers);
                let chosen: Vec<(&[u8], &[u8])> =
                    subprotocol.iter().map(|p| (b"Sec-WebSocket-Protocol".as_slice(), p.as_bytes())).collect();
                for checked in [&pairs, &chosen] {
                    crate::asgi::response::check_headers(checked)
                        .map_err(|e| crate::wsgi::response::InvalidResponseHeader::new_err(e.to_string()))?;
                }
                let answer =
                    accept_response(&ws.key, subprotocol.as_deref(), &pairs, crate::SERVER_HEADER.as_bytes(), &date);
                ws.phase = WsPhase::Open;
                write(conn, &[&answer]).map_err(|e| io_err(conn, e))?;
                Ok(false)
            }
            WsSend::Text(_) | WsSend::Bytes(_) if ws.phase == WsPhase::Handshake => {
                Err(pyo3::exceptions::PyRuntimeError::new_err("WebSocket not accepted"))
            }
            WsSend::Text(text) => {
                if ws.closed || ws.close_sent || disconnected || !on_conn {
                    return Err(gone);
                }
                let header = encode_header(Opcode::Text, true, text.len());
                write(conn, &[&header, text.as_bytes()]).map_err(|e| io_err(conn, e))?;
                Ok(conn.pending_out() > OUT_HIGH)
            }
            WsSend::Bytes(data) => {
                if ws.closed || ws.close_sent || disconnected || !on_conn {
                    return Err(gone);
                }
                let data = data.as_slice();
                let header = encode_header(Opcode::Binary, true, data.len());
                write(conn, &[&header, data]).map_err(|e| io_err(conn, e))?;
                Ok(conn.pending_out() > OUT_HIGH)
            }
            WsSend::Close { code, reason } => {
                match ws.phase {
                    // ASGI: a close before accept refuses the handshake
                    // with a 403.
                    WsPhase::Handshake => {
                        ws.phase = WsPhase::Denied;
                        if on_conn {
                            deny(conn, 403, &date);
                        }
                    }
                    WsPhase::Open => {
                        if !ws.close_sent && on_conn && !disconnected {
                            let mut frame = Vec::with_capacity(4 + reason.len());
                            close_frame(code, &reason, &mut frame);
                            ws.close_sent = true;
                            write(conn, &[&frame]).map_err(|e| io_err(conn, e))?;
                            if ws.closed {
                                conn.state = State::Idle;
                                conn.c.phase = Phase::Flush(After::Linger);
                            } else {
                                conn.c.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
                            }
                        }
                    }
                    WsPhase::Denied => {}
                }
                Ok(false)
            }
            WsSend::Http(http) => {
                if ws.phase == WsPhase::Open {
                    return Err(pyo3::exceptions::PyRuntimeError::new_err(
                        "websocket.http.response after websocket.accept",
                    ));
                }
                if !on_conn || disconnected {
                    return Err(gone);
                }
                ws.phase = WsPhase::Denied;
                let facts = RequestFacts { is_head, version };
                match http {
                    HttpSend::Start { status, headers } => {
                        if st.response.started {
                            return Err(pyo3::exceptions::PyRuntimeError::new_err("Response already started"));
                        }
                        let pairs = messages::header_slices(&headers);
                        let opts = StartOptions {
                            close: true,
                            server: crate::SERVER_HEADER.as_bytes(),
                            date: &date,
                            keep_headers,
                        };
                        st.response
                            .start(facts, status, &pairs, &opts)
                            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
                        Ok(false)
                    }
                    HttpSend::Body { body, more } => {
                        if !st.response.started {
                            return Err(pyo3::exceptions::PyRuntimeError::new_err("Response not started"));
                        }
                        if st.response.complete {
                            return Err(pyo3::exceptions::PyRuntimeError::new_err("Response already complete"));
                        }
                        let data = body.as_slice();
                        let f = st.response.frame(data.len(), more);
                        write(conn, &[&f.prefix, &data[..f.take], f.suffix]).map_err(|e| io_err(conn, e))?;
                        if !more {
                            conn.state = State::Idle;
                            conn.c.phase = Phase::Flush(After::Linger);
                            return Ok(false);
                        }
                        Ok(conn.pending_out() > OUT_HIGH)
                    }
                    _ => Err(pyo3::exceptions::PyRuntimeError::new_err(
                        "only websocket.http.response.start and .body refuse a WebSocket",
                    )),
                }
            }
        }
    }

    /// A WebSocket connection: send what is queued, read frames while the
    /// app keeps up, answer pings, handle the close handshake.
    pub fn drive_ws(&mut self, py: Python<'_>, conn: &mut AConn, key: u64) -> Fate {
        if conn.c.edge.writable && conn.pending_out() > 0 {
            if let Err(e) = super::output::flush(&mut conn.c, &mut conn.file) {
                crate::workers::wsgi_request::log_socket_error(&e);
                return Fate::Close;
            }
        }
        let low = conn.pending_out() <= OUT_LOW;
        let keys = &self.scope.keys;
        let Some(st) = self.cycles.get_mut(key) else {
            conn.state = State::Idle;
            return Fate::Close;
        };
        if low {
            if let Some(fut) = st.drain_waiter() {
                resolve(py, &fut, py.None().into_bound(py));
            }
        }
        let Some(ws) = st.ws.as_deref_mut() else { return Fate::Close };
        let mut out = Vec::new();
        let mut failed = false;
        let mut close_now = false;
        while ws.wants_frames() || (ws.close_sent && !ws.closed) {
            if conn.c.buf.unread().is_empty() {
                if conn.c.eof || !conn.c.edge.readable {
                    break;
                }
                match conn.c.read_edge() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        conn.c.edge.readable = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        crate::workers::wsgi_request::log_socket_error(&e);
                        failed = true;
                        break;
                    }
                }
                continue;
            }
            let close_sent = ws.close_sent;
            let mut events: Vec<(Py<PyAny>, usize)> = Vec::new();
            let mut peer_close: Option<Option<u16>> = None;
            let fed = ws.reader.feed_with(conn.c.buf.unread_mut(), |ev| match ev {
                // Once our close frame is out the app gets no more data.
                EventRef::Text(_) | EventRef::Binary(_) if close_sent => {}
                EventRef::Text(t) => {
                    if let Ok(m) = messages::ws_text(py, keys, t) {
                        events.push((m.into_any().unbind(), t.len()));
                    }
                }
                EventRef::Binary(b) => {
                    if let Ok(m) = messages::ws_bytes(py, keys, b) {
                        events.push((m.into_any().unbind(), b.len()));
                    }
                }
                EventRef::Ping(p) => encode(Opcode::Pong, true, p, &mut out),
                EventRef::Pong(_) => {}
                EventRef::Close { code, .. } => peer_close = Some(code),
            });
            match fed {
                Ok(used) => conn.c.buf.consume(used),
                Err(e) => {
                    crate::log::debug!("WebSocket protocol error: {e}");
                    if !ws.close_sent {
                        close_frame(e.close_code(), e.reason(), &mut out);
                        ws.close_sent = true;
                    }
                    ws.closed = true;
                    ws.close_code = Some(e.close_code());
                    close_now = true;
                }
            }
            ws.inbox_bytes += events.iter().map(|(_, n)| n).sum::<usize>();
            ws.inbox.extend(events);
            if let Some(code) = peer_close {
                ws.closed = true;
                ws.close_code = Some(code.unwrap_or(1005));
                if !ws.close_sent {
                    // Echo it (1005 never goes on the wire: 1000 instead).
                    close_frame(code.unwrap_or(1000), "", &mut out);
                    ws.close_sent = true;
                }
                close_now = true;
            }
            if close_now {
                break;
            }
        }
        if (conn.c.eof || conn.c.edge.hup) && !ws.closed && ws.phase == WsPhase::Open {
            ws.closed = true;
            failed = true;
        }
        // Waiting receive() calls get what arrived (or the disconnect).
        let deliver_disconnect = ws.closed && ws.inbox.is_empty();
        while st.has_waiter() {
            let Some(ws) = st.ws.as_deref_mut() else { break };
            let (msg, size) = match ws.inbox.pop_front() {
                Some(m) => m,
                None if deliver_disconnect => {
                    ws.disconnect_delivered = true;
                    match messages::ws_disconnect(py, keys, ws.disconnect_code(), "") {
                        Ok(m) => (m.into_any().unbind(), 0),
                        Err(_) => break,
                    }
                }
                None => break,
            };
            match st.next_waiter(py) {
                Some(fut) => {
                    if let Some(ws) = st.ws.as_deref_mut() {
                        ws.inbox_bytes = ws.inbox_bytes.saturating_sub(size);
                    }
                    resolve(py, &fut, msg.into_bound(py));
                }
                None => {
                    if let Some(ws) = st.ws.as_deref_mut() {
                        if size > 0 || !deliver_disconnect {
                            ws.inbox.push_front((msg, size));
                        } else {
                            ws.disconnect_delivered = false;
                        }
                    }
                    break;
                }
            }
        }
        if !out.is_empty() {
            if let Err(e) = write(conn, &[&out]) {
                crate::workers::wsgi_request::log_socket_error(&e);
                return Fate::Close;
            }
        }
        if failed {
            return Fate::Close;
        }
        if close_now {
            // The close handshake is done (or the connection failed): the
            // server closes the TCP connection once the frame is out.
            conn.state = State::Idle;
            conn.c.phase = Phase::Flush(After::Linger);
            return Fate::Keep;
        }
        if conn.c.edge.hup {
            return Fate::Close;
        }
        Fate::Keep
    }

    /// The worker stops: an open WebSocket is closed with 1001.
    pub fn ws_going_away(&mut self, _py: Python<'_>, conn: &mut AConn) {
        let State::Ws(key) = conn.state else { return };
        let Some(ws) = self.cycles.get_mut(key).and_then(|st| st.ws.as_deref_mut()) else { return };
        if ws.phase != WsPhase::Open || ws.close_sent {
            return;
        }
        let mut frame = Vec::new();
        close_frame(1001, "", &mut frame);
        ws.close_sent = true;
        conn.c.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
        if write(conn, &[&frame]).is_err() {
            conn.c.edge.hup = true;
        }
    }

    /// The app call of a WebSocket ended: refuse a handshake it never
    /// answered (403, or 500 if it raised), close an open one.
    pub fn ws_finished(
        &mut self,
        _py: Python<'_>,
        conn: &mut AConn,
        st: &CycleState,
        outcome: &Outcome,
    ) -> Option<Fate> {
        let ws = st.ws.as_deref()?;
        conn.state = State::Idle;
        if matches!(outcome, Outcome::Exiting) {
            return Some(Fate::Close);
        }
        let date = self.date();
        match ws.phase {
            WsPhase::Handshake => {
                let status = if matches!(outcome, Outcome::Raised(_)) { 500 } else { 403 };
                deny(conn, status, &date);
            }
            WsPhase::Denied => {
                if st.response.started && !st.response.complete {
                    return Some(Fate::Close);
                }
                if !st.response.started && !matches!(conn.c.phase, Phase::Flush(_)) {
                    deny(conn, 403, &date);
                }
            }
            WsPhase::Open => {
                if !ws.close_sent && !st.disconnected {
                    // 1000 for an app that just returned, 1011 for one that
                    // failed.
                    let code = if matches!(outcome, Outcome::Raised(_)) { 1011 } else { 1000 };
                    let mut frame = Vec::new();
                    close_frame(code, "", &mut frame);
                    if write(conn, &[&frame]).is_err() {
                        return Some(Fate::Close);
                    }
                }
                conn.c.phase = Phase::Flush(After::Linger);
            }
        }
        Some(Fate::Keep)
    }
}

/// The handshake refused with an HTTP response, then a close.
fn deny(conn: &mut AConn, status: u16, date: &[u8]) {
    let reason = crate::asgi::response::reason(status);
    let answer = reject_response(status, reason, b"close", &[], b"", crate::SERVER_HEADER.as_bytes(), date);
    conn.state = State::Idle;
    if write(conn, &[&answer]).is_err() {
        conn.c.edge.hup = true;
    }
    conn.c.phase = Phase::Flush(After::Linger);
}
