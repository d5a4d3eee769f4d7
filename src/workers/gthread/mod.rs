//! The `gthread` worker: an event-driven engine owns every connection
//! (keep-alive, pipelining, slow clients, timeouts); complete, validated
//! requests run on `--threads` Python threads.
//!
//! Who does what, so that a fast request costs no thread hand-off and a
//! slow one never stalls the worker:
//! - the main thread turns the engine and runs the requests it produces
//!   itself (it is one of the `--threads`);
//! - when one request keeps it in the app longer than [`HANDOFF`], the
//!   substitute thread (Rust only, never runs Python) turns the engine in
//!   its place and wakes the other `threads - 1` Python threads, which take
//!   the requests waiting in the queue;
//! - when the main thread is back, it takes the engine again, and the other
//!   threads go back to rest after the request they are running, unless
//!   the app waits (then they keep helping).
//!
//! "The app waits" is measured, not guessed: the main thread's wall time in
//! requests less its CPU time (a database round trip, a sleep, a slow
//! upload), over batches it ran alone. An app that keeps the processor busy
//! is thus served by one thread at a time whatever `--threads` says: more
//! threads could not run Python at once, and each would take the GIL from
//! the others at every release (SQLite's queries, for one, release it
//! without waiting). While the others help, the main thread's own time
//! includes waiting for the GIL, so it cannot tell; now and then (after
//! [`PROBE_FIRST`], twice as long after each probe that finds the app still
//! waiting) the others stand aside for a few requests and the main thread
//! measures again. docs/architecture.md has the numbers.

mod engine;
mod exec;
mod io;
mod pool;

use super::WorkerCtx;
use crate::http::policy::HttpPolicy;
use crate::http::request::RequestHead;
use crate::http2::stream::{Notify, StreamShared};
use crate::http2::H2Serving;
use crate::net::epoll::{Epoll, EventFd};
use crate::net::listener::Listener;
use crate::net::proxy_protocol::ProxyInfo;
use crate::net::stream::{Peer, Stream};
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use crate::workers::core::conn::{Conn, Inbound};
use crate::workers::core::life::RequestBudget;
use crate::workers::core::signals;
use pool::Queue;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// A request for a Python thread.
pub enum Job {
    /// An HTTP/1 request, with its connection (the thread owns both).
    Http1 { conn: Box<Conn>, inbound: Inbound },
    /// An HTTP/2 stream: its connection stays with the engine.
    Stream(Box<StreamJob>),
}

pub struct StreamJob {
    stream: Arc<StreamShared>,
    head: RequestHead,
    peer: Peer,
    listener: usize,
    proxy: Option<ProxyInfo>,
    /// The connection's socket (its TLS session, for the environ).
    socket: Arc<Stream>,
}

/// Tells the engine that a stream of an HTTP/2 connection has work (its
/// thread queued response bytes, or took body bytes).
struct StreamNotify(std::sync::Weak<Shared>);

impl Notify for StreamNotify {
    fn stream_has_work(&self, conn: u64) {
        if let Some(shared) = self.0.upgrade() {
            shared.lock_h2_work().push(conn);
            shared.wake_engine();
        }
    }
}

