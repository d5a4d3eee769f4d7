//! The gthread worker's engine: one epoll instance owns every connection.
//! It accepts (up to `--worker-connections`), reads and validates request
//! heads, prebuffers bodies, produces complete requests, sends what finished
//! responses left, drains, lingers, enforces keep-alive timeouts and beats
//! the heartbeat. It is turned by the worker's main thread, or by the
//! substitute thread while the main thread is busy in a slow request (see
//! `mod.rs`), one turn (one epoll wait) at a time.

use super::{Job, Shared};
use crate::net::epoll::{Event, READABLE};
use crate::workers::core::signals;
use crate::workers::evconn::{slot_index, After, BufferPool, Conn, Phase, Slots, Step, DRAIN_MAX, EDGE_EVENTS};
use pyo3::prelude::*;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const WAKE: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;
/// Listener i has token LISTENERS - i.
const LISTENERS: u64 = u64::MAX - 2;
/// Gunicorn keeps kept-alive connections this long when the worker stops,
/// so a request already on its way is answered (with Connection: close).
const STOP_KEEPALIVE_LINGER: Duration = Duration::from_secs(2);
/// A new connection has this long plus the keep-alive time to send
/// something (Gunicorn's worker data timeout before it parks it).
const FIRST_DATA: Duration = Duration::from_secs(5);
const DRAIN_TIME: Duration = Duration::from_secs(5);
const LINGER_TIME: Duration = Duration::from_secs(2);
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
    slots: Slots<Conn>,
    /// By slot: the connection counts toward Gunicorn's keep-alive limit.
    idle: Vec<bool>,
    live: usize,
    max_conns: usize,
    accepting: bool,
    keepalive: Duration,
    beat_every: Duration,
    signal_fd: i32,
    stop: Option<Stop>,
    next_timers: Instant,
    events: Vec<Event>,
    buffers: BufferPool,
}

#[derive(Clone, Copy)]
enum Stop {
    Graceful { deadline: Instant },
}

impl Engine {
    pub fn new(shared: &Shared, signal_fd: i32) -> io::Result<Engine> {
        shared.epoll.add(shared.wake.fd(), READABLE, WAKE)?;
        shared.epoll.add(signal_fd, READABLE, SIGNALS)?;
        let s = &shared.settings;
        let beat_every = match s.timeout {
            0 => Duration::from_millis(500),
            t => Duration::from_millis(t as u64 * 500),
        };
        let mut engine = Engine {
            slots: Slots::default(),
            idle: Vec::new(),
            live: 0,
            max_conns: s.worker_connections.max(1) as usize,
            accepting: false,
            keepalive: Duration::from_secs(s.keepalive.max(0) as u64),
            beat_every,
            signal_fd,
            stop: None,
            next_timers: Instant::now() + TIMER_EVERY,
            events: Vec::with_capacity(256),
            buffers: BufferPool::default(),
        };
        engine.set_accepting(shared, true)?;
        Ok(engine)
    }

