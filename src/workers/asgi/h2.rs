//! HTTP/2 on the asgi worker: each stream of a connection is an `http`
//! scope with `http_version` "2" and runs as its own task, beside the other
//! streams of the connection. The session (`crate::http2::session`) is
//! driven by this engine on the loop's thread; a stream's body and
//! response meet the app's `receive()`/`send()` in its [`StreamShared`].
//!
//! Both directions are bounded per stream: the client gets window back
//! only as the app takes body bytes, and `send()` waits while more than
//! [`OUT_HIGH`] bytes of the stream's response wait for the client's
//! window. A slow stream stalls only itself.

use super::engine::{AsgiServer, Client, Disposition, Role};
use super::exec::{ready, resolve, CallEnd, CallStart, CycleState, TaskStart, BODY_HIGH};
use super::io::start_error;
use crate::bridge::asgi::messages::{self, HttpSend, Payload};
use crate::bridge::asgi::response::{informational_fields, RequestFacts, StartOptions};
use crate::bridge::asgi::scope::{Addresses, RequestView};
use crate::http2::session::{Drive, NewStream};
use crate::http2::stream::{Head, Notify, Out, Read, StreamShared, OUT_HIGH, OUT_LOW};
use crate::net::epoll::EventFd;
use crate::workers::core::accept::Token;
use crate::workers::core::slab::CycleKey;
use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Response chunks this large are lent to the stream, not copied.
const LEND_FROM: usize = 64 * 1024;
/// Rounds of stream work one call settles before it leaves the rest to the
/// loop (through the wake-up fd).
const WORK_ROUNDS: usize = 4;

/// Connections whose streams have work for the engine (response bytes
/// queued, window to give back, a call that ended). The app's
/// `send()`/`receive()` run on the engine's own thread: rather than drive
/// the connection at each of them, the list is worked through once the
/// loop's current round of tasks has run (`AsgiServer::flush_h2`, through
/// `call_soon`), so the responses of many streams leave in one write. The
/// eventfd brings the loop back for what one flush leaves.
pub(super) struct H2Work {
    conns: Mutex<Vec<u64>>,
    pub(super) wake: EventFd,
}

impl H2Work {
    pub(super) fn new() -> std::io::Result<H2Work> {
        Ok(H2Work { conns: Mutex::new(Vec::new()), wake: EventFd::new()? })
    }

    fn push(&self, conn: u64) {
        match self.conns.lock() {
            Ok(mut g) => g.push(conn),
            Err(poisoned) => poisoned.into_inner().push(conn),
        }
    }

    pub(super) fn has_work(&self) -> bool {
        match self.conns.lock() {
            Ok(g) => !g.is_empty(),
            Err(poisoned) => !poisoned.into_inner().is_empty(),
        }
    }