/// What the engine and the Python threads share.
pub struct Shared {
    queue: Queue<Job>,
    /// Connections threads are done with (boxed as everywhere else: a
    /// connection moves between slots, jobs and threads as one pointer).
    #[allow(clippy::vec_box)]
    returned: Mutex<Vec<Box<Conn>>>,
    wake: EventFd,
    wake_pending: AtomicBool,
    epoll: Epoll,
    /// Per connection slot: the engine saw an edge while a thread had the
    /// connection.
    missed: Box<[AtomicBool]>,
    settings: Arc<Settings>,
    policy: HttpPolicy,
    app: Py<PyAny>,
    listeners: Vec<Listener>,
    tls: Option<crate::net::tls::TlsAcceptor>,
    slot: SlotHandle,
    ppid: i32,
    budget: RequestBudget,
    /// Kept-alive connections waiting for a request, and how many may
    /// (Gunicorn's worker_connections - threads).
    idle: AtomicUsize,
    max_keepalived: usize,
    /// Keep-alive responses still to close, for their clients to connect
    /// to a sibling (see `Acceptor::shed`).
    shed: AtomicUsize,
    /// Threads in `run_job`.
    busy: AtomicUsize,
    /// The engine, turned by whichever thread holds this lock.
    engine: Mutex<Option<engine::Engine>>,
    /// The main thread is running requests (not turning the engine), and a
    /// counter it bumps per request, so a stuck request can be told apart
    /// from a stream of fast ones.
    main_inline: AtomicBool,
    inline_seq: AtomicU64,
    /// The substitute is turning the engine.
    substituting: AtomicBool,
    finished: AtomicBool,
    substitute: OnceLock<std::thread::Thread>,
    substitute_parked: AtomicBool,
    /// EWMAs of the main thread's time per request, and of the part of it
    /// spent waiting (not on the processor), in microseconds.
    inline_wall_us: AtomicU64,
    inline_wait_us: AtomicU64,
    /// The other threads stand aside (unless the main one is stuck) so the
    /// main thread can measure the app alone.
    probing: AtomicBool,
    /// Requests the other threads have started.
    helped: AtomicU64,
    /// Milliseconds from one probe to the next.
    probe_every_ms: AtomicU64,
    /// HTTP/2, when the settings serve it.
    h2: Option<H2Serving>,
    /// HTTP/2 connections (by epoll token) with stream work for the engine.
    h2_work: Mutex<Vec<u64>>,
}

impl Shared {
    fn lock_engine(&self) -> MutexGuard<'_, Option<engine::Engine>> {
        match self.engine.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn lock_h2_work(&self) -> MutexGuard<'_, Vec<u64>> {
        match self.h2_work.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    #[allow(clippy::vec_box)]
    fn lock_returned(&self) -> MutexGuard<'_, Vec<Box<Conn>>> {
        match self.returned.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The main thread cannot keep up alone: it is stuck in a request (the
    /// substitute has the engine), or the app waits.
    fn needs_help(&self) -> bool {
        self.substituting.load(Ordering::SeqCst) || (self.app_waits() && !self.probing.load(Ordering::SeqCst))
    }

    /// A probe found the app still waiting: the next one comes twice as
    /// late.
    fn probe_again_later(&self) {
        let every = self.probe_every_ms.load(Ordering::Relaxed);
        self.probe_every_ms.store((every * 2).min(PROBE_MAX.as_millis() as u64), Ordering::Relaxed);
    }

    fn app_waits(&self) -> bool {
        let wait = self.inline_wait_us.load(Ordering::Relaxed);
        wait > APP_WAITS.as_micros() as u64 && wait * 4 > self.inline_wall_us.load(Ordering::Relaxed)
    }

    fn wake_engine(&self) {
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            self.wake.wake();
        }
    }

    /// A thread hands a connection back. The connection stays registered
    /// (edge-triggered) the whole time, so the common case (wait for the
    /// next request) needs no syscall at all: the next edge finds the
    /// connection in `returned`. The engine is woken only when it has
    /// something to do now, or an edge came while the thread had it.
    fn give_back(&self, conn: Box<Conn>) {
        let now = conn.needs_engine();
        let index = conn.token.index();
        self.lock_returned().push(conn);
        if now || self.missed.get(index).is_some_and(|m| m.load(Ordering::SeqCst)) {
            self.wake_engine();
        }
    }
}

