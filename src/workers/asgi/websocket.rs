//! The `websocket` scope (RFC 6455 through the sans-I/O codec in
//! `crate::ws`): the handshake answer or refusal, frames to and from ASGI
//! messages, pings answered by the server, the closing handshake both ways
//! (`ws::close`), and the stop (1001), with Gunicorn's ASGI worker as the
//! model for what the app sees.

use super::engine::{AsgiServer, Client, Disposition, Role, OUT_HIGH};
use super::exec::{ready, resolve, CallEnd, CycleState, TaskStart};
use crate::bridge::asgi::messages::{self, HttpSend, WsSend};
use crate::bridge::asgi::response::{RequestFacts, StartOptions};
use crate::bridge::asgi::scope::Keys;
use crate::workers::core::slab::CycleKey;
use crate::workers::core::sock::log_socket_error;
use crate::ws::close::CloseHandshake;
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

/// Where the HTTP side of the upgrade is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Stage {
    /// `websocket.connect` is the app's; no answer yet.
    Connecting,
    Accepted,
    /// The app refused with an HTTP response (or the server did for it).
    Denied,
}

pub(super) struct WsState {
    key: String,
    pub(super) stage: Stage,
    connect_delivered: bool,
    reader: Reader,
    /// Messages for the app, and their payload sizes.
    inbox: VecDeque<(Py<PyAny>, usize)>,
    inbox_bytes: usize,
    handshake: CloseHandshake,
    pub(super) disconnect_delivered: bool,
}