    fn take(&self) -> Vec<u64> {
        match self.conns.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

impl Notify for H2Work {
    fn stream_has_work(&self, conn: u64) {
        self.push(conn);
    }
}

impl AsgiServer {
    /// The connection turned to HTTP/2 (ALPN, or the preface from a trusted
    /// peer): from here its session rules it.
    pub(super) fn start_h2(&mut self, py: Python<'_>, client: &mut Client, starts: &mut Vec<TaskStart>) -> Disposition {
        let Some(h2) = &self.h2 else { return Disposition::Close };
        let tag = Token::Conn(client.conn.token).to_epoll();
        let notify: Arc<dyn Notify> = self.h2_work.clone();
        client.conn.start_h2(h2.config.clone(), tag, notify);
        client.conn.timer = Default::default();
        client.role = Role::H2;
        self.drive_h2(py, client, starts)
    }

    /// Moves an HTTP/2 connection: its socket, its streams' output, new
    /// streams (tasks for the app), and what changed for running streams.
    pub(super) fn drive_h2(&mut self, py: Python<'_>, client: &mut Client, starts: &mut Vec<TaskStart>) -> Disposition {
        let Some(session) = client.conn.h2.as_mut() else { return Disposition::Close };
        let mut drive = Drive::default();
        session.drive(&self.policy, client.conn.peer.ip(), self.now, &mut drive);
        self.h2_outcome(py, client, drive, starts)
    }

    /// The connection's timers are its session's (handshake, idle GOAWAY,
    /// streams stalled on a zero window).
    pub(super) fn expire_h2(
        &mut self,
        py: Python<'_>,
        client: &mut Client,
        starts: &mut Vec<TaskStart>,
    ) -> Disposition {
        let Some(session) = client.conn.h2.as_mut() else { return Disposition::Close };
        let mut drive = Drive::default();
        session.expire_and_drive(&self.policy, client.conn.peer.ip(), self.now, &mut drive);
        self.h2_outcome(py, client, drive, starts)
    }

    /// GOAWAY: the streams in flight finish, no new ones start.
    pub(super) fn shutdown_h2(&mut self, client: &mut Client) {
        if let Some(session) = client.conn.h2.as_mut() {
            session.shutdown();
        }
    }

    fn h2_outcome(
        &mut self,
        py: Python<'_>,
        client: &mut Client,
        mut drive: Drive,
        starts: &mut Vec<TaskStart>,
    ) -> Disposition {
        for new in std::mem::take(&mut drive.streams) {
            let shared = new.shared.clone();
            if let Err(e) = self.new_stream(py, client, new, starts) {
                crate::log::error!("Error handling request\n{}", crate::python::format_exception(py, &e));
                let _ = shared.send([Out::Reset]);
            }
        }
        drive.touched.sort_unstable();
        drive.touched.dedup();
        for id in &drive.touched {
            if let Some(key) = client.h2_streams.get(id).copied() {
                self.stream_touched(py, key);
            }
        }
        if drive.closed {
            return Disposition::Close;
        }
        let Some(session) = client.conn.h2.as_ref() else { return Disposition::Close };
        client.conn.timer.deadline = session.next_deadline();
        if drive.again {
            self.h2_work.push(Token::Conn(client.conn.token).to_epoll());
            self.h2_work.wake.wake();
        }
        Disposition::Keep
    }

    /// A stream for the app: its scope and its call, as an HTTP/1 request's.
    fn new_stream(
        &mut self,
        py: Python<'_>,
        client: &mut Client,
        new: NewStream,
        starts: &mut Vec<TaskStart>,
    ) -> PyResult<()> {
        self.budget.count(&self.scoreboard);
        let NewStream { shared, head } = new;
        let proxy = client.conn.http.proxy().cloned();
        let view = RequestView {
            head: &head,
            peer: client.conn.peer,
            proxy: proxy.as_ref(),
            listener: &self.acceptor.listeners()[client.conn.listener].address,
            tls: client.conn.stream.tls(),
        };
        // One PROXY header (or none) for the whole connection: every
        // stream has the same client and server.
        let addresses = match client.addresses.take() {
            Some(a) => a,
            None => Addresses::new(py, &view)?,
        };
        let state = self.refs()?.state.bind(py).clone();
        let scope = self.scope.build(py, &view, &addresses, None, Some(&state));
        client.addresses = Some(addresses);
        let scope = scope?;
        let id = shared.id;
        let mut st = CycleState::new(CallStart {
            conn: client.conn.token,
            head,
            peer: client.conn.peer,
            body: Vec::new(),
            body_read: false,
            body_error: None,
            now: self.now,
        });
        st.h2_continue = st.head.expect_continue;
        st.h2 = Some(shared);
        let key = self.cycles.insert(st);
        client.attached.push(key);
        client.h2_streams.insert(id, key);
        self.scoreboard.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        starts.push(TaskStart { key, scope: scope.unbind() });
        Ok(())
    }

    /// Something changed for a stream's call: body bytes for a waiting
    /// `receive()`, room for a waiting `send()`, or the stream is gone.
    fn stream_touched(&mut self, py: Python<'_>, key: CycleKey) {
        let Some(st) = self.cycles.get_mut(key) else { return };
        let Some(shared) = st.h2.clone() else { return };
        if shared.gone().is_some() {
            if !st.disconnected {
                self.disconnected(py, key);
            }
            return;
        }
        if st.has_waiter() && !st.body_finished && !st.body_failed {
            if let Some(message) = body_message(py, st, &shared, &self.scope.keys) {
                if let Some(fut) = st.next_waiter(py) {
                    resolve(py, &fut, message);
                }
            }
        }
        if shared.queued() <= OUT_LOW {
            if let Some(fut) = st.take_drain_waiter() {
                resolve(py, &fut, py.None().into_bound(py));
            }
        }
    }

    /// Drives the connections whose streams asked for it (the app queued
    /// output or took body bytes), a few rounds; the loop comes back for
    /// the rest.
    pub(super) fn h2_pending(&mut self, py: Python<'_>, starts: &mut Vec<TaskStart>) {
        for _ in 0..WORK_ROUNDS {
            let mut work = self.h2_work.take();
            if work.is_empty() {
                return;
            }
            work.sort_unstable();
            work.dedup();
            for tag in work {
                if let Token::Conn(token) = Token::from_epoll(tag) {
                    self.resume(py, token, starts);
                }
            }
        }
        self.h2_work.wake.wake();
    }

    /// `receive()` on a stream.
    pub(super) fn h2_receive(&mut self, py: Python<'_>, key: CycleKey) -> PyResult<Py<PyAny>> {
        let keys = &self.scope.keys;
        let Some(st) = self.cycles.get_mut(key) else {
            return ready(py, messages::http_disconnect(py, keys)?.into_any());
        };
        let Some(shared) = st.h2.clone() else {
            return ready(py, messages::http_disconnect(py, keys)?.into_any());
        };
        if st.disconnected || st.body_failed || shared.gone().is_some() {
            return ready(py, messages::http_disconnect(py, keys)?.into_any());
        }
        if st.body_finished {
            // After the body, receive() waits for the stream to end.
            if st.response.complete {
                return ready(py, messages::http_disconnect(py, keys)?.into_any());
            }
            let fut = self.new_future(py)?;
            if let Some(st) = self.cycles.get_mut(key) {
                st.add_waiter(fut.clone_ref(py));
            }
            return Ok(fut);
        }
        if let Some(message) = body_message(py, st, &shared, keys) {
            // Taking bytes may give the client window back: the flush after
            // this round of tasks does it.
            return ready(py, message);
        }
        let wait = match self.settings.timeout {
            Duration::ZERO => super::io::DEFAULT_BODY_WAIT,
            t => t,
        };
        let fut = self.new_future(py)?;
        if let Some(st) = self.cycles.get_mut(key) {
            st.add_waiter(fut.clone_ref(py));
            st.wait_deadline = Some(Instant::now() + wait);
            // The client waits for a 100 before it sends the body; an app
            // that answered first (a 417, a 413) never asked for it.
            if std::mem::take(&mut st.h2_continue) && !st.response.started {
                let hundred = Head { status: 100, fields: Vec::new() };
                if shared.send([Out::Informational(hundred)]).is_err() {
                    st.body_failed = true;
                }
            }
        }
        Ok(fut)
    }

    /// `send()` on a stream. The response head waits for the first body
    /// message, so a response sent whole goes out as one HEADERS and DATA
    /// ending the stream.
    pub(super) fn h2_send(&mut self, py: Python<'_>, key: CycleKey, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let msg = messages::http_send(message)?;
        let date = self.date();
        let keep_headers = self.keep_headers;
        let Some(st) = self.cycles.get_mut(key) else {
            return Err(runtime_error("send() called after the application call ended"));
        };
        if st.disconnected {
            return Err(self.errors.client_gone(py));
        }
        let Some(shared) = st.h2.clone() else { return Err(self.errors.client_gone(py)) };
        let mut parts = Vec::new();
        let mut ends = false;
        match msg {
            HttpSend::Start { status, headers, trailers } => {
                if st.response.started {
                    return Err(runtime_error("Response already started"));
                }
                let facts =
                    RequestFacts { is_head: st.head.method == "HEAD", version: (2, 0), http2: true, uwsgi: false };
                let opts =
                    StartOptions { close: false, server: crate::SERVER_HEADER.as_bytes(), date: &date, keep_headers };
                st.response.start(facts, status, &messages::header_slices(&headers), &opts).map_err(start_error)?;
                st.h2_trailers = trailers.then(Vec::new);
                return ready(py, py.None().into_bound(py));
            }
            HttpSend::Informational { status, headers } => {
                if st.response.started {
                    return Err(runtime_error("Informational response after response start"));
                }
                let (status, fields) =
                    informational_fields(status, &messages::header_slices(&headers)).map_err(start_error)?;
                parts.push(Out::Informational(Head { status, fields }));
            }
            HttpSend::Body { body, more } => {
                if !st.response.started {
                    return Err(runtime_error("Response not started"));
                }
                if st.response.complete {
                    return Err(runtime_error("Response already complete"));
                }
                let len = body.as_slice().len();
                if len > 0 && st.response.omits_body() && !st.body_warned {
                    st.body_warned = true;
                    crate::log::warning!(
                        "ASGI app sent body bytes on a no-body response (method={} status={}); dropping per RFC 9110.",
                        st.head.method,
                        st.response.status
                    );
                }
                let take = st.response.frame(len, more).take;
                if let Some(fields) = st.response.take_h2_head() {
                    parts.push(Out::Head(Head { status: st.response.status, fields }));
                }
                if take > 0 {
                    parts.push(Out::Data(payload_bytes(&body, take)));
                }
                if !more && st.h2_trailers.is_none() {
                    parts.push(Out::End(None));
                    ends = true;
                }
            }
            HttpSend::Trailers { headers, more } => {
                let Some(trailers) = st.h2_trailers.as_mut() else {
                    return Err(runtime_error(
                        "http.response.trailers sent, but http.response.start did not set 'trailers': True",
                    ));
                };
                if !st.response.complete {
                    return Err(runtime_error("http.response.trailers before the response body is complete"));
                }
                crate::bridge::asgi::response::check_headers(&messages::header_slices(&headers))
                    .map_err(start_error)?;
                trailers.extend(
                    messages::header_slices(&headers).iter().map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec())),
                );
                if !more {
                    let fields = std::mem::take(trailers);
                    parts.push(Out::End(Some(fields)));
                    ends = true;
                }
            }
            HttpSend::PathSend { .. } => {
                // The extension is not offered in an HTTP/2 scope.
                return Err(runtime_error("Unexpected ASGI message 'http.response.pathsend' on an HTTP/2 stream."));
            }
        }
        if ends {
            st.h2_ended = true;
        }
        if shared.send(parts).is_err() {
            return Err(self.errors.client_gone(py));
        }
        if ends && st.body_finished {
            // The stream is over: a receive() waiting for its end learns it.
            if let Ok(message) = messages::http_disconnect(py, &self.scope.keys) {
                st.answer_waiters(py, message.as_any());
            }
        }
        if shared.queued() <= OUT_HIGH || shared.gone().is_some() {
            return ready(py, py.None().into_bound(py));
        }
        // The client's window is not keeping up: wait until most of it went.
        let fut = self.new_future(py)?;
        match self.cycles.get_mut(key) {
            Some(st) if !st.disconnected => st.set_drain_waiter(fut.clone_ref(py)),
            _ => resolve(py, &fut, py.None().into_bound(py)),
        }
        Ok(fut)
    }