/// A request that keeps the main thread this long in the app makes the
/// substitute take the engine over (and wake the other threads for the
/// requests waiting), so a slow request never stalls the worker's I/O.
/// Longer than a typical scheduler time slice, so a main thread that was
/// merely preempted during a fast request is not taken for stuck.
const HANDOFF: Duration = Duration::from_millis(4);
/// Above this average (EWMA) waiting time per request, and a quarter of the
/// time per request, the app counts as waiting: the main thread then wakes
/// the other threads for the requests it queues, instead of letting them
/// wait out the HANDOFF. Each request another thread takes while the main
/// one waits costs two GIL hand-offs (some 10 to 20 µs each), and the
/// threads slow each other down: below this, overlapping the waits would
/// not pay for them.
const APP_WAITS: Duration = Duration::from_micros(50);
/// Above this average time per request, the main thread runs one request
/// per turn while the others help (see `main_loop`).
const SLOW_APP: Duration = Duration::from_micros(500);
/// How soon the main thread measures an app it is being helped with again,
/// and how long it goes at most without (see the module's comment). Each
/// probe costs the app that waits some throughput: the other threads stand
/// aside, and come back one by one once the main thread is stuck.
const PROBE_FIRST: Duration = Duration::from_secs(1);
const PROBE_MAX: Duration = Duration::from_secs(16);
const PROBE_REQUESTS: usize = 4;

pub fn serve(
    py: Python<'_>,
    ctx: &WorkerCtx,
    app: Py<PyAny>,
    policy: HttpPolicy,
    wakeup: signals::Wakeup,
) -> PyResult<()> {
    let settings = ctx.settings.clone();
    let threads = settings.threads.max(1);
    let max_keepalived = settings.worker_connections.saturating_sub(settings.threads);
    if max_keepalived == 0 && !settings.keepalive.is_zero() {
        crate::log::warning!(
            "No keepalived connections can be handled. Check the number of worker connections and threads."
        );
    }
    let max_conns = settings.worker_connections.max(1);
    let shared = Arc::new(Shared {
        queue: Queue::new(),
        returned: Mutex::new(Vec::new()),
        wake: EventFd::new()?,
        wake_pending: AtomicBool::new(false),
        epoll: Epoll::new()?,
        missed: (0..max_conns).map(|_| AtomicBool::new(false)).collect(),
        policy,
        app,
        listeners: ctx.listeners.clone(),
        tls: ctx.tls.clone(),
        slot: ctx.slot.clone(),
        ppid: ctx.ppid,
        budget: RequestBudget::new(ctx.max_requests),
        idle: AtomicUsize::new(0),
        max_keepalived,
        shed: AtomicUsize::new(0),
        busy: AtomicUsize::new(0),
        engine: Mutex::new(None),
        main_inline: AtomicBool::new(false),
        inline_seq: AtomicU64::new(0),
        substituting: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        substitute: OnceLock::new(),
        substitute_parked: AtomicBool::new(false),
        inline_wall_us: AtomicU64::new(0),
        inline_wait_us: AtomicU64::new(0),
        probing: AtomicBool::new(false),
        helped: AtomicU64::new(0),
        probe_every_ms: AtomicU64::new(PROBE_FIRST.as_millis() as u64),
        h2: H2Serving::from_settings(&settings, ctx.tls.is_some()),
        h2_work: Mutex::new(Vec::new()),
        settings,
    });
    let notify: Arc<dyn Notify> = Arc::new(StreamNotify(Arc::downgrade(&shared)));
    *shared.lock_engine() = Some(engine::Engine::new(&shared, wakeup, notify)?);

    // The main thread is one of the `threads`; the others wait for work.
    let mut handles = Vec::with_capacity(threads);
    for n in 1..threads {
        let shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ferrocorn-t{n}"))
            .spawn(move || Python::attach(|py| follower(py, &shared)))
            .map_err(PyErr::from)?;
        handles.push(handle);
    }
    let sub = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("ferrocorn-io".into())
            .spawn(move || substitute(&shared))
            .map_err(PyErr::from)?
    };
    let _ = shared.substitute.set(sub.thread().clone());

    let mut ts = exec::ThreadState::new(py, &shared)?;
    let result = main_loop(py, &shared, &mut ts);
    shared.finished.store(true, Ordering::SeqCst);
    shared.queue.close();
    sub.thread().unpark();
    let fast = result.is_err() || signals::fast_exit();
    let wait = if fast { Duration::from_millis(200) } else { Duration::from_secs(5) };
    let deadline = Instant::now() + wait;
    let idle = py.detach(|| {
        while shared.busy.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        shared.busy.load(Ordering::SeqCst) == 0
    });
    if !idle {
        // A thread is still inside the app: Python cannot shut down under
        // it, so the process ends here, as SIGKILL would have ended it.
        crate::log::info!("Worker exiting (pid: {})", std::process::id());
        let status = match &result {
            Err(e) if e.is_instance_of::<pyo3::exceptions::PySystemExit>(py) => exit_status(py, e),
            _ => signals::fast_exit_status(),
        };
        // SAFETY: _exit ends the process without running anything else.
        unsafe { libc::_exit(status) };
    }
    py.detach(|| {
        let _ = sub.join();
        for h in handles {
            let _ = h.join();
        }
    });
    // A fast stop asked for by a signal that arrived while the app ran
    // (the handler's SystemExit was answered as an app error) keeps its
    // exit status.
    match result {
        Ok(()) if signals::fast_exit() => Err(pyo3::exceptions::PySystemExit::new_err(signals::fast_exit_status())),
        other => other,
    }
}

