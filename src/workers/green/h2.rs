//! HTTP/2 on the green workers. The engine drives each connection's session
//! (`crate::http2::session`) on the hub's thread, as the gthread engine
//! does on its own; each stream runs in a request greenlet through the
//! shared WSGI path, its body and response meeting the engine in the
//! stream's [`StreamShared`].
//!
//! The body and the response are the gthread worker's
//! (`bridge::wsgi::h2`); only the wait differs. Where a thread would wait
//! on the stream's condition variable, a greenlet parks on the hub
//! ([`Parking`]) and the engine wakes it when a drive touched its stream
//! (body bytes came, the response moved on, the stream is gone) or its
//! deadline passed (the hub's timer looks).
//! A greenlet's `send` or body read tells the engine through [`H2Work`],
//! whose eventfd is in the engine's epoll set, so the session is driven on
//! the hub's next turn.

use super::engine::Shared;
use crate::bridge::wsgi::h2::{body_wait, H2Body, H2Sink, StreamWait, Want};
use crate::http::request::RequestHead;
use crate::http2::stream::{Notify, Out, StreamShared};
use crate::net::epoll::EventFd;
use crate::net::proxy_protocol::ProxyInfo;
use crate::net::stream::{Peer, Stream};
use crate::workers::wsgi_request::Exchange;
use pyo3::prelude::*;
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Connections whose streams have work for the engine (response parts
/// queued, window to give back). One thread, but `Notify` asks for `Sync`.
pub struct H2Work {
    conns: Mutex<Vec<u64>>,
    /// In the engine's epoll set: the hub calls the engine on its next turn.
    pub wake: EventFd,
    /// A wake is written and not read yet: one is enough.
    woken: AtomicBool,
}

impl H2Work {
    pub fn new() -> io::Result<H2Work> {
        Ok(H2Work { conns: Mutex::new(Vec::new()), wake: EventFd::new()?, woken: AtomicBool::new(false) })
    }

    /// The connections to drive, each once.
    pub fn take(&self) -> Vec<u64> {
        if self.woken.swap(false, Ordering::SeqCst) {
            self.wake.drain();
        }
        let mut work = std::mem::take(&mut *locked(&self.conns));
        work.sort_unstable();
        work.dedup();
        work
    }
}

impl Notify for H2Work {
    fn stream_has_work(&self, conn: u64) {
        locked(&self.conns).push(conn);
        if !self.woken.swap(true, Ordering::SeqCst) {
            self.wake.wake();
        }
    }
}

/// A stream, by its connection's tag and its id.
type StreamKey = (u64, u32);

struct Parked<G> {
    who: G,
    deadline: Instant,
    ticket: u64,
}

/// The parks of request greenlets on their streams (`G`: the greenlet), as
/// tickets. The engine takes a park out (its stream was touched, or its
/// deadline passed) before the hub resumes it, so one park is resumed at
/// most once; and a resume that comes after the greenlet left its park
/// another way (the hub threw in: `--request-timeout`, a kill) is refused,
/// rather than switching into whatever the greenlet waits on by then.
struct Parks<G> {
    parked: HashMap<StreamKey, Parked<G>>,
    /// Parks taken out and not resumed yet.
    waking: HashSet<u64>,
    next: u64,
}

impl<G> Parks<G> {
    fn new() -> Parks<G> {
        Parks { parked: HashMap::new(), waking: HashSet::new(), next: 0 }
    }

    fn park(&mut self, key: StreamKey, who: G, deadline: Instant) -> u64 {
        let ticket = self.next;
        self.next += 1;
        self.parked.insert(key, Parked { who, deadline, ticket });
        ticket
    }

    /// The greenlet is running again (resumed, or thrown into): its park is
    /// over, whether or not it was taken out.
    fn left(&mut self, key: StreamKey, ticket: u64) {
        if self.parked.get(&key).is_some_and(|p| p.ticket == ticket) {
            self.parked.remove(&key);
        }
        self.waking.remove(&ticket);
    }

    fn take_out(&mut self, key: &StreamKey, out: &mut Vec<(G, u64)>) {
        if let Some(p) = self.parked.remove(key) {
            self.waking.insert(p.ticket);
            out.push((p.who, p.ticket));
        }
    }

    fn touched(&mut self, tag: u64, ids: &[u32], out: &mut Vec<(G, u64)>) {
        if self.parked.is_empty() {
            return;
        }
        for id in ids {
            self.take_out(&(tag, *id), out);
        }
    }

    fn expired(&mut self, now: Instant, out: &mut Vec<(G, u64)>) {
        let due: Vec<StreamKey> = self.parked.iter().filter(|(_, p)| p.deadline <= now).map(|(k, _)| *k).collect();
        for key in due {
            self.take_out(&key, out);
        }
    }

    /// A resume comes: true if its park is still the one taken out.
    fn claim(&mut self, ticket: u64) -> bool {
        self.waking.remove(&ticket)
    }
}

/// A parked greenlet the engine took out of [`Parking`], to be resumed
/// once the server is no longer borrowed.
pub struct Woken {
    greenlet: Py<PyAny>,
    ticket: u64,
}

/// Request greenlets parked on their stream, on the hub.
pub struct Parking {
    parks: Mutex<Parks<Py<PyAny>>>,
    /// `greenlet.getcurrent`.
    current: Py<PyAny>,
    /// The hub's `switch`: parks the calling greenlet until it is resumed.
    switch: Py<PyAny>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Parking {
    pub fn new(current: Py<PyAny>, switch: Py<PyAny>) -> Parking {
        Parking { parks: Mutex::new(Parks::new()), current, switch }
    }

    /// Parks the calling greenlet until its stream is touched or `deadline`
    /// passes; the caller looks again either way. Err: the hub threw in (a
    /// kill, SystemExit, `RequestTimeout`).
    fn park(&self, py: Python<'_>, key: StreamKey, deadline: Instant) -> PyResult<()> {
        let greenlet = self.current.bind(py).call0()?.unbind();
        let ticket = locked(&self.parks).park(key, greenlet, deadline);
        let switched = self.switch.bind(py).call0();
        locked(&self.parks).left(key, ticket);
        switched.map(|_| ())
    }

    fn woken(taken: Vec<(Py<PyAny>, u64)>, out: &mut Vec<Woken>) {
        out.extend(taken.into_iter().map(|(greenlet, ticket)| Woken { greenlet, ticket }));
    }

    /// The greenlets parked on these streams of the connection `tag`.
    pub fn touched(&self, tag: u64, ids: &[u32], out: &mut Vec<Woken>) {
        let mut taken = Vec::new();
        locked(&self.parks).touched(tag, ids, &mut taken);
        Self::woken(taken, out);
    }

    /// The greenlets whose deadline has passed.
    pub fn expired(&self, now: Instant, out: &mut Vec<Woken>) {
        let mut taken = Vec::new();
        locked(&self.parks).expired(now, &mut taken);
        Self::woken(taken, out);
    }

    /// What the hub calls to resume a greenlet taken out (its `switch`).
    pub fn resume(self: &Arc<Self>, woken: Woken) -> Resume {
        Resume { greenlet: woken.greenlet, ticket: woken.ticket, parking: self.clone() }
    }
}

/// One resume of a parked greenlet, for the hub's callback queue (the
/// server's `wake` calls its `switch`, as it would a greenlet's).
#[pyclass(module = "ferrocorn._ferrocorn", unsendable)]
pub struct Resume {
    greenlet: Py<PyAny>,
    ticket: u64,
    parking: Arc<Parking>,
}

#[pymethods]
impl Resume {
    /// Switches to the greenlet if its park is still the one it was taken
    /// out of.
    fn switch(&self, py: Python<'_>) -> PyResult<()> {
        if locked(&self.parking.parks).claim(self.ticket) {
            self.greenlet.bind(py).call_method0("switch")?;
        }
        Ok(())
    }
}

/// A stream for a request greenlet. The connection stays with the engine.
pub struct StreamStart {
    pub stream: Arc<StreamShared>,
    pub head: RequestHead,
    /// The connection's tag (its epoll token), for [`Parking`].
    pub tag: u64,
    pub peer: Peer,
    pub listener: usize,
    pub proxy: Option<ProxyInfo>,
    /// The connection's socket (its TLS session, for the environ).
    pub socket: Arc<Stream>,
}

/// One stream through the app, in the calling greenlet. Err only when the
/// hub threw into the greenlet or a signal handler raised.
pub fn serve_stream(py: Python<'_>, shared: &Shared, start: StreamStart) -> PyResult<()> {
    let Some(hub) = shared.hub.get() else {
        let _ = start.stream.send([Out::Reset]);
        return Ok(());
    };
    shared.budget.count(&shared.slot);
    let StreamStart { stream, head, tag, peer, listener, proxy, socket } = start;
    let body_wait = body_wait(shared.settings.timeout);
    let stall = shared.h2_stall;
    let waiter = || GreenWait { parking: hub.parking.clone(), key: (tag, stream.id) };
    let date = shared.date.borrow_mut().get().to_vec();
    let exchange = Exchange {
        head: &head,
        peer,
        proxy: proxy.as_ref(),
        listener: &shared.listeners[listener].address,
        stream: &socket,
        source: Box::new(H2Body::new(stream.clone(), waiter(), body_wait, head.expect_continue)),
        sink: Box::new(H2Sink::new(stream.clone(), waiter(), stall)),
        must_close: false,
        date: &date,
        continue_: None,
    };
    let mut runner = match shared.runners.take(py) {
        Ok(r) => r,
        Err(e) => {
            let _ = stream.send([Out::Reset]);
            return Err(e);
        }
    };
    let served = runner.serve(py, exchange);
    shared.runners.put(runner);
    let complete = matches!(&served, Ok(Some(s)) if !s.broken) || matches!(served, Ok(None));
    // A response that did not end (the app broke off after its head, or
    // the stream was answered nothing) is cut off, not left open.
    if (!complete || !stream.finished()) && stream.gone().is_none() {
        let _ = stream.send([Out::Reset]);
    }
    served.map(|_| ())
}

/// A request greenlet's wait on its stream: parked on the hub.
struct GreenWait {
    parking: Arc<Parking>,
    key: StreamKey,
}

impl StreamWait for GreenWait {
    fn wait(&self, py: Python<'_>, _stream: &StreamShared, _want: Want, deadline: Instant) -> PyResult<()> {
        // Whatever it waits for, the engine wakes it when a drive touched
        // the stream.
        self.parking.park(py, self.key, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_touched_park_is_resumed_once() {
        let mut parks = Parks::new();
        let now = Instant::now();
        let t = parks.park((7, 1), "a", now + Duration::from_secs(5));
        parks.park((7, 3), "b", now + Duration::from_secs(5));
        let mut out = Vec::new();
        parks.touched(7, &[1, 1, 5], &mut out);
        parks.touched(8, &[3], &mut out);
        assert_eq!(out, vec![("a", t)]);
        // Its deadline passing later takes nothing more out.
        parks.expired(now + Duration::from_secs(6), &mut out);
        assert_eq!(out.iter().map(|(g, _)| *g).collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(parks.claim(t));
        parks.left((7, 1), t);
        assert!(!parks.claim(t));
    }

    #[test]
    fn a_resume_after_the_greenlet_left_another_way_is_refused() {
        let mut parks = Parks::new();
        let now = Instant::now();
        let first = parks.park((1, 1), "g", now);
        let mut out = Vec::new();
        parks.expired(now, &mut out);
        assert_eq!(out, vec![("g", first)]);
        // Thrown into before the resume ran; it then parks again.
        parks.left((1, 1), first);
        let second = parks.park((1, 1), "g", now + Duration::from_secs(5));
        assert!(!parks.claim(first));
        // The new park is still there, and is resumed by its own ticket.
        out.clear();
        parks.touched(1, &[1], &mut out);
        assert_eq!(out, vec![("g", second)]);
        assert!(parks.claim(second));
    }

    #[test]
    fn a_park_left_before_it_is_taken_out_is_forgotten() {
        let mut parks = Parks::new();
        let now = Instant::now();
        let t = parks.park((2, 9), "g", now + Duration::from_secs(5));
        parks.left((2, 9), t);
        let mut out = Vec::new();
        parks.touched(2, &[9], &mut out);
        parks.expired(now + Duration::from_secs(10), &mut out);
        assert!(out.is_empty());
    }
}
