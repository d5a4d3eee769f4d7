//! The asgi worker's server: one epoll instance, registered with the asyncio
//! loop through `loop.add_reader`, owns the listeners and every connection.
//! When it is readable the loop calls [`AsgiServer::on_ready`], which
//! accepts, reads, parses and validates requests in Rust and starts one
//! asyncio task per request (or WebSocket) with the app. The app's
//! `receive()`/`send()` (in `cycle.rs`) run on the same thread and complete
//! at once when they can, so nothing crosses a thread and most awaits never
//! touch the loop.
//!
//! Connections are registered once, edge-triggered: the `evconn::Edge` of
//! each remembers what the last edge said until a read or write hits EAGAIN, so
//! reading can stop for backpressure (a body the app has not taken yet) and
//! resume when the app asks, without any epoll_ctl call.

use super::cycle::{CycleState, Outcome};
use super::output::{self, FileOut};
use super::websocket::WsState;
use crate::asgi::scope::{Addresses, RequestView, ScopeBase};
use crate::http::date::DateCache;
use crate::http::policy::HttpPolicy;
use crate::net::epoll::{Epoll, Event, READABLE};
use crate::net::listener::Listener;
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use crate::workers::core::access::RequestLog;
use crate::workers::core::signals;
use crate::workers::evconn::{slot_index, After, BufferPool, Conn, Pending, Phase, Slots, Step};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIGNALS: u64 = u64::MAX - 1;
/// Listener i has token LISTENERS - i.
const LISTENERS: u64 = u64::MAX - 2;
/// Kept-alive connections live this long once the worker stops, so a
/// request already on its way is still answered (as the gthread worker).
const STOP_KEEPALIVE_LINGER: Duration = Duration::from_secs(2);
/// A new connection has this long plus the keep-alive time to send a
/// request.
const FIRST_DATA: Duration = Duration::from_secs(5);
const LINGER_TIME: Duration = Duration::from_secs(2);
/// Bytes written to a slow client that `send()` lets pile up before it
/// waits, and the level at which it goes on again.
pub const OUT_HIGH: u64 = 256 * 1024;
pub const OUT_LOW: u64 = 64 * 1024;
/// Application calls that may still run on one connection after their
/// responses went out (background tasks), as Gunicorn's
/// `_MAX_FINISHING_APP_CALLS`: the next request waits while this many do.
const MAX_FINISHING: usize = 16;
const CONN_EVENTS: u32 = crate::workers::evconn::EDGE_EVENTS;

/// One client connection.
pub struct AConn {
    pub c: Conn,
    pub state: State,
    /// Requests (and a WebSocket) whose app calls still run: they learn
    /// when the connection goes away.
    pub attached: Vec<u64>,
    pub file: Option<FileOut>,
    /// The scope's client and server, the same for every request.
    pub addresses: Option<Addresses>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    /// Between requests: the evconn phase (head, flush, linger...) rules.
    Idle,
    /// A request's response is being produced by the app.
    Busy(u64),
    /// The connection is (or is becoming) a WebSocket.
    Ws(u64),
}

impl AConn {
    pub fn pending_out(&self) -> u64 {
        output::pending(&self.c, &self.file)
    }
}

/// A request (or WebSocket) to hand to the app once `on_ready` has let go
/// of the server: calling Python with the server borrowed could re-enter it.
pub struct Start {
    pub key: u64,
    pub scope: Py<PyDict>,
}

/// What `drive` decided for a connection.
#[derive(PartialEq, Eq)]
pub enum Fate {
    Keep,
    Close,
}

enum StopState {
    Running,
    Graceful { deadline: Instant },
    Done,
}

/// The asyncio objects the server calls.
pub struct LoopRefs {
    pub create_future: Py<PyAny>,
    pub create_task: Py<PyAny>,
    pub done: Py<PyAny>,
    pub state: Py<PyDict>,
}