/// The main thread: turns the engine and runs the requests it produces
/// itself, back to back with the GIL held, so a fast request costs no
/// hand-off between threads at all.
fn main_loop(py: Python<'_>, shared: &Shared, ts: &mut exec::ThreadState) -> PyResult<()> {
    let mut jobs = Vec::new();
    let mut last_probe = Instant::now();
    loop {
        let turn = py.detach(|| {
            let mut guard = shared.lock_engine();
            let Some(engine) = guard.as_mut() else { return PyResult::Ok(engine::Turn::Finished) };
            loop {
                let waiting = !shared.queue.is_empty();
                let max_wait = if waiting { Some(Duration::ZERO) } else { None };
                match engine.turn(shared, engine::Mode::Main, &mut jobs, max_wait)? {
                    engine::Turn::Finished => return Ok(engine::Turn::Finished),
                    engine::Turn::Continue if !jobs.is_empty() || waiting => return Ok(engine::Turn::Continue),
                    engine::Turn::Continue => {}
                }
            }
        })?;
        if matches!(turn, engine::Turn::Finished) || shared.finished.load(Ordering::SeqCst) {
            return Ok(());
        }
        let probe_every = Duration::from_millis(shared.probe_every_ms.load(Ordering::Relaxed));
        if shared.app_waits() && !shared.probing.load(Ordering::SeqCst) && last_probe.elapsed() >= probe_every {
            shared.probing.store(true, Ordering::SeqCst);
            last_probe = Instant::now();
        }
        let helped = shared.needs_help();
        if helped {
            shared.queue.push_all(jobs.drain(..));
        } else {
            shared.queue.push_quiet(jobs.drain(..));
        }
        // Only what is queued now: requests that arrive meanwhile wait for
        // the next turn of the engine, which the main thread takes back.
        // Long requests the others help with: one at a time, so the main
        // thread is back at the engine between them. A probe measures a
        // few requests, which the main thread runs alone.
        let slow = shared.inline_wall_us.load(Ordering::Relaxed) > SLOW_APP.as_micros() as u64;
        let limit = if helped && slow {
            1
        } else if shared.probing.load(Ordering::SeqCst) {
            shared.queue.len().min(PROBE_REQUESTS)
        } else {
            shared.queue.len()
        };
        run_inline(py, shared, ts, limit)?;
        if shared.finished.load(Ordering::SeqCst) || signals::fast_exit() {
            return Ok(());
        }
    }
}

