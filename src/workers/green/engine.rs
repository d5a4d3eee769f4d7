//! The green worker's engine: one epoll instance owns the listeners and
//! every connection, and the hub of the green library watches its fd (a
//! gevent io watcher, an eventlet hub listener) instead of the engine
//! polling it. When it is readable the hub calls [`GreenServer::on_ready`],
//! which accepts, reads, parses and validates requests in Rust
//! (`core::conn`) and spawns one greenlet per request; a timer on the hub
//! calls [`GreenServer::tick`] for the heartbeat, deadlines and the stop.
//!
//! While a greenlet runs a request it owns the connection (taken out of its
//! slot, which stays reserved); it hands it back when the response is done
//! and the engine moves it on (`core::conn::Conn::progress`), so keep-alive
//! and pipelining work as in the gthread worker. Connections are registered
//! once, edge-triggered; an edge that comes while a greenlet has the
//! connection is noted and acted on when it comes back.
//!
//! The engine never calls Python while it is borrowed: requests to spawn
//! and due signal handlers are collected and run after, so a handler or a
//! hook that switches greenlets never finds the server borrowed.

use super::exec::{Job, Runners};
use super::h2::{H2Work, Parking, StreamStart, Woken};
use super::io::HubWaits;
use crate::http::conn::Wait;
use crate::http::date::DateCache;
use crate::http::policy::HttpPolicy;
use crate::http2::session::Drive;
use crate::http2::stream::Notify;
use crate::http2::H2Serving;
use crate::net::epoll::{Epoll, Event, READABLE};
use crate::net::listener::Listener;
use crate::net::proxy_protocol::ProxyInfo;
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use crate::workers::core::accept::{Accepted, Acceptor, Token};
use crate::workers::core::conn::{longest_head_wait, BufferPool, Conn, Deadlines, Inbound, Progress, EDGE_EVENTS};
use crate::workers::core::life::{beat_interval, RequestBudget, Stop};
use crate::workers::core::signals::Wakeup;
use crate::workers::core::slab::{ConnToken, Slab};
use pyo3::prelude::*;
use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the engine and the request greenlets share (one thread, so `Rc`;
/// nothing in it is borrowed across a greenlet switch).
pub struct Shared {
    pub settings: Arc<Settings>,
    pub policy: HttpPolicy,
    pub listeners: Vec<Listener>,
    pub slot: SlotHandle,
    pub budget: RequestBudget,
    pub runners: Runners,
    pub date: RefCell<DateCache>,
    /// By connection slot: the PROXY protocol header the connection began
    /// with. Gunicorn's async workers apply it to every request of the
    /// connection, not only the first.
    pub proxies: RefCell<Vec<Option<ProxyInfo>>>,
    /// The hub's calls, given at `start`.
    pub hub: OnceCell<HubRefs>,
    /// Keep-alive responses still to close, for their clients to connect
    /// to a sibling (see `Acceptor::shed`).
    pub shed: Cell<usize>,
    /// How long an HTTP/2 response waits for a client that gives it no
    /// window.
    pub h2_stall: Duration,
}

/// The green library's calls the engine and the greenlets make.
pub struct HubRefs {
    /// `spawn()`: a new request greenlet, started by the hub; it takes jobs
    /// with [`GreenServer::next_job`] until none is left for it.
    pub spawn: Py<PyAny>,
    /// `wake(g)`: the hub calls `g.switch()`, for a request greenlet
    /// parked between jobs or an HTTP/2 stream's `Resume`.
    pub wake: Py<PyAny>,
    pub waits: HubWaits,
    /// Greenlets parked on HTTP/2 streams.
    pub parking: Arc<Parking>,
}

/// Request greenlets kept parked between requests at most. A greenlet is
/// reused rather than made per request: a new one costs a fresh Python
/// frame stack (an mmap and a munmap), a fifth of a hello-world request's
/// CPU when measured.
const MAX_PARKED: usize = 256;

/// What [`GreenServer::next_job`] tells a request greenlet.
enum Next {
    Job(Start),
    /// Nothing to do: park until woken.
    Park,
    /// Nothing to do and enough greenlets are parked: end.
    End,
}

/// A request the engine produced, for a greenlet.
pub enum Start {
    /// An HTTP/1 request, with its connection (reserved, taken out).
    Http1 { conn: Box<Conn>, inbound: Inbound },
    /// An HTTP/2 stream; its connection stays with the engine.
    Stream(Box<StreamStart>),
}

#[pyclass(module = "ferrocorn._ferrocorn", unsendable)]
pub struct GreenServer {
    epoll: Epoll,
    /// A connection is taken out of its slot while a greenlet has it.
    conns: Slab<ConnToken, Box<Conn>>,
    /// By slot index: an edge came while a greenlet had the connection.
    missed: Vec<bool>,
    max_conns: usize,
    acceptor: Acceptor,
    limits: Deadlines,
    beat_every: Duration,
    wakeup: Wakeup,
    stop: Stop,
    ppid: i32,
    events: Vec<Event>,
    buffers: BufferPool,
    /// Requests for the request greenlets, in arrival order.
    queue: std::collections::VecDeque<Start>,
    /// Request greenlets parked on the hub, waiting for a job.
    parked: Vec<Py<PyAny>>,
    /// Requests made since the last dispatch, for greenlets.
    starts: Vec<Start>,
    /// Greenlets parked on HTTP/2 streams that are due to run (resumed
    /// once the server is no longer borrowed).
    to_wake: Vec<Woken>,
    h2: Option<H2Serving>,
    h2_work: Arc<H2Work>,
    pub(super) shared: Rc<Shared>,
}

impl GreenServer {
    pub fn new(
        py: Python<'_>,
        ctx: &crate::workers::WorkerCtx,
        app: Py<PyAny>,
        policy: HttpPolicy,
        wakeup: Wakeup,
    ) -> PyResult<GreenServer> {
        let s = ctx.settings.clone();
        let epoll = Epoll::new()?;
        epoll.add(wakeup.read_fd, READABLE, Token::Signals.to_epoll())?;
        let runners = Runners::new(py, app, &s, ctx.slot.clone())?;
        let h2 = H2Serving::from_settings(&s, ctx.tls.is_some());
        let h2_work = Arc::new(H2Work::new()?);
        epoll.add(h2_work.wake.fd(), READABLE, Token::Wake.to_epoll())?;
        let shared = Rc::new(Shared {
            policy,
            listeners: ctx.listeners.clone(),
            slot: ctx.slot.clone(),
            budget: RequestBudget::new(ctx.max_requests),
            runners,
            date: RefCell::new(DateCache::new()),
            proxies: RefCell::new(Vec::new()),
            hub: OnceCell::new(),
            shed: Cell::new(0),
            h2_stall: h2.as_ref().map_or(crate::bridge::wsgi::h2::DEFAULT_BODY_WAIT, |h2| h2.config.stall),
            settings: s.clone(),
        });
        Ok(GreenServer {
            epoll,
            conns: Slab::default(),
            missed: Vec::new(),
            max_conns: s.worker_connections.max(1),
            // The hub's timer beats every `tick_interval` (0.2 s at most),
            // often enough for siblings to see this worker as fresh.
            acceptor: Acceptor::new(ctx.listeners.clone(), ctx.tls.clone()).sharing(ctx.slot.clone(), &s),
            limits: Deadlines::from_settings(&s),
            beat_every: beat_interval(&s),
            wakeup,
            stop: Stop::Running,
            ppid: ctx.ppid,
            events: Vec::with_capacity(256),
            buffers: BufferPool::default(),
            queue: std::collections::VecDeque::new(),
            parked: Vec::new(),
            starts: Vec::new(),
            to_wake: Vec::new(),
            h2,
            h2_work,
            shared,
        })
    }

    /// Handles everything ready. Returns whether signal handlers are due.
    fn ready(&mut self) -> PyResult<bool> {
        let mut signals_due = false;
        let mut events = std::mem::take(&mut self.events);
        loop {
            let n = match self.epoll.wait(&mut events, Some(Duration::ZERO)) {
                Ok(n) => n,
                Err(e) => {
                    self.events = events;
                    return Err(e.into());
                }
            };
            for ev in events.iter() {
                match Token::from_epoll(ev.u64) {
                    Token::Signals => {
                        self.wakeup.drain();
                        signals_due = true;
                    }
                    Token::Listener(i) => self.accept(i),
                    Token::Conn(t) => self.on_event(t, ev.events),
                    Token::Wake => self.take_h2_work(),
                }
            }
            if n < events.capacity() {
                break;
            }
        }
        self.events = events;
        self.after_events();
        Ok(signals_due)
    }

    /// Room for a new connection: below `--worker-connections`, or a
    /// connection waiting for a request head that can make room (one a
    /// greenlet has is never one of those: it is out of its slot).
    fn has_room(&self) -> bool {
        self.conns.len() < self.max_conns || self.longest_head_wait().is_some()
    }

    fn longest_head_wait(&self) -> Option<ConnToken> {
        longest_head_wait(self.conns.iter().map(|(_, c)| &**c))
    }

    fn accept(&mut self, index: usize) {
        if !self.acceptor.is_watching() {
            return;
        }
        let mut share_left = self.acceptor.share_left(self.conns.len());
        while self.has_room() && share_left > 0 {
            share_left -= 1;
            let (stream, peer) = match self.acceptor.accept(&self.epoll, index) {
                Accepted::Conn(stream, peer) => (stream, peer),
                Accepted::None | Accepted::Exhausted => return,
            };
            if self.conns.len() >= self.max_conns {
                // Full: the connection that has waited longest for a
                // request head makes room for the new client.
                if let Some(conn) = self.longest_head_wait().and_then(|t| self.conns.take(t)) {
                    crate::log::debug!("Worker full: closing the connection waiting longest for a request head");
                    self.close(conn);
                }
            }
            let token = self.conns.reserve();
            if self.missed.len() <= token.index() {
                self.missed.resize(token.index() + 1, false);
            }
            // A slot is reused: nothing noted for its last connection holds.
            self.missed[token.index()] = false;
            {
                let mut proxies = self.shared.proxies.borrow_mut();
                if proxies.len() <= token.index() {
                    proxies.resize(token.index() + 1, None);
                }
                proxies[token.index()] = None;
            }
            let mut conn = Conn::new(stream, peer, index, token, self.shared.policy.proxy_protocol);
            if let Some(h2) = &self.h2 {
                conn.offer_h2(h2.offer(&self.shared.policy, peer.ip()));
            }
            conn.follow_timer(Instant::now(), &self.limits, false);
            // Registered once, edge-triggered: the first edge (the request
            // may already be here) comes from this add.
            if self.epoll.add(conn.fd(), EDGE_EVENTS, Token::Conn(token).to_epoll()).is_err() {
                self.conns.remove(token);
                continue;
            }
            self.conns.put(token, Box::new(conn));
        }
    }

    fn on_event(&mut self, token: ConnToken, flags: u32) {
        let Some(mut conn) = self.conns.take(token) else {
            if self.conns.is_taken(token) {
                // A greenlet has it: acted on when it comes back.
                if let Some(m) = self.missed.get_mut(token.index()) {
                    *m = true;
                }
            }
            return;
        };
        conn.edge.note(flags);
        if let Some(session) = conn.h2.as_ref() {
            session.note_event(flags);
        }
        self.settle_later(conn);
    }

    /// Moves a connection the engine holds as far as it goes; an HTTP/1
    /// request comes back with its connection (which stays reserved, taken
    /// out). An HTTP/2 connection's streams go to `starts`.
    pub(super) fn settle(&mut self, mut conn: Box<Conn>) -> Option<Start> {
        if conn.h2.is_some() {
            self.drive_h2(conn);
            return None;
        }
        match conn.progress(&self.shared.policy, &mut self.buffers) {
            Progress::Dispatch(inbound) => {
                // The app's time now, not the client's.
                conn.timer = Default::default();
                Some(Start::Http1 { conn, inbound })
            }
            Progress::Http2 => {
                let Some(h2) = &self.h2 else {
                    self.close(conn);
                    return None;
                };
                let tag = Token::Conn(conn.token).to_epoll();
                let notify: Arc<dyn Notify> = self.h2_work.clone();
                conn.start_h2(h2.config.clone(), tag, notify);
                conn.timer = Default::default();
                self.drive_h2(conn);
                None
            }
            Progress::Keep => {
                conn.follow_timer(Instant::now(), &self.limits, !self.stop.is_running());
                if conn.http.waiting_for() == Wait::KeepAlive && conn.out.is_empty() {
                    // A kept-alive connection costs no buffer memory.
                    self.buffers.reclaim(&mut conn);
                }
                self.conns.put(conn.token, conn);
                None
            }
            Progress::Close => {
                self.close(conn);
                None
            }
        }
    }

    /// Moves an HTTP/2 connection: its socket, its streams' output, new
    /// streams (for greenlets, the connection staying here).
    fn drive_h2(&mut self, mut conn: Box<Conn>) {
        let Some(session) = conn.h2.as_mut() else { return self.close(conn) };
        let mut drive = Drive::default();
        session.drive(&self.shared.policy, conn.peer.ip(), Instant::now(), &mut drive);
        self.h2_outcome(conn, drive);
    }

    fn h2_outcome(&mut self, mut conn: Box<Conn>, drive: Drive) {
        let tag = Token::Conn(conn.token).to_epoll();
        let proxy = conn.http.proxy().cloned();
        for new in drive.streams {
            self.starts.push(Start::Stream(Box::new(StreamStart {
                stream: new.shared,
                head: new.head,
                tag,
                peer: conn.peer,
                listener: conn.listener,
                proxy: proxy.clone(),
                socket: conn.stream.clone(),
            })));
        }
        if let Some(hub) = self.shared.hub.get() {
            hub.parking.touched(tag, &drive.touched, &mut self.to_wake);
        }
        let Some(session) = conn.h2.as_ref() else { return self.close(conn) };
        if drive.closed {
            return self.close(conn);
        }
        conn.timer.deadline = session.next_deadline();
        if drive.again {
            // Back on the hub's next turn, through the eventfd.
            self.h2_work.stream_has_work(tag);
        }
        self.conns.put(conn.token, conn);
    }

    /// HTTP/2 connections whose streams asked for the engine.
    fn take_h2_work(&mut self) {
        for tag in self.h2_work.take() {
            if let Token::Conn(token) = Token::from_epoll(tag) {
                // A connection a greenlet has is HTTP/1: none of these.
                if let Some(conn) = self.conns.take(token) {
                    self.settle_later(conn);
                }
            }
        }
    }

    /// `settle`, for a connection no greenlet is waiting on: a request it
    /// yields goes to `starts`, for the next dispatch.
    fn settle_later(&mut self, conn: Box<Conn>) {
        if let Some(start) = self.settle(conn) {
            self.starts.push(start);
        }
    }

    /// A greenlet is done with a connection: the engine moves it on. Some:
    /// a pipelined request for the same greenlet.
    pub(super) fn give_back(&mut self, mut conn: Box<Conn>) -> Option<Start> {
        if let Some(m) = self.missed.get_mut(conn.token.index()) {
            if std::mem::replace(m, false) {
                conn.edge.assume_ready();
            }
        }
        let start = self.settle(conn);
        if start.is_none() {
            self.after_events();
        }
        start
    }

    fn close(&mut self, conn: Box<Conn>) {
        let _ = self.epoll.delete(conn.fd());
        let token = conn.token;
        drop(conn);
        self.conns.remove(token);
    }

    /// Accepting follows the room left; a stop in progress may be over.
    fn after_events(&mut self) {
        if self.stop.due(self.ppid) {
            self.begin_stop();
        }
        match self.stop {
            Stop::Running => {
                // Out of descriptors: not watched again until the pause is
                // over (the hub's timer comes back within `tick_interval`).
                let has_room = self.has_room();
                let now = Instant::now();
                if let Err(e) = self.acceptor.follow(&self.epoll, self.conns.len(), has_room, now) {
                    crate::log::error!("listening failed: {e}");
                }
                if let Some(n) = self.acceptor.shed(self.conns.len(), now) {
                    self.shared.shed.set(n);
                }
            }
            Stop::Draining { deadline } => {
                if self.conns.is_empty() {
                    self.stop = Stop::Done;
                } else if Instant::now() >= deadline {
                    // Gunicorn's gevent worker kills what still runs then.
                    crate::log::warning!("Worker graceful timeout (pid:{})", std::process::id());
                    self.close_all();
                    self.stop = Stop::Done;
                }
            }
            Stop::Done => {}
        }
    }

    /// TERM, max-requests, parent gone: stop accepting, close idle
    /// connections soon (a request already on its way is still answered,
    /// with Connection: close), let requests in progress finish until
    /// `--graceful-timeout`.
    fn begin_stop(&mut self) {
        self.stop.drain(&self.shared.settings);
        let _ = self.acceptor.retire(&self.epoll);
        let now = Instant::now();
        let mut h2 = Vec::new();
        for (token, conn) in self.conns.iter_mut() {
            conn.timer.cap_for_stop(now);
            if let Some(session) = conn.h2.as_mut() {
                // GOAWAY: the streams in flight finish, no new ones.
                session.shutdown();
                h2.push(token);
            }
        }
        // Streams that came with the GOAWAY's last read are still served.
        for token in h2 {
            if let Some(conn) = self.conns.take(token) {
                self.drive_h2(conn);
            }
        }
    }

    fn close_all(&mut self) {
        for token in self.conns.keys_where(|_| true) {
            if let Some(conn) = self.conns.take(token) {
                self.close(conn);
            }
        }
    }

    /// Heartbeat, keep-alive/drain/linger deadlines, the stop.
    fn timers(&mut self) {
        self.shared.slot.beat();
        let now = Instant::now();
        for token in self.conns.keys_where(|c| c.timer.expired(now)) {
            let Some(mut conn) = self.conns.take(token) else { continue };
            // An HTTP/2 connection's timers are its session's (idle,
            // handshake, stalled streams).
            if let Some(session) = conn.h2.as_mut() {
                let mut drive = Drive::default();
                session.expire_and_drive(&self.shared.policy, conn.peer.ip(), now, &mut drive);
                self.h2_outcome(conn, drive);
            } else {
                self.close(conn);
            }
        }
        if let Some(hub) = self.shared.hub.get() {
            hub.parking.expired(now, &mut self.to_wake);
        }
        self.after_events();
    }
}

/// Gets a greenlet going for each request the engine made (a parked one
/// woken, or a new one), and wakes the greenlets whose HTTP/2 stream
/// moved. Called once the server is no longer borrowed: the hub's calls
/// run Python.
pub(super) fn dispatch(py: Python<'_>, server: &Bound<'_, GreenServer>) {
    let (shared, woken, spawns, to_wake) = {
        let mut s = server.borrow_mut();
        if s.starts.is_empty() && s.to_wake.is_empty() {
            return;
        }
        let starts = std::mem::take(&mut s.starts);
        let n = starts.len();
        s.queue.extend(starts);
        let keep = s.parked.len().saturating_sub(n);
        let woken = s.parked.split_off(keep);
        let spawns = n - woken.len();
        (s.shared.clone(), woken, spawns, std::mem::take(&mut s.to_wake))
    };
    let Some(hub) = shared.hub.get() else { return };
    let resumes = to_wake.into_iter().map(|w| Bound::new(py, hub.parking.resume(w)).map(Bound::into_any));
    for g in woken.into_iter().map(|g| Ok(g.into_bound(py))).chain(resumes) {
        if let Err(e) = g.and_then(|g| hub.wake.bind(py).call1((g,))) {
            crate::log::error!("Error handling request\n{}", crate::python::format_exception(py, &e));
        }
    }
    for _ in 0..spawns {
        if let Err(e) = hub.spawn.bind(py).call0() {
            crate::log::error!("Error handling request\n{}", crate::python::format_exception(py, &e));
        }
    }
}

#[pymethods]
impl GreenServer {
    /// The epoll fd the hub watches.
    fn fileno(&self) -> i32 {
        self.epoll.fd()
    }

    /// Starts serving with the hub's calls: `spawn()` starts a request
    /// greenlet, `wake(g)` has the hub call `g.switch()` (a parked
    /// greenlet, or an HTTP/2 stream's `Resume`),
    /// `wait_read(fd)`/`wait_write(fd)` park one on a socket, `current()`
    /// is the calling greenlet, and `switch()` parks it on the hub until
    /// `wake` is called for it (an HTTP/2 stream's wait).
    fn start(
        &mut self,
        spawn: Py<PyAny>,
        wake: Py<PyAny>,
        wait_read: Py<PyAny>,
        wait_write: Py<PyAny>,
        current: Py<PyAny>,
        switch: Py<PyAny>,
    ) -> PyResult<()> {
        let refs = HubRefs {
            spawn,
            wake,
            waits: HubWaits { read: wait_read, write: wait_write },
            parking: Arc::new(Parking::new(current, switch)),
        };
        if self.shared.hub.set(refs).is_err() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err("the server is already started"));
        }
        self.acceptor.watch(&self.epoll, true)?;
        Ok(())
    }

    /// The hub says the epoll fd is readable.
    fn on_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let result = slf.borrow_mut().ready();
        dispatch(py, slf);
        if result? {
            // Python's handlers (QUIT may raise SystemExit, which the hub
            // hands to the main greenlet).
            py.check_signals()?;
        }
        Ok(())
    }

    /// Called by the hub's timer a few times a second; false once the
    /// server has stopped.
    fn tick(slf: &Bound<'_, Self>) -> bool {
        let running = {
            let mut s = slf.borrow_mut();
            s.timers();
            s.stop != Stop::Done
        };
        dispatch(slf.py(), slf);
        running
    }

    /// How often the hub's timer must call `tick`, in seconds.
    fn tick_interval(&self) -> f64 {
        (self.beat_every.as_secs_f64() / 2.0).min(0.2)
    }

    /// The next request for the calling request greenlet (`me`): a `Job`
    /// to run, True to park on the hub until woken, False to end.
    fn next_job(slf: &Bound<'_, Self>, me: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let next = {
            let mut s = slf.borrow_mut();
            match s.queue.pop_front() {
                Some(start) => Next::Job(start),
                None if s.parked.len() < MAX_PARKED && s.stop != Stop::Done => {
                    s.parked.push(me);
                    Next::Park
                }
                None => Next::End,
            }
        };
        match next {
            Next::Job(start) => {
                let shared = slf.borrow().shared.clone();
                Ok(Bound::new(py, Job::new(slf.clone().unbind(), shared, start))?.into_any().unbind())
            }
            Next::Park => Ok(true.into_pyobject(py)?.to_owned().into_any().unbind()),
            Next::End => Ok(false.into_pyobject(py)?.to_owned().into_any().unbind()),
        }
    }

    /// Connections open (including those a greenlet has).
    fn connections(&self) -> usize {
        self.conns.len()
    }
}