impl WsState {
    /// `max_message_size` 0: no limit.
    pub(super) fn new(up: Upgrade, max_message_size: u64) -> WsState {
        let max = match max_message_size {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        WsState {
            key: up.key,
            stage: Stage::Connecting,
            connect_delivered: false,
            reader: Reader::new(max),
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            handshake: CloseHandshake::Open,
            disconnect_delivered: false,
        }
    }

    /// The code `websocket.disconnect` reports.
    pub(super) fn disconnect_code(&self) -> u16 {
        self.handshake.disconnect_code()
    }

    /// Frames are to be read: messages while the app keeps up, or the
    /// peer's close frame once ours is out.
    fn wants_frames(&self) -> bool {
        match self.handshake {
            CloseHandshake::Open => {
                self.stage == Stage::Accepted && self.inbox.len() < INBOX_MESSAGES && self.inbox_bytes < INBOX_BYTES
            }
            CloseHandshake::Sent => true,
            CloseHandshake::Closed { .. } => false,
        }
    }

    fn pop_message(&mut self) -> Option<Py<PyAny>> {
        let (msg, size) = self.inbox.pop_front()?;
        self.inbox_bytes = self.inbox_bytes.saturating_sub(size);
        Some(msg)
    }
}

/// What reading frames produced.
#[derive(Default)]
struct Frames {
    /// Bytes to write back: pongs, our close frame.
    out: Vec<u8>,
    /// The closing handshake is over (or the peer broke the protocol): the
    /// connection closes once `out` is sent.
    close_now: bool,
    /// The connection failed: close it now.
    failed: bool,
}

impl AsgiServer {
    pub(super) fn ws_receive(
        &mut self,
        py: Python<'_>,
        key: CycleKey,
        starts: &mut Vec<TaskStart>,
    ) -> PyResult<Py<PyAny>> {
        let keys = &self.scope.keys;
        let Some(st) = self.cycles.get_mut(key) else {
            return ready(py, messages::ws_disconnect(py, keys, crate::ws::close::ABNORMAL, "")?.into_any());
        };
        let disconnected = st.disconnected;
        let token = st.conn;
        let Some(ws) = st.ws.as_deref_mut() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err("not a WebSocket"));
        };
        if !ws.connect_delivered {
            ws.connect_delivered = true;
            return ready(py, messages::ws_connect(py, keys)?.into_any());
        }
        if let Some(msg) = ws.pop_message() {
            // Room again: read on.
            self.resume(py, token, starts);
            return Ok(Py::new(py, crate::bridge::asgi::awaitable::Ready::new(msg))?.into_any());
        }
        if ws.handshake.is_closed() || disconnected {
            ws.disconnect_delivered = true;
            let code = ws.disconnect_code();
            return ready(py, messages::ws_disconnect(py, keys, code, "")?.into_any());
        }
        let fut = self.new_future(py)?;
        if let Some(st) = self.cycles.get_mut(key) {
            st.add_waiter(fut.clone_ref(py));
        }
        Ok(fut)
    }

    pub(super) fn ws_send(
        &mut self,
        py: Python<'_>,
        key: CycleKey,
        message: &Bound<'_, PyAny>,
        starts: &mut Vec<TaskStart>,
    ) -> PyResult<Py<PyAny>> {
        let msg = messages::ws_send(message)?;
        let Some(st) = self.cycles.get(key) else { return Err(self.errors.websocket_gone(py)) };
        let Some(mut client) = self.take_client(st.conn) else {
            return match msg {
                WsSend::Close { .. } => ready(py, py.None().into_bound(py)),
                _ => Err(self.errors.websocket_gone(py)),
            };
        };
        let result = self.ws_send_on(py, &mut client, key, msg);
        if client.conn.edge.hup {
            self.close(py, client);
        } else {
            self.settle(py, client, starts);
        }
        if result? {
            let fut = self.new_future(py)?;
            match self.cycles.get_mut(key) {
                Some(st) if !st.disconnected => st.set_drain_waiter(fut.clone_ref(py)),
                _ => resolve(py, &fut, py.None().into_bound(py)),
            }
            return Ok(fut);
        }
        ready(py, py.None().into_bound(py))
    }

    /// One `send()` message; Ok(true): wait for the client to take what is
    /// queued.
    fn ws_send_on(&mut self, py: Python<'_>, client: &mut Client, key: CycleKey, msg: WsSend<'_>) -> PyResult<bool> {
        let usable = client.role == Role::WebSocket(key) && self.cycles.get(key).is_some_and(|st| !st.disconnected);
        match msg {
            WsSend::Accept { subprotocol, headers } => {
                self.ws_accept(py, client, key, usable, subprotocol.as_deref(), &messages::header_slices(&headers))
            }
            WsSend::Text(text) => self.ws_message(py, client, key, usable, Opcode::Text, text.as_bytes()),
            WsSend::Bytes(data) => self.ws_message(py, client, key, usable, Opcode::Binary, data.as_slice()),
            WsSend::Close { code, reason } => {
                self.ws_close(client, key, usable, code, &reason)?;
                Ok(false)
            }
            WsSend::Http(http) => self.ws_deny_with(py, client, key, usable, http),
        }
    }

    fn ws_accept(
        &mut self,
        py: Python<'_>,
        client: &mut Client,
        key: CycleKey,
        usable: bool,
        subprotocol: Option<&str>,
        headers: &[(&[u8], &[u8])],
    ) -> PyResult<bool> {
        let date = self.date();
        let Some(ws) = self.cycles.get_mut(key).and_then(|st| st.ws.as_deref_mut()) else {
            return Err(self.errors.websocket_gone(py));
        };
        if ws.stage != Stage::Connecting {
            return Err(pyo3::exceptions::PyRuntimeError::new_err("WebSocket already accepted"));
        }
        if !usable {
            return Err(self.errors.websocket_gone(py));
        }
        let chosen: Vec<(&[u8], &[u8])> =
            subprotocol.iter().map(|p| (b"Sec-WebSocket-Protocol".as_slice(), p.as_bytes())).collect();
        for checked in [headers, chosen.as_slice()] {
            crate::bridge::asgi::response::check_headers(checked)
                .map_err(|e| crate::bridge::wsgi::response::InvalidResponseHeader::new_err(e.to_string()))?;
        }
        let answer = accept_response(&ws.key, subprotocol, headers, crate::SERVER_HEADER.as_bytes(), &date);
        ws.stage = Stage::Accepted;
        client.send(&[&answer]).map_err(|e| lost(client, e))?;
        Ok(false)
    }

    fn ws_message(
        &mut self,
        py: Python<'_>,
        client: &mut Client,
        key: CycleKey,
        usable: bool,
        opcode: Opcode,
        payload: &[u8],
    ) -> PyResult<bool> {
        let Some(ws) = self.cycles.get_mut(key).and_then(|st| st.ws.as_deref_mut()) else {
            return Err(self.errors.websocket_gone(py));
        };
        if ws.stage == Stage::Connecting {
            return Err(pyo3::exceptions::PyRuntimeError::new_err("WebSocket not accepted"));
        }
        if !ws.handshake.is_open() || !usable {
            return Err(self.errors.websocket_gone(py));
        }
        let header = encode_header(opcode, true, payload.len());
        client.send(&[&header, payload]).map_err(|e| lost(client, e))?;
        Ok(client.pending_out() > OUT_HIGH)
    }

    fn ws_close(&mut self, client: &mut Client, key: CycleKey, usable: bool, code: u16, reason: &str) -> PyResult<()> {
        let date = self.date();
        let Some(ws) = self.cycles.get_mut(key).and_then(|st| st.ws.as_deref_mut()) else { return Ok(()) };
        match ws.stage {
            // ASGI: a close before accept refuses the handshake with a 403.
            Stage::Connecting => {
                ws.stage = Stage::Denied;
                if client.role == Role::WebSocket(key) {
                    deny(client, 403, &date);
                }
            }
            Stage::Accepted if usable && ws.handshake.close() => {
                let mut frame = Vec::with_capacity(4 + reason.len());
                close_frame(code, reason, &mut frame);
                client.send(&[&frame]).map_err(|e| lost(client, e))?;
                client.conn.timer.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
            }
            Stage::Accepted | Stage::Denied => {}
        }
        Ok(())
    }

    /// `websocket.http.response.*`: the app refuses the handshake with an
    /// HTTP response of its own.
    fn ws_deny_with(
        &mut self,
        py: Python<'_>,
        client: &mut Client,
        key: CycleKey,
        usable: bool,
        http: HttpSend<'_>,
    ) -> PyResult<bool> {
        let date = self.date();
        let keep_headers = self.keep_headers;
        let Some(st) = self.cycles.get_mut(key) else { return Err(self.errors.websocket_gone(py)) };
        let Some(ws) = st.ws.as_deref_mut() else { return Err(self.errors.websocket_gone(py)) };
        if ws.stage == Stage::Accepted {
            return Err(pyo3::exceptions::PyRuntimeError::new_err("websocket.http.response after websocket.accept"));
        }
        if !usable {
            return Err(self.errors.websocket_gone(py));
        }
        ws.stage = Stage::Denied;
        let facts = RequestFacts {
            is_head: st.head.method == "HEAD",
            version: st.head.version,
            http2: false,
            uwsgi: st.head.uwsgi.is_some(),
        };
        match http {
            HttpSend::Start { status, headers, .. } => {
                if st.response.started {
                    return Err(pyo3::exceptions::PyRuntimeError::new_err("Response already started"));
                }
                let pairs = messages::header_slices(&headers);
                let opts =
                    StartOptions { close: true, server: crate::SERVER_HEADER.as_bytes(), date: &date, keep_headers };
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
                client.send(&[&f.prefix, &data[..f.take], f.suffix]).map_err(|e| lost(client, e))?;
                if !more {
                    client.role = Role::Idle;
                    client.conn.http.end();
                    return Ok(false);
                }
                Ok(client.pending_out() > OUT_HIGH)
            }
            _ => Err(pyo3::exceptions::PyRuntimeError::new_err(
                "only websocket.http.response.start and .body refuse a WebSocket",
            )),
        }
    }

    /// A WebSocket connection: send what is queued, read frames while the
    /// app keeps up, answer pings, run the closing handshake.
    pub(super) fn drive_ws(&mut self, py: Python<'_>, client: &mut Client, key: CycleKey) -> Disposition {
        if self.flush_for(py, client, key).is_err() {
            return Disposition::Close;
        }
        let keys = &self.scope.keys;
        let Some(st) = self.cycles.get_mut(key) else {
            client.role = Role::Idle;
            return Disposition::Close;
        };
        let Some(ws) = st.ws.as_deref_mut() else { return Disposition::Close };
        let frames = read_frames(py, keys, client, ws);
        deliver_messages(py, keys, st);
        if !frames.out.is_empty() {
            if let Err(e) = client.send(&[&frames.out]) {
                log_socket_error(&e);
                return Disposition::Close;
            }
        }
        if frames.failed {
            return Disposition::Close;
        }
        if frames.close_now {
            // The closing handshake is done (or the connection failed): the
            // server closes the TCP connection once the frame is out.
            client.role = Role::Idle;
            client.conn.http.end();
            return Disposition::Keep;
        }
        if client.conn.edge.hup {
            return Disposition::Close;
        }
        Disposition::Keep
    }

    /// The worker stops: an open WebSocket is closed with 1001.
    pub(super) fn ws_going_away(&mut self, client: &mut Client) {
        let Role::WebSocket(key) = client.role else { return };
        let Some(ws) = self.cycles.get_mut(key).and_then(|st| st.ws.as_deref_mut()) else { return };
        if ws.stage != Stage::Accepted || !ws.handshake.close() {
            return;
        }
        let mut frame = Vec::new();
        close_frame(1001, "", &mut frame);
        client.conn.timer.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
        if client.send(&[&frame]).is_err() {
            client.conn.edge.hup = true;
        }
    }

    /// The call of a WebSocket ended: refuse a handshake it never answered
    /// (403, or 500 if it raised), close an open one.
    pub(super) fn ws_finished(&mut self, client: &mut Client, st: &CycleState, end: &CallEnd) -> Disposition {
        let Some(ws) = st.ws.as_deref() else { return Disposition::Keep };
        client.role = Role::Idle;
        if matches!(end, CallEnd::Exiting) {
            return Disposition::Close;
        }
        let date = self.date();
        match ws.stage {
            Stage::Connecting => {
                let status = if matches!(end, CallEnd::Raised(_)) { 500 } else { 403 };
                deny(client, status, &date);
            }
            Stage::Denied => {
                if st.response.started && !st.response.complete {
                    return Disposition::Close;
                }
                if !st.response.started && !client.conn.http.is_lingering() {
                    deny(client, 403, &date);
                }
            }
            Stage::Accepted => {
                if ws.handshake.is_open() && !st.disconnected {
                    // 1000 for an app that just returned, 1011 for one that
                    // failed.
                    let code = if matches!(end, CallEnd::Raised(_)) { 1011 } else { 1000 };
                    let mut frame = Vec::new();
                    close_frame(code, "", &mut frame);
                    if client.send(&[&frame]).is_err() {
                        return Disposition::Close;
                    }
                }
                client.conn.http.end();
            }
        }
        Disposition::Keep
    }
}