/// Runs up to `limit` queued requests on the main thread; the engine is
/// free meanwhile for the substitute to turn if one of them is slow.
fn run_inline(py: Python<'_>, shared: &Shared, ts: &mut exec::ThreadState, limit: usize) -> PyResult<()> {
    shared.main_inline.store(true, Ordering::SeqCst);
    if shared.substitute_parked.load(Ordering::SeqCst) {
        if let Some(t) = shared.substitute.get() {
            t.unpark();
        }
    }
    // Only a batch the main thread ran alone tells how much the app waits.
    let alone = shared.busy.fetch_add(1, Ordering::SeqCst) == 0;
    let helped_before = shared.helped.load(Ordering::SeqCst);
    // Timed per batch, not per request: reading the thread's usage is a
    // system call (and not at all with no other thread to help).
    let started = Instant::now();
    let usage_started = if shared.settings.threads > 1 { ThreadUsage::now() } else { None };
    let mut done = 0u64;
    while done < limit as u64 {
        let Some(job) = shared.queue.take(false) else { break };
        done += 1;
        shared.inline_seq.fetch_add(1, Ordering::SeqCst);
        exec::run_job(py, shared, ts, job);
        if signals::fast_exit() {
            break;
        }
    }
    let helped_during = shared.helped.load(Ordering::SeqCst) != helped_before;
    let probing = shared.probing.load(Ordering::SeqCst);
    if helped_during && probing {
        // The others were woken because the main thread got stuck while
        // they stood aside: the app does wait, and help goes on.
        shared.probing.store(false, Ordering::SeqCst);
        shared.probe_again_later();
    } else if alone && !helped_during && done > 0 {
        if let Some((before, after)) = usage_started.and_then(|before| Some((before, ThreadUsage::now()?))) {
            record_batch(shared, probing, done, started.elapsed(), &before, &after);
        }
    }
    shared.busy.fetch_sub(1, Ordering::SeqCst);
    shared.main_inline.store(false, Ordering::SeqCst);
    if shared.substituting.load(Ordering::SeqCst) {
        // Get the substitute out of its epoll wait: the engine is ours again.
        shared.wake_engine();
    }
    // Handlers for signals that came while the app ran (TERM sets the stop).
    py.check_signals()
}

/// What a batch of `done` requests the main thread ran alone says of the
/// app: how long they took and how much of it the thread waited.
fn record_batch(shared: &Shared, probing: bool, done: u64, wall: Duration, before: &ThreadUsage, after: &ThreadUsage) {
    // Off the processor because another process had it (the thread was
    // preempted, not blocked) is not waiting: no other thread could have
    // run Python meanwhile. Only a thread that blocked (about once a
    // request at least) counts as waiting.
    let blocked = after.voluntary.saturating_sub(before.voluntary) * 2 >= done;
    let waited = if blocked { wall.saturating_sub(after.cpu.saturating_sub(before.cpu)) } else { Duration::ZERO };
    let per_request = |d: Duration| (d.as_micros() / u128::from(done)).min(u128::from(u32::MAX)) as u64;
    // A probe's measure stands on its own: the average was taken before
    // help began and would take many batches to come down.
    let update = |ewma: &AtomicU64, sample: u64| {
        let avg = ewma.load(Ordering::Relaxed);
        ewma.store(if probing { sample } else { avg - avg / 8 + sample / 8 }, Ordering::Relaxed);
    };
    update(&shared.inline_wall_us, per_request(wall));
    update(&shared.inline_wait_us, per_request(waited));
    if probing {
        shared.probing.store(false, Ordering::SeqCst);
        if shared.app_waits() {
            shared.probe_again_later();
        } else {
            shared.probe_every_ms.store(PROBE_FIRST.as_millis() as u64, Ordering::Relaxed);
        }
    }
}

