//! One HTTP/2 stream as the application sees it: the request body the
//! engine received for it, the response the application produced for it,
//! and whether the stream is still there. The engine (the only one that
//! touches the `h2` connection) and the application (a Python thread of the
//! gthread worker, or the asgi worker's task on the engine's own thread)
//! meet here, under one small lock.
//!
//! Both directions are bounded: the request body by the stream's flow
//! control window (the engine gives the client more window only as the
//! application takes bytes), the response by [`OUT_HIGH`] (a thread waits
//! above it; an ASGI `send()` waits), so a slow reader stalls its own
//! stream and never the connection or the worker.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Response bytes queued for a stream above which its producer waits, and
/// the level at which it goes on.
pub const OUT_HIGH: usize = 256 * 1024;
pub const OUT_LOW: usize = 64 * 1024;

/// A response header block: status and fields (names lower-case, as HTTP/2
/// wants them).
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What the application sends, in order.
#[derive(Debug)]
pub enum Out {
    /// A 1xx response (103 Early Hints).
    Informational(Head),
    Head(Head),
    Data(Bytes),
    /// The end of the response, with trailers or not.
    End(Option<Vec<(Vec<u8>, Vec<u8>)>>),
    /// Give up on the stream (the application failed after its head went).
    Reset,
}

/// Why a stream went away before its response was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// The client reset it (RST_STREAM), with this error code.
    Reset(u32),
    /// The connection is over (closed, failed, or the worker stopped).
    Connection,
    /// The client gave the response no window for longer than allowed.
    Stalled,
}

/// What a read of the request body found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Data(Vec<u8>),
    /// The body is complete.
    End,
    /// Nothing yet: wait for the engine.
    Empty,
    Gone(Gone),
}

#[derive(Default)]
struct Inner {
    body: VecDeque<Bytes>,
    body_len: usize,
    body_ended: bool,
    /// Body bytes the application took that the client has not been given
    /// window for yet.
    taken: usize,
    out: VecDeque<Out>,
    out_len: usize,
    /// The application queued the response's end (or a reset).
    finished: bool,
    gone: Option<Gone>,
}

/// Tells the worker that a stream has something for the engine to do
/// (response bytes, window to give back): the gthread worker wakes its
/// engine; the asgi worker, whose engine runs on the same thread, notes it.
pub trait Notify: Send + Sync {
    fn stream_has_work(&self, conn: u64);
}