fn lost(client: &mut Client, e: io::Error) -> PyErr {
    log_socket_error(&e);
    client.conn.edge.hup = true;
    PyErr::from(e)
}

/// Reads and decodes frames while they are wanted: messages go to the
/// inbox, pings are answered, close frames run the closing handshake.
fn read_frames(py: Python<'_>, keys: &Keys, client: &mut Client, ws: &mut WsState) -> Frames {
    let mut frames = Frames::default();
    while ws.wants_frames() {
        // Decode what is buffered first; read only when that gives nothing
        // (an empty buffer, or a frame not complete yet).
        let used = decode_frames(py, keys, client, ws, &mut frames);
        if frames.close_now {
            break;
        }
        if used > 0 {
            continue;
        }
        if client.conn.http.peer_closed() || !client.conn.edge.readable {
            break;
        }
        match client.conn.read_edge() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                client.conn.edge.readable = false;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log_socket_error(&e);
                frames.failed = true;
                break;
            }
        }
    }
    if (client.conn.http.peer_closed() || client.conn.edge.hup)
        && !ws.handshake.is_closed()
        && ws.stage == Stage::Accepted
    {
        ws.handshake.lost();
        frames.failed = true;
    }
    frames
}

/// One pass of the codec over the buffered bytes; how many it used.
fn decode_frames(py: Python<'_>, keys: &Keys, client: &mut Client, ws: &mut WsState, frames: &mut Frames) -> usize {
    let buffered = client.conn.http.buffer().unread_mut();
    if buffered.is_empty() {
        return 0;
    }
    // Once our close frame is out the app gets no more data.
    let drop_data = !ws.handshake.is_open();
    let mut messages: Vec<(Py<PyAny>, usize)> = Vec::new();
    let mut peer_close: Option<(Option<u16>, String)> = None;
    let out = &mut frames.out;
    let fed = ws.reader.feed_with(buffered, |ev| match ev {
        EventRef::Text(_) | EventRef::Binary(_) if drop_data => {}
        EventRef::Text(t) => {
            if let Ok(m) = messages::ws_text(py, keys, t) {
                messages.push((m.into_any().unbind(), t.len()));
            }
        }
        EventRef::Binary(b) => {
            if let Ok(m) = messages::ws_bytes(py, keys, b) {
                messages.push((m.into_any().unbind(), b.len()));
            }
        }
        EventRef::Ping(p) => encode(Opcode::Pong, true, p, out),
        EventRef::Pong(_) => {}
        EventRef::Close { code, reason } => peer_close = Some((code, reason.to_owned())),
    });
    let used = match fed {
        Ok(used) => used,
        Err(e) => {
            crate::log::debug!("WebSocket protocol error: {e}");
            if ws.handshake.fail(e.close_code()) {
                close_frame(e.close_code(), e.reason(), &mut frames.out);
            }
            frames.close_now = true;
            0
        }
    };
    client.conn.http.buffer().consume(used);
    ws.inbox_bytes += messages.iter().map(|(_, n)| n).sum::<usize>();
    ws.inbox.extend(messages);
    if let Some((code, reason)) = peer_close {
        // Answer it with its code and reason, as Gunicorn does (a frame
        // with no code is answered 1000: 1005 never goes on the wire).
        if let Some(answer) = ws.handshake.peer_closed(code) {
            close_frame(answer, &reason, &mut frames.out);
        }
        frames.close_now = true;
    }
    used
}

