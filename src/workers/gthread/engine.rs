//! The gthread worker's engine: one epoll instance owns every connection.
//! It accepts (up to `--worker-connections`), moves connections along
//! (`core::conn`: reading, parsing, reading bodies ahead, sending what
//! finished responses left, draining, lingering), enforces deadlines and
//! beats the heartbeat, and produces complete requests for the threads. It
//! is turned by the worker's main thread, or by the substitute thread while
//! the main thread is busy in a slow request (see `mod.rs`), one turn (one
//! epoll wait) at a time.

use super::{Job, Shared, StreamJob};
use crate::http::conn::Wait;
use crate::http2::session::Drive;
use crate::http2::stream::Notify;
use crate::net::epoll::{Event, READABLE};
use crate::workers::core::accept::{Accepted, Acceptor, Token, SHARE_BEAT};
use crate::workers::core::conn::{longest_head_wait, BufferPool, Conn, Deadlines, Progress, EDGE_EVENTS};
use crate::workers::core::life::{beat_interval, Stop};
use crate::workers::core::signals::{self, Wakeup};
use crate::workers::core::slab::{ConnToken, Slab};
use pyo3::prelude::*;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMER_EVERY: Duration = Duration::from_millis(200);

/// Who turns the engine: the main thread can run Python signal handlers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Main,
    Substitute,
}

pub enum Turn {
    Continue,
    /// The worker is done (graceful stop complete, or a fast exit).
    Finished,
}

pub struct Engine {
    /// A connection is taken out of its slot while a Python thread has it.
    conns: Slab<ConnToken, Box<Conn>>,
    /// By slot index: the connection counts toward Gunicorn's keep-alive
    /// limit.
    idle: Vec<bool>,
    max_conns: usize,
    acceptor: Acceptor,
    limits: Deadlines,
    beat_every: Duration,
    wakeup: Wakeup,
    stop: Stop,
    next_timers: Instant,
    events: Vec<Event>,
    buffers: BufferPool,
    /// Handed to HTTP/2 streams: wakes this engine for them.
    notify: Arc<dyn Notify>,
}

impl Engine {
    pub fn new(shared: &Shared, wakeup: Wakeup, notify: Arc<dyn Notify>) -> io::Result<Engine> {
        shared.epoll.add(shared.wake.fd(), READABLE, Token::Wake.to_epoll())?;
        shared.epoll.add(wakeup.read_fd, READABLE, Token::Signals.to_epoll())?;
        let s = &shared.settings;
        let mut engine = Engine {
            conns: Slab::default(),
            idle: Vec::new(),
            max_conns: s.worker_connections.max(1),
            acceptor: Acceptor::new(shared.listeners.clone(), shared.tls.clone()).sharing(shared.slot.clone(), s),
            limits: Deadlines::from_settings(s),
            // Siblings compare with this worker only while it beats.
            beat_every: beat_interval(s).min(SHARE_BEAT),
            wakeup,
            stop: Stop::Running,
            next_timers: Instant::now() + TIMER_EVERY,
            events: Vec::with_capacity(256),
            buffers: BufferPool::default(),
            notify,
        };
        engine.acceptor.watch(&shared.epoll, true)?;
        Ok(engine)
    }