#[pyclass(module = "ferrocorn._ferrocorn", unsendable)]
pub struct AsgiServer {
    pub epoll: Epoll,
    slots: Slots<AConn>,
    pub live: usize,
    max_conns: usize,
    accepting: bool,
    listeners: Vec<Listener>,
    pub settings: Arc<Settings>,
    pub policy: HttpPolicy,
    pub app: Py<PyAny>,
    pub scope: ScopeBase,
    pub date: DateCache,
    pub cycles: super::cycle::Cycles,
    pub refs: Option<LoopRefs>,
    pub log: RequestLog,
    pub hooks: Option<crate::hooks::RequestHooks>,
    pub errors: super::cycle::Errors,
    /// Response headers are kept for the access log, post_request or a
    /// Python logger.
    pub keep_headers: bool,
    wakeup_fd: i32,
    buffers: BufferPool,
    slot: SlotHandle,
    ppid: i32,
    served: u64,
    max_requests: u64,
    keepalive: Duration,
    pub grace: Duration,
    beat_every: Duration,
    last_beat: Instant,
    /// The time of the batch of events in hand: one clock read serves every
    /// deadline and `Date` header of the batch.
    pub now: Instant,
    stop: StopState,
    events: Vec<Event>,
}

impl AsgiServer {
    pub fn new(
        py: Python<'_>,
        ctx: &crate::workers::WorkerCtx,
        app: Py<PyAny>,
        policy: HttpPolicy,
        wakeup_fd: i32,
    ) -> PyResult<AsgiServer> {
        let s = ctx.settings.clone();
        let epoll = Epoll::new()?;
        epoll.add(wakeup_fd, READABLE, SIGNALS)?;
        let log = RequestLog::new(&s, ctx.slot.clone()).map_err(pyo3::exceptions::PyValueError::new_err)?;
        let hooks = crate::hooks::RequestHooks::for_this_worker(py);
        let keep_headers = log.needs_response_headers() || hooks.is_some();
        let beat_every = match s.timeout {
            0 => Duration::from_millis(500),
            t => Duration::from_millis(t as u64 * 500),
        };
        Ok(AsgiServer {
            epoll,
            slots: Slots::default(),
            live: 0,
            max_conns: s.worker_connections.max(1) as usize,
            accepting: false,
            listeners: ctx.listeners.clone(),
            policy,
            app,
            scope: ScopeBase::new(py, &s.root_path)?,
            date: DateCache::new(),
            cycles: super::cycle::Cycles::default(),
            refs: None,
            log,
            hooks,
            errors: super::cycle::Errors::new(py)?,
            keep_headers,
            wakeup_fd,
            buffers: BufferPool::default(),
            slot: ctx.slot.clone(),
            ppid: ctx.ppid,
            served: 0,
            max_requests: ctx.max_requests,
            keepalive: Duration::from_secs(s.keepalive.max(0) as u64),
            grace: Duration::from_secs(s.asgi_disconnect_grace_period.max(0) as u64),
            beat_every,
            last_beat: Instant::now(),
            now: Instant::now(),
            stop: StopState::Running,
            events: Vec::with_capacity(256),
            settings: s,
        })
    }

    fn set_accepting(&mut self, on: bool) -> io::Result<()> {
        if on == self.accepting {
            return Ok(());
        }
        crate::workers::evconn::watch_listeners(&self.epoll, &self.listeners, LISTENERS, on)?;
        self.accepting = on;
        Ok(())
    }

    /// Reads the clock for the batch in hand.
    fn clock(&mut self) {
        self.now = Instant::now();
        self.date.get();
    }

    /// The `Date` header's value for this batch.
    pub fn date(&self) -> [u8; 29] {
        self.date.last()
    }

    pub fn stopping(&self) -> bool {
        !matches!(self.stop, StopState::Running)
    }

    /// Whether a response starting now must announce `Connection: close`.
    pub fn must_close(&self) -> bool {
        self.stopping() || !signals::alive() || self.keepalive.is_zero() || self.served >= self.max_requests
    }