/// Waiting `receive()` calls get the messages that arrived, or the
/// disconnect once the WebSocket is closed and its messages taken.
fn deliver_messages(py: Python<'_>, keys: &Keys, st: &mut CycleState) {
    let Some(ws) = st.ws.as_deref() else { return };
    // Only a WebSocket closed with nothing left for the app says so now.
    let disconnect = ws.handshake.is_closed() && ws.inbox.is_empty();
    while st.has_waiter() {
        let Some(ws) = st.ws.as_deref_mut() else { return };
        let (msg, size) = match ws.inbox.pop_front() {
            Some(m) => m,
            None if disconnect => match messages::ws_disconnect(py, keys, ws.disconnect_code(), "") {
                Ok(m) => {
                    ws.disconnect_delivered = true;
                    (m.into_any().unbind(), 0)
                }
                Err(_) => return,
            },
            None => return,
        };
        match st.next_waiter(py) {
            Some(fut) => {
                if let Some(ws) = st.ws.as_deref_mut() {
                    ws.inbox_bytes = ws.inbox_bytes.saturating_sub(size);
                }
                resolve(py, &fut, msg.into_bound(py));
            }
            None => {
                // Every waiter had given up: keep what was meant for them.
                if let Some(ws) = st.ws.as_deref_mut() {
                    if disconnect && size == 0 {
                        ws.disconnect_delivered = false;
                    } else {
                        ws.inbox.push_front((msg, size));
                    }
                }
                return;
            }
        }
    }
}

/// The handshake refused with an HTTP response, then a close.
fn deny(client: &mut Client, status: u16, date: &[u8]) {
    let reason = crate::bridge::asgi::response::reason(status);
    let answer = reject_response(status, reason, b"close", &[], b"", crate::SERVER_HEADER.as_bytes(), date);
    client.role = Role::Idle;
    if client.send(&[&answer]).is_err() {
        client.conn.edge.hup = true;
    }
    client.conn.http.end();
}