    fn set_accepting(&mut self, shared: &Shared, on: bool) -> io::Result<()> {
        if on == self.accepting {
            return Ok(());
        }
        crate::workers::evconn::watch_listeners(&shared.epoll, &shared.listeners, LISTENERS, on)?;
        self.accepting = on;
        Ok(())
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
            let (tok, flags) = (ev.u64, ev.events);
            match tok {
                WAKE => {
                    // A write can land after the flag was cleared: the
                    // event is the proof, drain it whatever the flag says.
                    shared.wake.drain();
                    self.take_returned(shared, jobs)
                }
                SIGNALS => result = self.signals(mode),
                t if t > LISTENERS - shared.listeners.len() as u64 && t <= LISTENERS => {
                    self.accept(shared, (LISTENERS - t) as usize)
                }
                t => self.on_event(shared, t, flags, jobs),
            }
        }
        self.events = events;
        result?;
        if signals::fast_exit() {
            self.close_all(shared);
            return Ok(Turn::Finished);
        }
        if Instant::now() >= self.next_timers {
            self.expire(shared, Instant::now());
            self.next_timers = Instant::now() + TIMER_EVERY;
        }
        if self.stop.is_none() && (!signals::alive() || shared.draining.load(Ordering::SeqCst)) {
            self.begin_stop(shared);
        }
        // SAFETY: getppid cannot fail.
        if self.stop.is_none() && shared.ppid != unsafe { libc::getppid() } {
            crate::log::info!("Parent changed, shutting down: <Worker {}>", std::process::id());
            self.begin_stop(shared);
        }
        match self.stop {
            Some(Stop::Graceful { deadline }) => {
                if self.live == 0 || Instant::now() >= deadline {
                    self.close_all(shared);
                    return Ok(Turn::Finished);
                }
            }
            None => {
                let room = self.live < self.max_conns;
                if self.accepting != room {
                    self.set_accepting(shared, room).map_err(PyErr::from)?;
                }
            }
        }
        Ok(Turn::Continue)
    }

    /// The wakeup pipe says a signal arrived. The main thread runs the
    /// Python handlers; a substitute leaves them to the main thread, whose
    /// interpreter runs them in the app code it is busy with.
    fn signals(&mut self, mode: Mode) -> PyResult<()> {
        let mut buf = [0u8; 64];
        // SAFETY: non-blocking reads of the wakeup pipe into a local buffer.
        while unsafe { libc::read(self.signal_fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        match mode {
            Mode::Main => Python::attach(|py| py.check_signals()),
            Mode::Substitute => Ok(()),
        }
    }

    /// TERM, max-requests, parent gone: stop accepting, let requests in
    /// progress finish (answered with Connection: close), keep idle
    /// connections a short while for requests already on their way.
    fn begin_stop(&mut self, shared: &Shared) {
        shared.draining.store(true, Ordering::SeqCst);
        let _ = self.set_accepting(shared, false);
        let cap = Instant::now() + STOP_KEEPALIVE_LINGER;
        for conn in self.slots.held_mut() {
            if conn.is_idle() {
                conn.deadline = Some(conn.deadline.map_or(cap, |d| d.min(cap)));
            }
        }
        let grace = Duration::from_secs(shared.settings.graceful_timeout.max(0) as u64);
        self.stop = Some(Stop::Graceful { deadline: Instant::now() + grace });
    }

    fn accept(&mut self, shared: &Shared, index: usize) {
        let listener = &shared.listeners[index];
        while self.live < self.max_conns {
            match listener.accept() {
                Ok(Some((stream, peer))) => {
                    let tok = self.slots.reserve();
                    let slot = slot_index(tok);
                    if self.idle.len() <= slot {
                        self.idle.resize(slot + 1, false);
                    }
                    let mut conn = Conn::new(stream, peer, index, tok, shared.policy.proxy_protocol);
                    conn.deadline = Some(Instant::now() + FIRST_DATA + self.keepalive);
                    // Registered once, edge-triggered: the first edge (the
                    // request may already be here) comes from this add.
                    if shared.epoll.add(conn.fd(), EDGE_EVENTS, tok).is_err() {
                        self.release(shared, slot);
                        continue;
                    }
                    self.live += 1;
                    self.slots.put(slot, Box::new(conn));
                }
                Ok(None) => return,
                Err(e) => {
                    crate::log::error!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn release(&mut self, shared: &Shared, index: usize) {
        self.slots.release(index);
        self.not_idle(shared, index);
    }

    /// The connection of slot `index` no longer counts as kept alive.
    fn not_idle(&mut self, shared: &Shared, index: usize) {
        if std::mem::replace(&mut self.idle[index], false) {
            shared.idle.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Takes the connection of `tok` out of its slot to work on it.
    fn lookup(&mut self, shared: &Shared, tok: u64) -> Option<(usize, Box<Conn>)> {
        let conn = self.slots.take(tok)?;
        let index = slot_index(tok);
        self.not_idle(shared, index);
        Some((index, conn))
    }

    fn on_event(&mut self, shared: &Shared, tok: u64, flags: u32, jobs: &mut Vec<Job>) {
        let found = self.lookup(shared, tok);
        if found.is_none() && self.slots.is_taken(tok) {
            // The edge came while a thread has the connection (or has just
            // handed it back): note it; whoever comes second acts on it.
            shared.missed[slot_index(tok)].store(true, Ordering::SeqCst);
            self.take_returned(shared, jobs);
            return;
        }
        let Some((index, mut conn)) = found else { return };
        conn.edge.note(flags);
        self.progress(shared, index, conn, jobs);
    }

    /// Moves a connection the engine holds as far as it can go: reads while
    /// the last edge says there is something to read, writes while the
    /// socket takes it, and otherwise keeps it until its next edge.
    fn progress(&mut self, shared: &Shared, index: usize, mut conn: Box<Conn>, jobs: &mut Vec<Job>) {
        loop {
            match std::mem::replace(&mut conn.phase, Phase::Close) {
                Phase::Flush(after) => {
                    conn.phase = Phase::Flush(after);
                    if !conn.edge.writable {
                        return self.keep(index, conn);
                    }
                    match conn.flush_out() {
                        Ok(true) => match after {
                            After::KeepAlive => conn.phase = Phase::Head,
                            After::Linger => conn.start_linger(),
                        },
                        Ok(false) => return self.keep(index, conn),
                        Err(_) => return self.close(shared, index, conn),
                    }
                }
                Phase::Drain { mut decoder, mut drained } => match conn.discard_body(&mut decoder, &mut drained) {
                    Ok(true) => conn.phase = Phase::Head,
                    Ok(false) if drained <= DRAIN_MAX && !conn.eof => {
                        conn.phase = Phase::Drain { decoder, drained };
                        if conn.deadline.is_none() {
                            conn.deadline = Some(Instant::now() + DRAIN_TIME);
                        }
                        if !self.read_more(&mut conn) {
                            return self.close(shared, index, conn);
                        }
                        if !conn.edge.readable {
                            return self.keep(index, conn);
                        }
                    }
                    _ => return self.close(shared, index, conn),
                },
                Phase::Linger { mut drained } => {
                    if conn.deadline.is_none() {
                        conn.deadline = Some(Instant::now() + LINGER_TIME);
                    }
                    if conn.edge.readable && conn.linger_read(&mut drained) {
                        return self.close(shared, index, conn);
                    }
                    conn.phase = Phase::Linger { drained };
                    return self.keep(index, conn);
                }
                Phase::Close => return self.close(shared, index, conn),
                phase @ (Phase::Head | Phase::Body(_)) => {
                    conn.phase = phase;
                    match conn.advance(&shared.policy) {
                        Step::Dispatch(pending) => {
                            conn.deadline = None;
                            // The slot stays reserved (and counted) while a
                            // thread has the connection.
                            return jobs.push(Job { conn, pending });
                        }
                        Step::NeedRead if conn.edge.readable && !conn.eof => {
                            if !self.read_more(&mut conn) {
                                return self.close(shared, index, conn);
                            }
                        }
                        Step::NeedRead => {
                            if conn.is_idle() {
                                self.mark_idle(shared, index, &mut conn);
                            } else {
                                // A request is arriving: no idle timeout
                                // (Gunicorn waits for it without one).
                                conn.deadline = None;
                            }
                            return self.keep(index, conn);
                        }
                        Step::Reject(e) => conn.reject(&e),
                        Step::Done => return self.close(shared, index, conn),
                    }
                }
            }
        }
    }

    /// One read where the last edge said there is something; false when
    /// the connection is to be closed (an error, or a hang-up with nothing
    /// left to read).
    fn read_more(&mut self, conn: &mut Conn) -> bool {
        if !conn.edge.readable || conn.eof {
            return true;
        }
        self.buffers.lend(conn);
        match conn.read_edge() {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => !conn.edge.hup,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => {
                crate::workers::wsgi_request::log_socket_error(&e);
                false
            }
        }
    }

    /// Keeps the connection until its next edge (or deadline).
    fn keep(&mut self, index: usize, conn: Box<Conn>) {
        self.slots.put(index, conn);
    }

    fn close(&mut self, shared: &Shared, index: usize, conn: Box<Conn>) {
        let _ = shared.epoll.delete(conn.fd());
        drop(conn);
        self.release(shared, index);
        self.live -= 1;
    }

    /// Connections the Python threads are done with. An edge that came
    /// while a thread had one may have been missed: it is then read and
    /// written once to find out.
    fn take_returned(&mut self, shared: &Shared, jobs: &mut Vec<Job>) {
        // The eventfd is read only when a wake was sent: most turns have
        // none, and an empty read is a wasted syscall (the WAKE event
        // drains it in any case).
        if shared.wake_pending.swap(false, Ordering::SeqCst) {
            shared.wake.drain();
        }
        let returned = std::mem::take(&mut *shared.lock_returned());
        for mut conn in returned {
            let index = conn.slot();
            if shared.missed[index].swap(false, Ordering::SeqCst) {
                conn.edge.assume_ready();
            }
            self.progress(shared, index, conn, jobs);
        }
    }

    /// A kept-alive connection waiting for its next request: it gets the
    /// keep-alive time (2 s during a stop) and costs no buffer memory.
    fn mark_idle(&mut self, shared: &Shared, index: usize, conn: &mut Conn) {
        if conn.requests == 0 {
            return;
        }
        let mut deadline = Instant::now() + self.keepalive;
        if self.stop.is_some() {
            deadline = deadline.min(Instant::now() + STOP_KEEPALIVE_LINGER);
        }
        conn.deadline = Some(conn.deadline.map_or(deadline, |d| d.min(deadline)));
        self.buffers.reclaim(conn);
        if !std::mem::replace(&mut self.idle[index], true) {
            shared.idle.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes connections whose keep-alive, drain or linger time is over.
    fn expire(&mut self, shared: &Shared, now: Instant) {
        for conn in self.slots.take_if(|c| c.deadline.is_some_and(|d| d <= now)) {
            self.close(shared, conn.slot(), conn);
        }
    }

    fn close_all(&mut self, shared: &Shared) {
        for conn in self.slots.take_if(|_| true) {
            self.close(shared, conn.slot(), conn);
        }
    }
}