    pub fn refs(&self) -> PyResult<&LoopRefs> {
        self.refs.as_ref().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("the server is not started"))
    }

    pub fn conn_mut(&mut self, tok: u64) -> Option<&mut AConn> {
        self.slots.get_mut(tok)
    }

    /// Takes a connection out of its slot to work on it with the rest of
    /// the server at hand; `put_back` (or `close`) ends that.
    pub fn take_conn(&mut self, tok: u64) -> Option<Box<AConn>> {
        self.slots.take(tok)
    }

    /// Ends work on a taken connection: `drive` decides, and it is kept or
    /// closed accordingly.
    pub fn settle(&mut self, py: Python<'_>, mut conn: Box<AConn>, starts: &mut Vec<Start>) {
        match self.drive(py, &mut conn, starts) {
            Fate::Keep => self.slots.put(conn.c.slot(), conn),
            Fate::Close => self.close(py, conn),
        }
    }

    fn accept(&mut self, index: usize) {
        while self.live < self.max_conns {
            match self.listeners[index].accept() {
                Ok(Some((stream, peer))) => {
                    let tok = self.slots.reserve();
                    let mut c = Conn::new(stream, peer, index, tok, self.policy.proxy_protocol);
                    c.deadline = Some(self.now + FIRST_DATA + self.keepalive);
                    if self.epoll.add(c.fd(), CONN_EVENTS, tok).is_err() {
                        self.slots.release(slot_index(tok));
                        continue;
                    }
                    self.live += 1;
                    self.slots.put(
                        slot_index(tok),
                        Box::new(AConn { c, state: State::Idle, attached: Vec::new(), file: None, addresses: None }),
                    );
                }
                Ok(None) => return,
                Err(e) => {
                    crate::log::error!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Closes a connection; the app calls still running for it learn that
    /// the client is gone.
    pub fn close(&mut self, py: Python<'_>, conn: Box<AConn>) {
        let _ = self.epoll.delete(conn.c.fd());
        for key in &conn.attached {
            self.disconnected(py, *key);
        }
        let index = conn.c.slot();
        drop(conn);
        self.slots.release(index);
        self.live -= 1;
    }

    fn on_event(&mut self, py: Python<'_>, tok: u64, flags: u32, starts: &mut Vec<Start>) {
        let Some(mut conn) = self.take_conn(tok) else { return };
        conn.c.edge.note(flags);
        self.settle(py, conn, starts);
    }

    /// Moves a connection as far as it can go now.
    pub fn drive(&mut self, py: Python<'_>, conn: &mut AConn, starts: &mut Vec<Start>) -> Fate {
        loop {
            match conn.state {
                State::Busy(key) => return self.drive_request(py, conn, key),
                State::Ws(key) => return self.drive_ws(py, conn, key),
                State::Idle => {}
            }
            match std::mem::replace(&mut conn.c.phase, Phase::Close) {
                Phase::Flush(after) => match output::flush(&mut conn.c, &mut conn.file) {
                    Ok(true) => match after {
                        After::KeepAlive => conn.c.phase = Phase::Head,
                        After::Linger => conn.c.start_linger(),
                    },
                    Ok(false) => {
                        conn.c.phase = Phase::Flush(after);
                        return if conn.c.edge.hup { Fate::Close } else { Fate::Keep };
                    }
                    Err(e) => {
                        crate::workers::wsgi_request::log_socket_error(&e);
                        return Fate::Close;
                    }
                },
                Phase::Linger { mut drained } => {
                    if conn.c.edge.readable || conn.c.edge.hup {
                        if conn.c.linger_read(&mut drained) {
                            return Fate::Close;
                        }
                        conn.c.edge.readable = false;
                    }
                    conn.c.phase = Phase::Linger { drained };
                    if conn.c.deadline.is_none() {
                        conn.c.deadline = Some(Instant::now() + LINGER_TIME);
                    }
                    return Fate::Keep;
                }
                // The asgi worker never drains an unread body: like
                // Gunicorn's, it closes such a connection instead.
                Phase::Drain { .. } | Phase::Close => return Fate::Close,
                phase @ (Phase::Head | Phase::Body(_)) => {
                    conn.c.phase = phase;
                    if conn.c.edge.hup {
                        return Fate::Close;
                    }
                    match conn.c.advance(&self.policy) {
                        Step::Dispatch(pending) => {
                            conn.c.deadline = None;
                            if let Err(e) = self.dispatch(py, conn, pending, starts) {
                                crate::log::error!(
                                    "Error handling request\n{}",
                                    crate::python::format_exception(py, &e)
                                );
                                return Fate::Close;
                            }
                        }
                        Step::NeedRead => {
                            if conn.c.edge.readable && !conn.c.eof {
                                self.buffers.lend(&mut conn.c);
                                match conn.c.read_edge() {
                                    Ok(_) => continue,
                                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.c.edge.readable = false,
                                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                                    Err(e) => {
                                        crate::workers::wsgi_request::log_socket_error(&e);
                                        return Fate::Close;
                                    }
                                }
                            }
                            if conn.c.is_idle() && conn.c.requests > 0 {
                                // A kept-alive connection waiting for its next
                                // request: the keep-alive time, no buffers.
                                let mut deadline = self.now + self.keepalive;
                                if self.stopping() {
                                    deadline = deadline.min(self.now + STOP_KEEPALIVE_LINGER);
                                }
                                conn.c.deadline = Some(conn.c.deadline.map_or(deadline, |d| d.min(deadline)));
                                self.buffers.reclaim(&mut conn.c);
                            } else if conn.c.requests > 0 || !conn.c.buf.unread().is_empty() {
                                // A request is arriving: Gunicorn waits for
                                // it without a time limit.
                                conn.c.deadline = None;
                            }
                            return Fate::Keep;
                        }
                        Step::Reject(e) => conn.c.reject(&e),
                        Step::Done => return Fate::Close,
                    }
                }
            }
        }
    }

    /// A complete request head (and what the engine read of its body): a
    /// cycle for the app, HTTP or WebSocket.
    fn dispatch(
        &mut self,
        py: Python<'_>,
        conn: &mut AConn,
        pending: Box<Pending>,
        starts: &mut Vec<Start>,
    ) -> PyResult<()> {
        conn.c.requests += 1;
        self.served += 1;
        self.slot.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.served >= self.max_requests && signals::alive() {
            crate::log::info!("Autorestarting worker after current request.");
            self.slot.set_exit_reason(crate::scoreboard::counts::ExitReason::MaxRequests);
            signals::stop();
        }
        let Pending { head, decoder, body, error } = *pending;
        let upgrade = {
            let headers: Vec<(&str, &[u8])> =
                head.headers.iter().map(|h| (h.name.as_str(), h.value.as_slice())).collect();
            if crate::ws::handshake::is_upgrade(&head.method, &headers) {
                Some(crate::ws::handshake::validate(&head.method, head.version, &headers))
            } else {
                None
            }
        };
        let ws = match upgrade {
            None => None,
            Some(Ok(up)) => Some(up),
            Some(Err(e)) => {
                crate::log::debug!("WebSocket handshake refused: {e}");
                conn.c.out = e.response(crate::SERVER_HEADER.as_bytes(), &self.date());
                conn.c.out_pos = 0;
                conn.c.phase = Phase::Flush(After::Linger);
                return Ok(());
            }
        };
        let view = RequestView {
            head: &head,
            peer: conn.c.peer,
            // The PROXY header speaks for the first request only.
            proxy: if conn.c.requests == 1 { conn.c.proxy.as_ref() } else { None },
            listener: &self.listeners[conn.c.listener].address,
        };
        let state = self.refs()?.state.bind(py).clone();
        // The PROXY header's client holds for the first request only.
        if conn.addresses.is_none() || conn.c.requests == 1 {
            conn.addresses = Some(Addresses::new(py, &view)?);
        }
        let addresses =
            conn.addresses.as_ref().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no addresses"))?;
        let scope =
            self.scope.build(py, &view, addresses, ws.as_ref().map(|u| u.subprotocols.as_slice()), Some(&state))?;
        if conn.c.requests == 1 && conn.c.proxy.is_some() {
            conn.addresses = None;
        }
        let mut st = CycleState::new(conn.c.token, head, conn.c.peer, decoder, body, error, self.now);
        if let Some(up) = ws {
            st.ws = Some(Box::new(WsState::new(up, self.settings.websocket_max_message_size)));
        }
        let is_ws = st.ws.is_some();
        let key = self.cycles.insert(st);
        conn.attached.push(key);
        conn.state = if is_ws { State::Ws(key) } else { State::Busy(key) };
        self.slot.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        starts.push(Start { key, scope: scope.unbind() });
        Ok(())
    }

    /// The response is complete: what becomes of the connection. It goes
    /// on to the next request at once when it can be reused, the body was
    /// read whole and not too many app calls still run on it; otherwise it
    /// waits for the app call to end (see `finished`).
    pub fn response_complete(&mut self, conn: &mut AConn, key: u64) {
        let Some(st) = self.cycles.get(key) else { return };
        if conn.state != State::Busy(key) {
            return;
        }
        if !st.response.reusable() || conn.c.edge.rdhup {
            conn.state = State::Idle;
            conn.c.phase = Phase::Flush(After::Linger);
            return;
        }
        let body_taken = st.body_done() && st.body.is_empty();
        if body_taken
            && conn.attached.len() <= MAX_FINISHING
            && self.hooks.as_ref().is_none_or(|h| !h.has_post_request())
        {
            conn.state = State::Idle;
            conn.c.phase = Phase::Flush(After::KeepAlive);
        }
    }

    /// The app call of `key` ended (its task is done). Returns the
    /// connection's next state when it was waiting for this.
    pub fn finished(
        &mut self,
        py: Python<'_>,
        key: u64,
        outcome: &Outcome,
        starts: &mut Vec<Start>,
    ) -> Option<CycleState> {
        let st = self.cycles.remove(key)?;
        self.slot.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let Some(mut conn) = self.take_conn(st.conn) else { return Some(st) };
        conn.attached.retain(|k| *k != key);
        match conn.state {
            State::Busy(k) if k == key => {
                conn.state = State::Idle;
                if !st.response.started {
                    if st.disconnected || matches!(outcome, Outcome::Exiting) {
                        conn.c.phase = Phase::Close;
                    } else {
                        // Gunicorn's answer when the app fails (or returns)
                        // before it starts a response.
                        conn.c.out = crate::asgi::response::error_response(500, "Internal Server Error", &[]);
                        conn.c.out_pos = 0;
                        conn.c.phase = Phase::Flush(After::Linger);
                    }
                } else if !st.response.complete {
                    if !st.disconnected && matches!(outcome, Outcome::Returned) {
                        crate::log::error!(
                            "ASGI application returned without completing the response; closing the connection"
                        );
                    }
                    conn.c.phase = Phase::Close;
                } else {
                    let reusable = st.response.reusable() && st.body_done() && !conn.c.edge.rdhup;
                    conn.c.phase = Phase::Flush(if reusable { After::KeepAlive } else { After::Linger });
                }
            }
            State::Ws(k) if k == key => {
                if let Some(fate) = self.ws_finished(py, &mut conn, &st, outcome) {
                    if fate == Fate::Close {
                        self.close(py, conn);
                        return Some(st);
                    }
                }
            }
            _ => {}
        }
        self.settle(py, conn, starts);
        Some(st)
    }

    /// The loop says our epoll fd is readable: handle everything ready.
    fn ready(&mut self, py: Python<'_>, starts: &mut Vec<Start>) -> PyResult<()> {
        self.clock();
        let mut events = std::mem::take(&mut self.events);
        let mut result = Ok(());
        loop {
            let n = match self.epoll.wait(&mut events, Some(Duration::ZERO)) {
                Ok(n) => n,
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            };
            for ev in events.iter() {
                let (tok, flags) = (ev.u64, ev.events);
                match tok {
                    SIGNALS => {
                        let mut buf = [0u8; 64];
                        // SAFETY: non-blocking reads of the wakeup pipe.
                        while unsafe { libc::read(self.wakeup_fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
                        // Run the Python handlers now (QUIT raises SystemExit).
                        if let Err(e) = py.check_signals() {
                            result = Err(e);
                        }
                    }
                    t if t > LISTENERS - self.listeners.len() as u64 && t <= LISTENERS => {
                        if self.accepting {
                            self.accept((LISTENERS - t) as usize);
                        }
                    }
                    t => self.on_event(py, t, flags, starts),
                }
                if result.is_err() {
                    break;
                }
            }
            if result.is_err() || n < events.capacity() {
                break;
            }
        }
        self.events = events;
        result?;
        self.after_events(py);
        Ok(())
    }

    /// Accepting follows the room left; a stop in progress may be over.
    fn after_events(&mut self, py: Python<'_>) {
        if !signals::alive() && !self.stopping() {
            self.begin_stop(py);
        }
        match self.stop {
            StopState::Running => {
                let room = self.live < self.max_conns;
                if self.accepting != room {
                    if let Err(e) = self.set_accepting(room) {
                        crate::log::error!("listening failed: {e}");
                    }
                }
            }
            StopState::Graceful { deadline } => {
                // App calls that run on after their response (background
                // work) are waited for too, as Gunicorn's worker does.
                if self.live == 0 && self.cycles.len() == 0 {
                    self.finish(py);
                } else if Instant::now() >= deadline {
                    crate::log::warning!("Forcing close of {} connections", self.live);
                    self.close_all(py);
                    self.finish(py);
                }
            }
            StopState::Done => {}
        }
    }

    /// TERM, max-requests, parent gone: stop accepting, close idle
    /// connections soon, answer requests in progress with Connection:
    /// close, close WebSockets with 1001, and wait for all of it up to
    /// `--graceful-timeout`.
    fn begin_stop(&mut self, py: Python<'_>) {
        crate::log::info!("Worker shutting down...");
        signals::stop();
        let _ = self.set_accepting(false);
        let cap = Instant::now() + STOP_KEEPALIVE_LINGER;
        let grace = Duration::from_secs(self.settings.graceful_timeout.max(0) as u64);
        self.stop = StopState::Graceful { deadline: Instant::now() + grace };
        let mut tokens = Vec::new();
        for conn in self.slots.held_mut() {
            if conn.state == State::Idle && conn.c.is_idle() {
                conn.c.deadline = Some(conn.c.deadline.map_or(cap, |d| d.min(cap)));
            }
            if let State::Ws(_) = conn.state {
                tokens.push(conn.c.token);
            }
        }
        for tok in tokens {
            if let Some(mut conn) = self.take_conn(tok) {
                self.ws_going_away(py, &mut conn);
                let mut starts = Vec::new();
                self.settle(py, conn, &mut starts);
            }
        }
    }

    fn close_all(&mut self, py: Python<'_>) {
        for conn in self.slots.take_if(|_| true) {
            self.close(py, conn);
        }
        // Forced: no grace period for what still runs.
        self.cycles.cancel_all(py);
    }

    fn finish(&mut self, py: Python<'_>) {
        if matches!(self.stop, StopState::Done) {
            return;
        }
        self.stop = StopState::Done;
        let _ = self.set_accepting(false);
        if let Some(refs) = &self.refs {
            let done = refs.done.bind(py);
            if !done.call_method0("done").and_then(|d| d.is_truthy()).unwrap_or(true) {
                if let Err(e) = done.call_method1("set_result", (py.None(),)) {
                    crate::log::error!("{}", crate::python::format_exception(py, &e));
                }
            }
        }
    }

    /// Timers: heartbeat, parent check, keep-alive/linger deadlines,
    /// receive() waits, disconnect grace periods, the stop deadline.
    fn timers(&mut self, py: Python<'_>, starts: &mut Vec<Start>) {
        self.clock();
        let now = self.now;
        if now.duration_since(self.last_beat) * 2 >= self.beat_every / 2 {
            self.slot.beat();
            self.last_beat = now;
        }
        // SAFETY: getppid cannot fail.
        if !self.stopping() && self.ppid != unsafe { libc::getppid() } {
            crate::log::info!("Parent changed, shutting down: <Worker {}>", std::process::id());
            self.begin_stop(py);
        }
        for conn in self.slots.take_if(|c| c.c.deadline.is_some_and(|d| d <= now)) {
            self.close(py, conn);
        }
        for key in self.cycles.expired_waits(now) {
            self.receive_timed_out(py, key, starts);
        }
        self.cycles.cancel_due(py, now);
    }
}

#[pymethods]
impl AsgiServer {
    /// The epoll fd the loop watches.
    fn fileno(&self) -> i32 {
        self.epoll.fd()
    }

    /// Starts serving: called once lifespan startup is complete.
    fn start(&mut self, loop_: &Bound<'_, PyAny>, state: Bound<'_, PyDict>, done: Bound<'_, PyAny>) -> PyResult<()> {
        self.refs = Some(LoopRefs {
            create_future: loop_.getattr("create_future")?.unbind(),
            create_task: loop_.getattr("create_task")?.unbind(),
            done: done.unbind(),
            state: state.unbind(),
        });
        self.set_accepting(true)?;
        Ok(())
    }

    fn on_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut starts = Vec::new();
        let result = slf.borrow_mut().ready(py, &mut starts);
        super::cycle::run_starts(py, slf, starts);
        result
    }

    /// Called by the worker's ticker a few times a second; false once the
    /// server has stopped.
    fn tick(slf: &Bound<'_, Self>) -> bool {
        let py = slf.py();
        let mut starts = Vec::new();
        let running = {
            let mut s = slf.borrow_mut();
            s.timers(py, &mut starts);
            s.after_events(py);
            !matches!(s.stop, StopState::Done)
        };
        super::cycle::run_starts(py, slf, starts);
        running
    }

    /// Requests and WebSockets whose app calls still run.
    fn in_flight(&self) -> usize {
        self.cycles.len()
    }

    /// Cancels what still runs (the worker is exiting).
    fn cancel_all(&mut self, py: Python<'_>) {
        self.cycles.cancel_all(py);
    }

    /// How often the ticker must call `tick`, in seconds.
    fn tick_interval(&self) -> f64 {
        (self.beat_every.as_secs_f64() / 2.0).min(0.2)
    }
}
