//! The asgi worker's engine: one epoll instance, registered with the asyncio
//! loop through `loop.add_reader`, owns the listeners and every connection.
//! When it is readable the loop calls [`AsgiServer::on_ready`], which
//! accepts, reads, parses and validates requests in Rust (`core::conn`) and
//! starts one asyncio task per request (or WebSocket) with the app. The
//! app's `receive()`/`send()` (`io.rs`) run on the same thread and complete
//! at once when they can, so nothing crosses a thread and most awaits never
//! touch the loop.
//!
//! Connections are registered once, edge-triggered: each remembers its
//! last edge until a read or write hits EAGAIN, so reading can stop for
//! backpressure (a body the app has not taken yet) and resume when the app
//! asks, without any epoll_ctl call.

use super::exec::{run_starts, CallEnd, CallStart, CycleState, Cycles, Errors, TaskStart};
use super::h2::H2Work;
use super::io::FileOut;
use super::websocket::WsState;
use crate::bridge::asgi::scope::{Addresses, RequestView, ScopeBase};
use crate::http::conn::Request;
use crate::http::date::DateCache;
use crate::http::policy::HttpPolicy;
use crate::http::request::RequestHead;
use crate::http2::H2Serving;
use crate::net::epoll::{Epoll, Event, READABLE};
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use crate::workers::core::accept::{Accepted, Acceptor, Token};
use crate::workers::core::access::RequestLog;
use crate::workers::core::conn::{
    longest_head_wait, BufferPool, Conn, Deadlines, Inbound, Progress, Timer, EDGE_EVENTS,
};
use crate::workers::core::life::{beat_interval, RequestBudget, Stop};
use crate::workers::core::signals::{self, Wakeup};
use crate::workers::core::slab::{ConnToken, CycleKey, Slab};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes written to a slow client that `send()` lets pile up before it
/// waits, and the level at which it goes on again.
pub(super) const OUT_HIGH: usize = 256 * 1024;
pub(super) const OUT_LOW: usize = 64 * 1024;
/// Application calls that may still run on one connection after their
/// responses went out (background tasks), as Gunicorn's
/// `_MAX_FINISHING_APP_CALLS`: the next request waits while this many do.
const MAX_FINISHING: usize = 16;

/// One client connection.
pub(super) struct Client {
    pub(super) conn: Conn,
    pub(super) role: Role,
    /// Calls (requests, a WebSocket) still running on it: they learn when
    /// the connection goes away.
    pub(super) attached: Vec<CycleKey>,
    /// An `http.response.pathsend` file still being sent.
    pub(super) file: Option<FileOut>,
    /// The scope's client and server, the same for every request.
    pub(super) addresses: Option<Addresses>,
    /// HTTP/2: the calls of the open streams, by stream id.
    pub(super) h2_streams: HashMap<u32, CycleKey>,
}

/// What a connection is doing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Role {
    /// Between requests: its HTTP state (`core::conn`) rules.
    Idle,
    /// The app is producing this call's response.
    Http(CycleKey),
    /// The connection is (or is becoming) this call's WebSocket.
    WebSocket(CycleKey),
    /// An HTTP/2 connection: its streams are calls of their own.
    H2,
}

/// Whether a connection stays after it was worked on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Disposition {
    Keep,
    Close,
}

/// The asyncio objects the server calls.
pub(super) struct LoopRefs {
    pub(super) create_future: Py<PyAny>,
    pub(super) call_soon: Py<PyAny>,
    pub(super) create_task: Py<PyAny>,
    done: Py<PyAny>,
    pub(super) state: Py<PyDict>,
}