    /// A stream's call ended: whatever the app left unfinished is finished
    /// here (Gunicorn's 500 before a response started, a reset after).
    pub(super) fn h2_call_ended(&self, client: &mut Client, key: CycleKey, st: &CycleState, end: &CallEnd) {
        // The connection goes on at the next flush, with the other streams
        // that ended in this round.
        self.h2_work.push(Token::Conn(client.conn.token).to_epoll());
        client.h2_streams.retain(|_, k| *k != key);
        let Some(shared) = &st.h2 else { return };
        if st.h2_ended || shared.gone().is_some() {
            return;
        }
        let parts = if !st.response.started {
            if st.disconnected || matches!(end, CallEnd::Exiting) {
                vec![Out::Reset]
            } else if st.timed_out {
                error_stream(504, b"Gateway Timeout")
            } else {
                error_stream(500, b"Internal Server Error")
            }
        } else if st.response.complete && st.h2_trailers.is_some() {
            // Trailers were announced and never sent: the stream still ends.
            vec![Out::End(None)]
        } else {
            if !st.disconnected && matches!(end, CallEnd::Returned) {
                crate::log::error!("ASGI application returned without completing the response; resetting the stream");
            }
            vec![Out::Reset]
        };
        let _ = shared.send(parts);
    }
}