/// Turns the engine while the main thread is stuck in a slow request.
fn substitute(shared: &Shared) {
    let mut jobs = Vec::new();
    while !shared.finished.load(Ordering::SeqCst) {
        if !shared.main_inline.load(Ordering::SeqCst) {
            shared.substitute_parked.store(true, Ordering::SeqCst);
            if !shared.main_inline.load(Ordering::SeqCst) {
                std::thread::park_timeout(Duration::from_millis(100));
            }
            shared.substitute_parked.store(false, Ordering::SeqCst);
            continue;
        }
        let seq = shared.inline_seq.load(Ordering::SeqCst);
        std::thread::sleep(HANDOFF);
        let stuck = || shared.main_inline.load(Ordering::SeqCst) && shared.inline_seq.load(Ordering::SeqCst) == seq;
        if !stuck() {
            continue;
        }
        let mut guard = shared.lock_engine();
        let Some(engine) = guard.as_mut() else { return };
        shared.substituting.store(true, Ordering::SeqCst);
        // Requests keep being read and queued. The other threads are woken
        // only for requests that wait a whole HANDOFF behind the stuck one:
        // waking them for a main thread that was merely preempted (while
        // holding the GIL) would only make them fight over the GIL.
        let mut backlog_since: Option<Instant> = None;
        while shared.main_inline.load(Ordering::SeqCst) && !shared.finished.load(Ordering::SeqCst) {
            let max_wait = if shared.queue.is_empty() { None } else { Some(HANDOFF) };
            match engine.turn(shared, engine::Mode::Substitute, &mut jobs, max_wait) {
                Ok(engine::Turn::Continue) => {}
                Ok(engine::Turn::Finished) | Err(_) => shared.finished.store(true, Ordering::SeqCst),
            }
            shared.queue.push_quiet(jobs.drain(..));
            if shared.queue.is_empty() {
                backlog_since = None;
            } else if backlog_since.get_or_insert_with(Instant::now).elapsed() >= HANDOFF {
                shared.queue.wake_one_for_jobs();
            }
        }
        shared.substituting.store(false, Ordering::SeqCst);
    }
}

/// The calling thread's processor time (user and system) and how many
/// times it blocked (gave up the processor to wait).
struct ThreadUsage {
    cpu: Duration,
    voluntary: u64,
}

impl ThreadUsage {
    fn now() -> Option<ThreadUsage> {
        // SAFETY: getrusage fills the rusage we own; all-zero is a valid
        // value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; RUSAGE_THREAD is the calling thread (Linux).
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
            return None;
        }
        let time = |tv: libc::timeval| -> Option<Duration> {
            Some(
                Duration::from_secs(u64::try_from(tv.tv_sec).ok()?)
                    + Duration::from_micros(u64::try_from(tv.tv_usec).ok()?),
            )
        };
        Some(ThreadUsage { cpu: time(ru.ru_utime)? + time(ru.ru_stime)?, voluntary: u64::try_from(ru.ru_nvcsw).ok()? })
    }
}

fn exit_status(py: Python<'_>, e: &PyErr) -> i32 {
    e.value(py).getattr("code").ok().and_then(|c| c.extract::<i32>().ok()).unwrap_or(1)
}

/// The other Python threads: they run requests the main thread could not
/// get to because a slow one held it.
fn follower(py: Python<'_>, shared: &Shared) {
    let mut ts = match exec::ThreadState::new(py, shared) {
        Ok(ts) => ts,
        Err(e) => {
            crate::log::error!("Thread setup failed\n{}", crate::python::format_exception(py, &e));
            return;
        }
    };
    loop {
        // Requests are taken only with the GIL held, and the GIL is kept
        // while more are waiting and help is needed: no hand-off between
        // back-to-back requests. A thread woken for help that is no longer
        // needed (the main thread is back, or measuring) takes nothing: it
        // would spoil the measure. Once the worker stops, what is left is
        // run whatever.
        while shared.needs_help() || shared.queue.is_closed() {
            let Some(job) = shared.queue.take(true) else { break };
            shared.helped.fetch_add(1, Ordering::SeqCst);
            shared.busy.fetch_add(1, Ordering::SeqCst);
            exec::run_job(py, shared, &mut ts, job);
            shared.busy.fetch_sub(1, Ordering::SeqCst);
        }
        let more = py.detach(|| if shared.needs_help() { shared.queue.wait() } else { shared.queue.rest() });
        if !more {
            return;
        }
    }
}