#[pyclass(module = "ferrocorn._ferrocorn", unsendable)]
pub struct AsgiServer {
    epoll: Epoll,
    clients: Slab<ConnToken, Box<Client>>,
    max_conns: usize,
    pub(super) acceptor: Acceptor,
    pub(super) settings: Arc<Settings>,
    pub(super) policy: HttpPolicy,
    /// What this worker serves of HTTP/2 (None: HTTP/1 only).
    pub(super) h2: Option<H2Serving>,
    pub(super) h2_work: Arc<H2Work>,
    /// `flush_h2` is due on the loop (`exec::schedule_h2_flush`).
    pub(super) h2_flush_scheduled: bool,
    pub(super) app: Py<PyAny>,
    pub(super) scope: ScopeBase,
    date: DateCache,
    pub(super) cycles: Cycles,
    refs: Option<LoopRefs>,
    pub(super) log: RequestLog,
    pub(super) hooks: Option<crate::hooks::RequestHooks>,
    pub(super) errors: Errors,
    /// Response headers are kept for the access log, post_request or a
    /// Python logger.
    pub(super) keep_headers: bool,
    wakeup: Wakeup,
    buffers: BufferPool,
    pub(super) scoreboard: SlotHandle,
    ppid: i32,
    pub(super) budget: RequestBudget,
    /// Keep-alive responses still to close, for their clients to connect
    /// to a sibling (see `Acceptor::shed`).
    pub(super) shed_left: usize,
    limits: Deadlines,
    /// `--asgi-disconnect-grace-period`.
    disconnect_grace: Duration,
    beat_every: Duration,
    /// The time of the batch of events in hand: one clock read serves every
    /// deadline and `Date` header of the batch.
    pub(super) now: Instant,
    stop: Stop,
    events: Vec<Event>,
}

impl AsgiServer {
    pub fn new(
        py: Python<'_>,
        ctx: &crate::workers::WorkerCtx,
        app: Py<PyAny>,
        policy: HttpPolicy,
        wakeup: Wakeup,
    ) -> PyResult<AsgiServer> {
        let s = ctx.settings.clone();
        let epoll = Epoll::new()?;
        epoll.add(wakeup.read_fd, READABLE, Token::Signals.to_epoll())?;
        let h2_work = Arc::new(H2Work::new()?);
        epoll.add(h2_work.wake.fd(), READABLE, Token::Wake.to_epoll())?;
        let log = RequestLog::new(&s, ctx.slot.clone()).map_err(pyo3::exceptions::PyValueError::new_err)?;
        let hooks = crate::hooks::RequestHooks::for_this_worker(py);
        let keep_headers = log.needs_response_headers() || hooks.is_some();
        Ok(AsgiServer {
            epoll,
            clients: Slab::default(),
            max_conns: s.worker_connections.max(1),
            acceptor: Acceptor::new(ctx.listeners.clone(), ctx.tls.clone()).sharing(ctx.slot.clone(), &ctx.settings),
            policy,
            h2: H2Serving::from_settings(&s, ctx.tls.is_some()),
            h2_work,
            h2_flush_scheduled: false,
            app,
            scope: ScopeBase::new(py, &s.root_path)?,
            date: DateCache::new(),
            cycles: Cycles::default(),
            refs: None,
            log,
            hooks,
            errors: Errors::new(py)?,
            keep_headers,
            wakeup,
            buffers: BufferPool::default(),
            scoreboard: ctx.slot.clone(),
            ppid: ctx.ppid,
            budget: RequestBudget::new(ctx.max_requests),
            shed_left: 0,
            limits: Deadlines::from_settings(&s),
            disconnect_grace: s.asgi_disconnect_grace_period,
            beat_every: beat_interval(&s),
            now: Instant::now(),
            stop: Stop::Running,
            events: Vec::with_capacity(256),
            settings: s,
        })
    }

    /// Reads the clock for the batch in hand.
    fn clock(&mut self) {
        self.now = Instant::now();
        self.date.get();
    }

    /// The `Date` header's value for this batch.
    pub(super) fn date(&self) -> [u8; 29] {
        self.date.last()
    }

    pub(super) fn stopping(&self) -> bool {
        !self.stop.is_running()
    }

    /// Whether a response starting now must announce `Connection: close`.
    pub(super) fn must_close(&self) -> bool {
        self.stopping() || !signals::alive() || self.limits.keepalive.is_zero() || self.budget.exhausted()
    }