/// Gunicorn's 500 answer for an app that failed before its response (504
/// for one past `--request-timeout`), as a stream's head and body.
fn error_stream(status: u16, body: &'static [u8]) -> Vec<Out> {
    let fields = vec![
        (b"content-type".to_vec(), b"text/plain".to_vec()),
        (b"content-length".to_vec(), body.len().to_string().into_bytes()),
    ];
    vec![Out::Head(Head { status, fields }), Out::Data(Bytes::from_static(body)), Out::End(None)]
}

/// The body bytes at hand as an `http.request` message (None: nothing yet).
fn body_message<'py>(
    py: Python<'py>,
    st: &mut CycleState,
    shared: &StreamShared,
    keys: &crate::bridge::asgi::scope::Keys,
) -> Option<Bound<'py, PyAny>> {
    let (body, more) = match shared.read(BODY_HIGH) {
        Read::Data(d) => {
            let more = !shared.body_complete();
            (d, more)
        }
        Read::End => (Vec::new(), false),
        Read::Empty => return None,
        Read::Gone(_) => {
            st.body_failed = true;
            return messages::http_disconnect(py, keys).ok().map(Bound::into_any);
        }
    };
    st.body_finished = !more;
    messages::http_request(py, keys, &body, more).ok().map(Bound::into_any)
}

/// `take` bytes of a body message for the stream: a large `bytes` object is
/// lent (its buffer is immutable), anything else copied.
fn payload_bytes(body: &Payload<'_>, take: usize) -> Bytes {
    match body {
        Payload::Bytes(b) if take >= LEND_FROM && take == b.as_bytes().len() => {
            let lent: PyBackedBytes = b.clone().into();
            Bytes::from_owner(lent)
        }
        _ => Bytes::copy_from_slice(&body.as_slice()[..take]),
    }
}

fn runtime_error(message: &str) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(message.to_owned())
}