pub struct StreamShared {
    pub id: u32,
    /// The connection's tag, as the worker named it for [`Notify`].
    conn: u64,
    notify: Arc<dyn Notify>,
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl StreamShared {
    pub fn new(id: u32, conn: u64, notify: Arc<dyn Notify>, body_ended: bool) -> StreamShared {
        StreamShared {
            id,
            conn,
            notify,
            inner: Mutex::new(Inner { body_ended, ..Inner::default() }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    // ---- the application's side

    /// Takes up to `max` body bytes, without waiting.
    pub fn read(&self, max: usize) -> Read {
        let mut inner = self.lock();
        if inner.body.is_empty() {
            return match inner.gone {
                Some(g) if !inner.body_ended => Read::Gone(g),
                _ if inner.body_ended => Read::End,
                _ => Read::Empty,
            };
        }
        let mut out = Vec::with_capacity(max.min(inner.body_len));
        while out.len() < max {
            let Some(front) = inner.body.front_mut() else { break };
            let n = front.len().min(max - out.len());
            out.extend_from_slice(&front[..n]);
            if n == front.len() {
                inner.body.pop_front();
            } else {
                let _ = front.split_to(n);
            }
        }
        inner.body_len -= out.len();
        // Window goes back to the client in steps, not per read.
        let before = inner.taken;
        inner.taken += out.len();
        let wake = before < WINDOW_STEP && inner.taken >= WINDOW_STEP;
        drop(inner);
        if wake {
            self.notify.stream_has_work(self.conn);
        }
        Read::Data(out)
    }

    /// Every body byte arrived and was taken.
    pub fn body_complete(&self) -> bool {
        let inner = self.lock();
        inner.body_ended && inner.body.is_empty()
    }

    /// Waits (a thread) until a read would find something, the stream is
    /// gone, or `timeout` passes; false on the timeout.
    pub fn wait_readable(&self, timeout: Duration) -> bool {
        let inner = self.lock();
        let ready = |i: &mut Inner| !i.body.is_empty() || i.body_ended || i.gone.is_some();
        match self.changed.wait_timeout_while(inner, timeout, |i| !ready(i)) {
            Ok((_, t)) => !t.timed_out(),
            Err(poisoned) => !poisoned.into_inner().1.timed_out(),
        }
    }

    /// Queues response parts; Ok(bytes queued) or Err when the stream is
    /// gone (the application stops producing).
    pub fn send(&self, parts: impl IntoIterator<Item = Out>) -> Result<usize, Gone> {
        let mut inner = self.lock();
        if let Some(g) = inner.gone {
            return Err(g);
        }
        if inner.finished {
            return Err(Gone::Connection);
        }
        for part in parts {
            match &part {
                Out::Data(b) if b.is_empty() => continue,
                Out::Data(b) => inner.out_len += b.len(),
                Out::End(_) | Out::Reset => inner.finished = true,
                Out::Informational(_) | Out::Head(_) => {}
            }
            inner.out.push_back(part);
        }
        let queued = inner.out_len;
        drop(inner);
        self.notify.stream_has_work(self.conn);
        Ok(queued)
    }

    /// Waits (a thread) until at most [`OUT_LOW`] bytes are queued, the
    /// stream is gone, or `timeout` passes; Err(Gone::Stalled) on the
    /// timeout.
    pub fn wait_writable(&self, timeout: Duration) -> Result<(), Gone> {
        let inner = self.lock();
        let waiting = |i: &mut Inner| i.out_len > OUT_LOW && i.gone.is_none();
        let guard = match self.changed.wait_timeout_while(inner, timeout, waiting) {
            Ok((g, t)) if t.timed_out() => {
                drop(g);
                return Err(Gone::Stalled);
            }
            Ok((g, _)) => g,
            Err(poisoned) => poisoned.into_inner().0,
        };
        match guard.gone {
            Some(g) => Err(g),
            None => Ok(()),
        }
    }

    /// Response bytes queued and not yet handed to HTTP/2.
    pub fn queued(&self) -> usize {
        self.lock().out_len
    }

    pub fn gone(&self) -> Option<Gone> {
        self.lock().gone
    }

    /// The application queued its response's end.
    pub fn finished(&self) -> bool {
        self.lock().finished
    }

    // ---- the engine's side

    pub(super) fn deliver(&self, data: Bytes) {
        let mut inner = self.lock();
        inner.body_len += data.len();
        inner.body.push_back(data);
        drop(inner);
        self.changed.notify_all();
    }

    pub(super) fn end_body(&self) {
        self.lock().body_ended = true;
        self.changed.notify_all();
    }

    /// Body bytes taken since the last call (window to give back).
    pub(super) fn take_window(&self) -> usize {
        std::mem::take(&mut self.lock().taken)
    }

    /// Body bytes received and not taken: window the client can only get
    /// back once the stream is dropped.
    pub(super) fn untaken(&self) -> usize {
        let inner = self.lock();
        inner.body_len + inner.taken
    }

    pub(super) fn set_gone(&self, gone: Gone) {
        {
            let mut inner = self.lock();
            if inner.gone.is_none() {
                inner.gone = Some(gone);
            }
            inner.out.clear();
            inner.out_len = 0;
        }
        self.changed.notify_all();
    }

    /// Runs `f` on the queued response parts (the engine sends what HTTP/2
    /// flow control allows); wakes a waiting producer once the queue is low.
    pub(super) fn with_out<R>(&self, f: impl FnOnce(&mut VecDeque<Out>, &mut usize) -> R) -> R {
        let mut inner = self.lock();
        let Inner { out, out_len, .. } = &mut *inner;
        let before = *out_len;
        let r = f(out, out_len);
        let drained = before > OUT_LOW && *out_len <= OUT_LOW;
        drop(inner);
        if drained {
            self.changed.notify_all();
        }
        r
    }
}

/// Window is returned to the client once the application has taken this
/// much (or the body ended).
pub const WINDOW_STEP: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Notify for Count {
        fn stream_has_work(&self, _: u64) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn stream() -> (StreamShared, Arc<Count>) {
        let n = Arc::new(Count(Default::default()));
        (StreamShared::new(1, 7, n.clone(), false), n)
    }

    #[test]
    fn body_bytes_are_read_in_order_and_window_goes_back_in_steps() {
        let (s, n) = stream();
        assert_eq!(s.read(10), Read::Empty);
        s.deliver(Bytes::from_static(b"hello "));
        s.deliver(Bytes::from_static(b"world"));
        assert_eq!(s.read(8), Read::Data(b"hello wo".to_vec()));
        assert_eq!(s.read(8), Read::Data(b"rld".to_vec()));
        assert_eq!(n.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        s.deliver(Bytes::from(vec![0u8; WINDOW_STEP]));
        assert!(matches!(s.read(WINDOW_STEP), Read::Data(d) if d.len() == WINDOW_STEP));
        assert_eq!(n.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(s.take_window(), WINDOW_STEP + 11);
        s.end_body();
        assert_eq!(s.read(8), Read::End);
    }

    #[test]
    fn a_gone_stream_refuses_output_and_ends_reads() {
        let (s, _) = stream();
        assert_eq!(s.send([Out::Data(Bytes::from_static(b"x"))]), Ok(1));
        s.set_gone(Gone::Reset(8));
        assert_eq!(s.queued(), 0);
        assert_eq!(s.send([Out::Data(Bytes::from_static(b"x"))]), Err(Gone::Reset(8)));
        assert_eq!(s.read(1), Read::Gone(Gone::Reset(8)));
        assert_eq!(s.wait_writable(Duration::from_millis(1)), Err(Gone::Reset(8)));
    }

    #[test]
    fn a_producer_waits_until_the_queue_is_low() {
        let (s, _) = stream();
        let s = Arc::new(s);
        s.send([Out::Data(Bytes::from(vec![0u8; OUT_HIGH]))]).unwrap();
        assert_eq!(s.wait_writable(Duration::from_millis(10)), Err(Gone::Stalled));
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.wait_writable(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        s.with_out(|out, len| {
            out.clear();
            *len = 0;
        });
        assert_eq!(t.join().unwrap(), Ok(()));
    }
}