    pub(super) fn refs(&self) -> PyResult<&LoopRefs> {
        self.refs.as_ref().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("the server is not started"))
    }

    pub(super) fn new_future(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.refs()?.create_future.bind(py).call0()?.unbind())
    }

    pub(super) fn client(&self, token: ConnToken) -> Option<&Client> {
        self.clients.get(token).map(|c| &**c)
    }

    /// Takes a connection out of its slot to work on it with the rest of
    /// the server at hand; [`AsgiServer::settle`] ends that.
    pub(super) fn take_client(&mut self, token: ConnToken) -> Option<Box<Client>> {
        self.clients.take(token)
    }

    /// Ends work on a taken connection: it is driven as far as it goes,
    /// then kept or closed.
    pub(super) fn settle(&mut self, py: Python<'_>, mut client: Box<Client>, starts: &mut Vec<TaskStart>) {
        match self.drive(py, &mut client, starts) {
            Disposition::Keep => self.clients.put(client.conn.token, client),
            Disposition::Close => self.close(py, client),
        }
    }

    /// A connection taken out, driven and put back (a call made room).
    pub(super) fn resume(&mut self, py: Python<'_>, token: ConnToken, starts: &mut Vec<TaskStart>) {
        if let Some(client) = self.take_client(token) {
            self.settle(py, client, starts);
        }
    }

    /// Room for a new connection: below `--worker-connections`, or an idle
    /// connection waiting for a request head that can make room.
    fn has_room(&self) -> bool {
        self.clients.len() < self.max_conns || self.longest_head_wait().is_some()
    }

    fn longest_head_wait(&self) -> Option<ConnToken> {
        longest_head_wait(self.clients.iter().filter(|(_, c)| c.role == Role::Idle).map(|(_, c)| &c.conn))
    }

    fn accept(&mut self, py: Python<'_>, index: usize) {
        if !self.acceptor.is_watching() {
            return;
        }
        // Past its share the worker leaves what is queued to its siblings,
        // which were woken for it too.
        let mut share_left = self.acceptor.share_left(self.clients.len());
        while self.has_room() && share_left > 0 {
            share_left -= 1;
            let (stream, peer) = match self.acceptor.accept(&self.epoll, index) {
                Accepted::Conn(stream, peer) => (stream, peer),
                Accepted::None | Accepted::Exhausted => return,
            };
            if self.clients.len() >= self.max_conns {
                // Full: the connection that has waited longest for a
                // request head makes room for the new client.
                if let Some(client) = self.longest_head_wait().and_then(|t| self.take_client(t)) {
                    crate::log::debug!("Worker full: closing the connection waiting longest for a request head");
                    self.close(py, client);
                }
            }
            let token = self.clients.reserve();
            let mut conn = Conn::new(stream, peer, index, token, self.policy.proxy_protocol);
            if let Some(h2) = &self.h2 {
                conn.offer_h2(h2.offer(&self.policy, peer.ip()));
            }
            conn.follow_timer(self.now, &self.limits, false);
            if self.epoll.add(conn.fd(), EDGE_EVENTS, Token::Conn(token).to_epoll()).is_err() {
                self.clients.remove(token);
                continue;
            }
            let client = Client {
                conn,
                role: Role::Idle,
                attached: Vec::new(),
                file: None,
                addresses: None,
                h2_streams: HashMap::new(),
            };
            self.clients.put(token, Box::new(client));
        }
    }

    /// Closes a connection; the calls still running for it learn that the
    /// client is gone.
    pub(super) fn close(&mut self, py: Python<'_>, client: Box<Client>) {
        let _ = self.epoll.delete(client.conn.fd());
        for key in &client.attached {
            self.disconnected(py, *key);
        }
        let token = client.conn.token;
        drop(client);
        self.clients.remove(token);
    }

    fn on_event(&mut self, py: Python<'_>, token: ConnToken, flags: u32, starts: &mut Vec<TaskStart>) {
        let Some(mut client) = self.take_client(token) else { return };
        client.conn.edge.note(flags);
        if let Some(session) = client.conn.h2.as_ref() {
            session.note_event(flags);
        }
        self.settle(py, client, starts);
    }

    /// Moves a connection as far as it can go now.
    pub(super) fn drive(&mut self, py: Python<'_>, client: &mut Client, starts: &mut Vec<TaskStart>) -> Disposition {
        loop {
            match client.role {
                Role::Http(key) => return self.drive_request(py, client, key),
                Role::WebSocket(key) => return self.drive_ws(py, client, key),
                Role::H2 => return self.drive_h2(py, client, starts),
                Role::Idle => {}
            }
            if client.file.is_some() {
                match client.flush() {
                    Ok(true) => {}
                    Ok(false) => return Disposition::Keep,
                    Err(e) => {
                        crate::workers::core::sock::log_socket_error(&e);
                        return Disposition::Close;
                    }
                }
            }
            match client.conn.progress(&self.policy, &mut self.buffers) {
                Progress::Dispatch(inbound) => {
                    if let Err(e) = self.dispatch(py, client, inbound, starts) {
                        crate::log::error!("Error handling request\n{}", crate::python::format_exception(py, &e));
                        return Disposition::Close;
                    }
                }
                Progress::Keep => {
                    client.conn.follow_timer(self.now, &self.limits, self.stopping());
                    if client.conn.http.is_idle() {
                        // A kept-alive connection waiting for its next
                        // request holds no buffer.
                        self.buffers.reclaim(&mut client.conn);
                    }
                    return Disposition::Keep;
                }
                Progress::Http2 => return self.start_h2(py, client, starts),
                Progress::Close => return Disposition::Close,
            }
        }
    }

    /// A request for the app: an HTTP call, or a WebSocket when it asks for
    /// an upgrade (a refused handshake is answered here).
    fn dispatch(
        &mut self,
        py: Python<'_>,
        client: &mut Client,
        inbound: Inbound,
        starts: &mut Vec<TaskStart>,
    ) -> PyResult<()> {
        self.budget.count(&self.scoreboard);
        let Inbound { request, body, error } = inbound;
        let Request { head, proxy } = *request;
        let ws = match websocket_upgrade(&head) {
            Upgrade::No => None,
            Upgrade::Yes(up) => Some(up),
            Upgrade::Refused(e) => {
                crate::log::debug!("WebSocket handshake refused: {e}");
                client.conn.out.push(&e.response(crate::SERVER_HEADER.as_bytes(), &self.date()));
                client.conn.http.end();
                return Ok(());
            }
        };
        let view = RequestView {
            head: &head,
            peer: client.conn.peer,
            proxy: proxy.as_ref(),
            listener: &self.acceptor.listeners()[client.conn.listener].address,
            tls: client.conn.stream.tls(),
        };
        let state = self.refs()?.state.bind(py).clone();
        // The connection's addresses serve every request, except that the
        // PROXY header's client holds for the first request only.
        let addresses = match client.addresses.take() {
            Some(a) if proxy.is_none() => a,
            _ => Addresses::new(py, &view)?,
        };
        let subprotocols = ws.as_ref().map(|u| u.subprotocols.as_slice());
        let scope = self.scope.build(py, &view, &addresses, subprotocols, Some(&state))?;
        if proxy.is_none() {
            client.addresses = Some(addresses);
        }
        let mut st = CycleState::new(CallStart {
            conn: client.conn.token,
            head,
            peer: client.conn.peer,
            body,
            body_read: client.conn.http.body_complete(),
            body_error: error,
            now: self.now,
        });
        if let Some(up) = ws {
            st.ws = Some(Box::new(WsState::new(up, self.settings.websocket_max_message_size)));
            client.conn.http.upgrade();
        }
        let is_ws = st.ws.is_some();
        let key = self.cycles.insert(st);
        client.attached.push(key);
        client.role = if is_ws { Role::WebSocket(key) } else { Role::Http(key) };
        // The app's time now, not the client's.
        client.conn.timer = Timer::default();
        self.scoreboard.in_flight.fetch_add(1, Ordering::Relaxed);
        starts.push(TaskStart { key, scope: scope.unbind() });
        Ok(())
    }

    /// The response is complete. The connection goes on to the next
    /// request at once when it can be reused, the body was read whole and
    /// not too many calls still run on it; otherwise it waits for the call
    /// to end (see [`AsgiServer::finished`]).
    pub(super) fn response_complete(&mut self, client: &mut Client, key: CycleKey) {
        let Some(st) = self.cycles.get(key) else { return };
        if client.role != Role::Http(key) {
            return;
        }
        if !st.response.reusable() || client.conn.edge.rdhup {
            client.role = Role::Idle;
            client.conn.http.response_complete(false);
            return;
        }
        let body_taken = st.body_done() && st.body.is_empty();
        let no_post_request = self.hooks.as_ref().is_none_or(|h| !h.has_post_request());
        if body_taken && client.attached.len() <= MAX_FINISHING && no_post_request {
            client.role = Role::Idle;
            client.conn.http.response_complete(true);
        }
    }

    /// The call of `key` ended (its task is done). Returns its state.
    pub(super) fn finished(
        &mut self,
        py: Python<'_>,
        key: CycleKey,
        end: &CallEnd,
        starts: &mut Vec<TaskStart>,
    ) -> Option<CycleState> {
        let st = self.cycles.remove(py, key)?;
        self.scoreboard.in_flight.fetch_sub(1, Ordering::Relaxed);
        let Some(mut client) = self.take_client(st.conn) else { return Some(st) };
        client.attached.retain(|k| *k != key);
        let role = client.role;
        match role {
            Role::Http(k) if k == key => {
                client.role = Role::Idle;
                self.http_call_ended(&mut client, &st, end);
            }
            Role::WebSocket(k) if k == key && self.ws_finished(&mut client, &st, end) == Disposition::Close => {
                self.close(py, client);
                return Some(st);
            }
            Role::H2 => {
                self.h2_call_ended(&mut client, key, &st, end);
                self.clients.put(client.conn.token, client);
                return Some(st);
            }
            _ => {}
        }
        self.settle(py, client, starts);
        Some(st)
    }

    /// What becomes of a connection whose HTTP call ended while it still
    /// had the connection.
    fn http_call_ended(&self, client: &mut Client, st: &CycleState, end: &CallEnd) {
        if !st.response.started {
            if st.disconnected || matches!(end, CallEnd::Exiting) {
                client.conn.abandon();
            } else {
                // Gunicorn's answer when the app fails (or returns) before
                // it starts a response.
                let (status, reason) =
                    if st.timed_out { (504, "Gateway Timeout") } else { (500, "Internal Server Error") };
                client.conn.out.push(&crate::bridge::asgi::response::error_response(status, reason, &[]));
                client.conn.http.end();
            }
        } else if !st.response.complete {
            if !st.disconnected && matches!(end, CallEnd::Returned) {
                crate::log::error!("ASGI application returned without completing the response; closing the connection");
            }
            client.conn.abandon();
        } else {
            let reusable = st.response.reusable() && st.body_done() && !client.conn.edge.rdhup;
            client.conn.http.response_complete(reusable);
        }
    }

    /// The loop says our epoll fd is readable: handle everything ready.
    fn ready(&mut self, py: Python<'_>, starts: &mut Vec<TaskStart>) -> PyResult<()> {
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
                let (token, flags) = (ev.u64, ev.events);
                match Token::from_epoll(token) {
                    Token::Signals => {
                        self.wakeup.drain();
                        // Run the Python handlers now (QUIT raises SystemExit).
                        if let Err(e) = py.check_signals() {
                            result = Err(e);
                        }
                    }
                    Token::Listener(i) => self.accept(py, i),
                    Token::Conn(t) => self.on_event(py, t, flags, starts),
                    Token::Wake => self.h2_work.wake.drain(),
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
        self.h2_pending(py, starts);
        self.after_events(py, starts);
        Ok(())
    }

    /// Accepting follows the room left; a stop in progress may be over.
    fn after_events(&mut self, py: Python<'_>, starts: &mut Vec<TaskStart>) {
        if !signals::alive() && self.stop.is_running() {
            self.begin_stop(py, starts);
        }
        match self.stop {
            Stop::Running => {
                let now = Instant::now();
                let has_room = self.has_room();
                if let Err(e) = self.acceptor.follow(&self.epoll, self.clients.len(), has_room, now) {
                    crate::log::error!("listening failed: {e}");
                }
                if let Some(n) = self.acceptor.shed(self.clients.len(), now) {
                    self.shed_left = n;
                }
            }
            Stop::Draining { deadline } => {
                // Calls that run on after their response (background work)
                // are waited for too, as Gunicorn's worker does.
                if self.clients.is_empty() && self.cycles.len() == 0 {
                    self.finish(py);
                } else if Instant::now() >= deadline {
                    crate::log::warning!("Forcing close of {} connections", self.clients.len());
                    self.close_all(py);
                    self.finish(py);
                }
            }
            Stop::Done => {}
        }
    }

    /// TERM, max-requests, parent gone: stop accepting, close idle
    /// connections soon, answer requests in progress with Connection:
    /// close, close WebSockets with 1001, and wait for all of it up to
    /// `--graceful-timeout`.
    fn begin_stop(&mut self, py: Python<'_>, starts: &mut Vec<TaskStart>) {
        crate::log::info!("Worker shutting down...");
        self.stop.drain(&self.settings);
        let _ = self.acceptor.retire(&self.epoll);
        let mut websockets = Vec::new();
        let mut h2 = Vec::new();
        for (token, client) in self.clients.iter_mut() {
            match client.role {
                Role::WebSocket(_) => websockets.push(token),
                // Its session keeps its own timers while streams finish.
                Role::H2 => h2.push(token),
                _ => client.conn.timer.cap_for_stop(self.now),
            }
        }
        for token in websockets {
            if let Some(mut client) = self.take_client(token) {
                client.conn.timer.cap_for_stop(self.now);
                self.ws_going_away(&mut client);
                self.settle(py, client, starts);
            }
        }
        // Streams that came with the GOAWAY's last read are still served.
        for token in h2 {
            if let Some(mut client) = self.take_client(token) {
                self.shutdown_h2(&mut client);
                self.settle(py, client, starts);
            }
        }
    }

    fn close_all(&mut self, py: Python<'_>) {
        for token in self.clients.keys_where(|_| true) {
            if let Some(client) = self.take_client(token) {
                self.close(py, client);
            }
        }
        // Forced: no grace period for what still runs.
        self.cycles.cancel_all(py);
    }

    fn finish(&mut self, py: Python<'_>) {
        if self.stop == Stop::Done {
            return;
        }
        self.stop = Stop::Done;
        let _ = self.acceptor.retire(&self.epoll);
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
    fn timers(&mut self, py: Python<'_>, starts: &mut Vec<TaskStart>) {
        self.clock();
        let now = self.now;
        self.scoreboard.beat();
        if self.stop.due(self.ppid) {
            self.begin_stop(py, starts);
        }
        for token in self.clients.keys_where(|c| c.conn.timer.expired(now)) {
            let Some(mut client) = self.take_client(token) else { continue };
            if client.role == Role::H2 {
                match self.expire_h2(py, &mut client, starts) {
                    Disposition::Keep => self.clients.put(token, client),
                    Disposition::Close => self.close(py, client),
                }
            } else {
                self.close(py, client);
            }
        }
        for key in self.cycles.expired_waits(now) {
            self.receive_timed_out(py, key, starts);
        }
        self.cycles.cancel_due(py, now);
        self.cycles.time_out_due(py, now, &self.scoreboard);
    }

    /// The connection of `key` is gone: waiting calls learn it, and the
    /// call is cancelled after `--asgi-disconnect-grace-period`.
    pub(super) fn disconnected(&mut self, py: Python<'_>, key: CycleKey) {
        let grace = self.disconnect_grace;
        let Some(st) = self.cycles.get_mut(key) else { return };
        st.disconnected = true;
        let message = match &st.ws {
            Some(ws) => crate::bridge::asgi::messages::ws_disconnect(py, &self.scope.keys, ws.disconnect_code(), ""),
            None => crate::bridge::asgi::messages::http_disconnect(py, &self.scope.keys),
        };
        let had_waiters = st.has_waiter();
        if let Some(ws) = st.ws.as_mut() {
            ws.disconnect_delivered = had_waiters;
        }
        if let Ok(message) = message {
            st.answer_waiters(py, message.as_any());
        }
        if let Some(fut) = st.take_drain_waiter() {
            super::exec::resolve(py, &fut, py.None().into_bound(py));
        }
        if st.task_running(py) {
            if grace.is_zero() {
                st.cancel(py);
            } else {
                st.cancel_at = Some(Instant::now() + grace);
            }
        }
    }
}

/// What a request says about becoming a WebSocket.
enum Upgrade {
    No,
    Yes(crate::ws::handshake::Upgrade),
    Refused(crate::ws::handshake::HandshakeError),
}

fn websocket_upgrade(head: &RequestHead) -> Upgrade {
    let headers: Vec<(&str, &[u8])> = head.headers.iter().map(|h| (h.name.as_str(), h.value.as_slice())).collect();
    if !crate::ws::handshake::is_upgrade(&head.method, &headers) {
        return Upgrade::No;
    }
    match crate::ws::handshake::validate(&head.method, head.version, &headers) {
        Ok(up) => Upgrade::Yes(up),
        Err(e) => Upgrade::Refused(e),
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
            call_soon: loop_.getattr("call_soon")?.unbind(),
            create_task: loop_.getattr("create_task")?.unbind(),
            done: done.unbind(),
            state: state.unbind(),
        });
        self.acceptor.watch(&self.epoll, true)?;
        Ok(())
    }

    fn on_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut starts = Vec::new();
        let result = slf.borrow_mut().ready(py, &mut starts);
        run_starts(py, slf, starts);
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
            s.after_events(py, &mut starts);
            s.stop != Stop::Done
        };
        run_starts(py, slf, starts);
        running
    }

    /// Drives the HTTP/2 connections whose streams have work: called by the
    /// loop once the round of tasks that queued it has run.
    fn flush_h2(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let mut starts = Vec::new();
        {
            let mut s = slf.borrow_mut();
            s.h2_flush_scheduled = false;
            s.clock();
            s.h2_pending(py, &mut starts);
        }
        run_starts(py, slf, starts);
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