    /// One turn: waits for events (at most until the next timer or
    /// heartbeat), handles them and leaves complete requests in `jobs`.
    /// Err when a signal handler raised (QUIT, INT, ABRT: a fast exit).
    /// `max_wait` caps how long to wait for events (zero: requests are
    /// already waiting to be run).
    pub fn turn(
        &mut self,
        shared: &Shared,
        mode: Mode,
        jobs: &mut Vec<Job>,
        max_wait: Option<Duration>,
    ) -> PyResult<Turn> {
        shared.slot.beat();
        // Connections threads handed back without a wake: settle them
        // (keep-alive deadlines) on every turn.
        self.take_returned(shared, jobs);
        let mut wait = self.next_timers.saturating_duration_since(Instant::now()).min(self.beat_every);
        if let Some(cap) = max_wait {
            wait = wait.min(cap);
        }
        let mut events = std::mem::take(&mut self.events);
        let waited = shared.epoll.wait(&mut events, Some(wait));
        let mut result = waited.map(|_| ()).map_err(PyErr::from);
        for ev in events.iter() {
            if result.is_err() {
                break;
            }
            let (token, flags) = (ev.u64, ev.events);
            match Token::from_epoll(token) {
                Token::Wake => {
                    // A write can land after the flag was cleared: the
                    // event is the proof, drain it whatever the flag says.
                    shared.wake.drain();
                    self.take_returned(shared, jobs)
                }
                Token::Signals => result = self.signals(mode),
                Token::Listener(i) => self.accept(shared, i),
                Token::Conn(t) => self.on_event(shared, t, flags, jobs),
            }
        }
        self.events = events;
        result?;
        if signals::fast_exit() {
            self.close_all(shared);
            return Ok(Turn::Finished);
        }
        let now = Instant::now();
        if now >= self.next_timers {
            self.expire(shared, now, jobs);
            self.next_timers = now + TIMER_EVERY;
        }
        if self.stop.due(shared.ppid) {
            self.begin_stop(shared);
        }
        match self.stop {
            Stop::Draining { deadline } => {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    self.close_all(shared);
                    self.stop = Stop::Done;
                    return Ok(Turn::Finished);
                }
            }
            Stop::Done => return Ok(Turn::Finished),
            Stop::Running => {
                let has_room = self.has_room();
                self.acceptor.follow(&shared.epoll, self.conns.len(), has_room, now).map_err(PyErr::from)?;
                if let Some(n) = self.acceptor.shed(self.conns.len(), now) {
                    shared.shed.store(n, Ordering::Relaxed);
                }
            }
        }
        Ok(Turn::Continue)
    }

    /// The wakeup pipe says a signal arrived. The main thread runs the
    /// Python handlers; a substitute leaves them to the main thread, whose
    /// interpreter runs them in the app code it is busy with.
    fn signals(&mut self, mode: Mode) -> PyResult<()> {
        self.wakeup.drain();
        match mode {
            Mode::Main => Python::attach(|py| py.check_signals()),
            Mode::Substitute => Ok(()),
        }
    }

    /// TERM, max-requests, parent gone: stop accepting, let requests in
    /// progress finish (answered with Connection: close), keep idle
    /// connections a short while for requests already on their way.
    fn begin_stop(&mut self, shared: &Shared) {
        self.stop.drain(&shared.settings);
        let _ = self.acceptor.retire(&shared.epoll);
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
        let mut jobs = Vec::new();
        for token in h2 {
            if let Some(conn) = self.conns.take(token) {
                self.drive_h2(shared, conn, &mut jobs);
            }
        }
        // Streams that came with the GOAWAY's last read are still served.
        shared.queue.push_all(jobs);
    }

    /// Room for a new connection: below `--worker-connections`, or a
    /// connection waiting for a request head that can make room.
    fn has_room(&self) -> bool {
        self.conns.len() < self.max_conns || self.longest_head_wait().is_some()
    }

    fn longest_head_wait(&self) -> Option<ConnToken> {
        longest_head_wait(self.conns.iter().map(|(_, c)| &**c))
    }

    fn accept(&mut self, shared: &Shared, index: usize) {
        if !self.acceptor.is_watching() {
            return;
        }
        // Past its share the worker leaves what is queued to its siblings,
        // which were woken for it too.
        let mut share_left = self.acceptor.share_left(self.conns.len());
        while self.has_room() && share_left > 0 {
            share_left -= 1;
            let (stream, peer) = match self.acceptor.accept(&shared.epoll, index) {
                Accepted::Conn(stream, peer) => (stream, peer),
                Accepted::None | Accepted::Exhausted => return,
            };
            if self.conns.len() >= self.max_conns {
                // Full: the connection that has waited longest for a
                // request head makes room for the new client.
                if let Some(conn) = self.longest_head_wait().and_then(|t| self.conns.take(t)) {
                    crate::log::debug!("Worker full: closing the connection waiting longest for a request head");
                    self.close(shared, conn);
                }
            }
            let token = self.conns.reserve();
            if self.idle.len() <= token.index() {
                self.idle.resize(token.index() + 1, false);
            }
            let mut conn = Conn::new(stream, peer, index, token, shared.policy.proxy_protocol);
            if let Some(h2) = &shared.h2 {
                conn.offer_h2(h2.offer(&shared.policy, peer.ip()));
            }
            conn.follow_timer(Instant::now(), &self.limits, false);
            // Registered once, edge-triggered: the first edge (the request
            // may already be here) comes from this add.
            if shared.epoll.add(conn.fd(), EDGE_EVENTS, Token::Conn(token).to_epoll()).is_err() {
                self.conns.remove(token);
                continue;
            }
            self.conns.put(token, Box::new(conn));
        }
    }

    /// The connection of `token` no longer counts as kept alive.
    fn not_idle(&mut self, shared: &Shared, token: ConnToken) {
        if let Some(idle) = self.idle.get_mut(token.index()) {
            if std::mem::replace(idle, false) {
                shared.idle.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn on_event(&mut self, shared: &Shared, token: ConnToken, flags: u32, jobs: &mut Vec<Job>) {
        let Some(mut conn) = self.conns.take(token) else {
            if self.conns.is_taken(token) {
                // The edge came while a thread has the connection (or has
                // just handed it back): note it; whoever comes second acts.
                shared.missed[token.index()].store(true, Ordering::SeqCst);
                self.take_returned(shared, jobs);
            }
            return;
        };
        self.not_idle(shared, token);
        conn.edge.note(flags);
        if let Some(session) = conn.h2.as_ref() {
            session.note_event(flags);
        }
        self.settle(shared, conn, jobs);
    }

    /// Moves a connection the engine holds as far as it goes; a request
    /// goes to the threads with its connection.
    fn settle(&mut self, shared: &Shared, mut conn: Box<Conn>, jobs: &mut Vec<Job>) {
        if conn.h2.is_some() {
            return self.drive_h2(shared, conn, jobs);
        }
        match conn.progress(&shared.policy, &mut self.buffers) {
            Progress::Dispatch(inbound) => {
                // The slot stays reserved (and counted) while a thread has
                // the connection.
                conn.timer = Default::default();
                jobs.push(Job::Http1 { conn, inbound });
            }
            Progress::Http2 => {
                let Some(h2) = &shared.h2 else { return self.close(shared, conn) };
                let tag = Token::Conn(conn.token).to_epoll();
                conn.start_h2(h2.config.clone(), tag, self.notify.clone());
                conn.timer = Default::default();
                self.drive_h2(shared, conn, jobs);
            }
            Progress::Keep => {
                let now = Instant::now();
                conn.follow_timer(now, &self.limits, !self.stop.is_running());
                if conn.http.waiting_for() == Wait::KeepAlive && conn.out.is_empty() {
                    self.mark_idle(shared, &mut conn);
                }
                self.conns.put(conn.token, conn);
            }
            Progress::Close => self.close(shared, conn),
        }
    }

    /// Moves an HTTP/2 connection: its socket, its streams' output, new
    /// streams (jobs for the threads, the connection staying here).
    fn drive_h2(&mut self, shared: &Shared, mut conn: Box<Conn>, jobs: &mut Vec<Job>) {
        let now = Instant::now();
        let Some(session) = conn.h2.as_mut() else { return self.close(shared, conn) };
        let mut drive = Drive::default();
        session.drive(&shared.policy, conn.peer.ip(), now, &mut drive);
        self.h2_outcome(shared, conn, drive, jobs);
    }

    fn h2_outcome(&mut self, shared: &Shared, mut conn: Box<Conn>, drive: Drive, jobs: &mut Vec<Job>) {
        let proxy = conn.http.proxy().cloned();
        for new in drive.streams {
            jobs.push(Job::Stream(Box::new(StreamJob {
                stream: new.shared,
                head: new.head,
                peer: conn.peer,
                listener: conn.listener,
                proxy: proxy.clone(),
                socket: conn.stream.clone(),
            })));
        }
        let Some(session) = conn.h2.as_ref() else { return self.close(shared, conn) };
        if drive.closed {
            return self.close(shared, conn);
        }
        conn.timer.deadline = session.next_deadline();
        if drive.again {
            shared.lock_h2_work().push(Token::Conn(conn.token).to_epoll());
            shared.wake_engine();
        }
        self.conns.put(conn.token, conn);
    }

    /// HTTP/2 connections whose streams asked for the engine.
    fn take_h2_work(&mut self, shared: &Shared, jobs: &mut Vec<Job>) {
        let mut work = std::mem::take(&mut *shared.lock_h2_work());
        work.sort_unstable();
        work.dedup();
        for tag in work {
            if let Token::Conn(token) = Token::from_epoll(tag) {
                if let Some(conn) = self.conns.take(token) {
                    self.settle(shared, conn, jobs);
                }
            }
        }
    }

    fn close(&mut self, shared: &Shared, conn: Box<Conn>) {
        let _ = shared.epoll.delete(conn.fd());
        let token = conn.token;
        drop(conn);
        self.conns.remove(token);
        self.not_idle(shared, token);
    }

    /// Connections the Python threads are done with. An edge that came
    /// while a thread had one may have been missed: it is then read and
    /// written once to find out.
    fn take_returned(&mut self, shared: &Shared, jobs: &mut Vec<Job>) {
        // The eventfd is read only when a wake was sent: most turns have
        // none, and an empty read is a wasted syscall (the Wake event
        // drains it in any case).
        if shared.wake_pending.swap(false, Ordering::SeqCst) {
            shared.wake.drain();
        }
        let returned = std::mem::take(&mut *shared.lock_returned());
        for mut conn in returned {
            if shared.missed[conn.token.index()].swap(false, Ordering::SeqCst) {
                conn.edge.assume_ready();
            }
            self.settle(shared, conn, jobs);
        }
        self.take_h2_work(shared, jobs);
    }

    /// A kept-alive connection waiting for its next request: it counts
    /// toward the keep-alive limit and costs no buffer memory.
    fn mark_idle(&mut self, shared: &Shared, conn: &mut Conn) {
        self.buffers.reclaim(conn);
        if let Some(idle) = self.idle.get_mut(conn.token.index()) {
            if !std::mem::replace(idle, true) {
                shared.idle.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Closes connections whose keep-alive, drain or linger time is over.
    fn expire(&mut self, shared: &Shared, now: Instant, jobs: &mut Vec<Job>) {
        for token in self.conns.keys_where(|c| c.timer.expired(now)) {
            let Some(mut conn) = self.conns.take(token) else { continue };
            // An HTTP/2 connection's timers are its session's (idle,
            // handshake, stalled streams).
            if let Some(session) = conn.h2.as_mut() {
                let mut drive = Drive::default();
                session.expire_and_drive(&shared.policy, conn.peer.ip(), now, &mut drive);
                self.h2_outcome(shared, conn, drive, jobs);
            } else {
                self.close(shared, conn);
            }
        }
    }

    fn close_all(&mut self, shared: &Shared) {
        for token in self.conns.keys_where(|_| true) {
            if let Some(conn) = self.conns.take(token) {
                self.close(shared, conn);
            }
        }
    }
}
