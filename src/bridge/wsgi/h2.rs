//! `wsgi.input` and the response sink for a request on an HTTP/2 stream:
//! both go through the stream's [`StreamShared`], which the worker's engine
//! moves to and from the connection. Where nothing can move yet (body bytes
//! that have not come, a client slow to take the response), the request
//! waits as its worker waits ([`StreamWait`]): a gthread thread without the
//! GIL on the stream's condition, waking every second for Python's signal
//! handlers ([`ThreadWait`]); a green worker's greenlet parked on the hub.

use super::input::{BodyError, BodySource};
use super::response::{Sink, SinkError};
use crate::http::error::HttpError;
use crate::http2::stream::{Gone, Head, Out, Read, StreamShared, OUT_HIGH, OUT_LOW};
use bytes::Bytes;
use pyo3::prelude::*;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a stream's `wsgi.input` waits for body bytes when `--timeout`
/// is 0 (as the asgi worker's `receive()`).
pub const DEFAULT_BODY_WAIT: Duration = Duration::from_secs(30);

/// How long a stream's `wsgi.input` waits for body bytes before the client
/// counts as gone, as a socket read would time out: `--timeout`.
pub fn body_wait(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        DEFAULT_BODY_WAIT
    } else {
        timeout
    }
}

/// One slice of a thread's wait, between looks at Python's signal handlers.
const WAIT_SLICE: Duration = Duration::from_secs(1);

/// What a request waits for on its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Body bytes (or the body's end).
    Body,
    /// Room in the response queue.
    Room,
}

/// How a request waits for its stream. A wait may end early (a signal to
/// look at, another reason to wake): the caller looks again and waits
/// again until `deadline`. Err: the wait was interrupted (a signal
/// handler raised, the hub threw in) and the request gives up.
pub trait StreamWait: Send + 'static {
    fn wait(&self, py: Python<'_>, stream: &StreamShared, want: Want, deadline: Instant) -> PyResult<()>;
}

/// A thread's wait: the GIL released, the stream's condition variable.
pub struct ThreadWait;

impl StreamWait for ThreadWait {
    fn wait(&self, py: Python<'_>, stream: &StreamShared, want: Want, deadline: Instant) -> PyResult<()> {
        let slice = deadline.saturating_duration_since(Instant::now()).min(WAIT_SLICE);
        py.detach(|| match want {
            Want::Body => {
                stream.wait_readable(slice);
            }
            Want::Room => {
                let _ = stream.wait_writable(slice);
            }
        });
        py.check_signals()
    }
}

fn gone_error(g: Gone) -> io::Error {
    let what = match g {
        Gone::Reset(code) => format!("HTTP/2 stream reset by the client (error code {code})"),
        Gone::Connection => "HTTP/2 connection closed".to_owned(),
        Gone::Stalled => "HTTP/2 stream stalled: the client gave the response no window".to_owned(),
    };
    io::Error::new(io::ErrorKind::BrokenPipe, what)
}

/// The request body of a stream.
pub struct H2Body<W: StreamWait> {
    stream: Arc<StreamShared>,
    waiter: W,
    /// How long a read waits for body bytes before the client counts as
    /// gone (as a socket read would time out).
    wait: Duration,
    /// `Expect: 100-continue`, not answered yet: the first read does.
    expect_continue: bool,
}

impl<W: StreamWait> H2Body<W> {
    pub fn new(stream: Arc<StreamShared>, waiter: W, wait: Duration, expect_continue: bool) -> H2Body<W> {
        H2Body { stream, waiter, wait, expect_continue }
    }
}

impl<W: StreamWait> BodySource for H2Body<W> {
    fn fill(&mut self, py: Python<'_>, out: &mut Vec<u8>, want: usize) -> Result<bool, BodyError> {
        let deadline = Instant::now() + self.wait;
        loop {
            match self.stream.read(want.max(16 * 1024)) {
                Read::Data(data) => {
                    out.extend_from_slice(&data);
                    return Ok(true);
                }
                Read::End => return Ok(false),
                Read::Gone(_) => return Err(BodyError::Http(HttpError::NoMoreData)),
                Read::Empty => {}
            }
            if std::mem::take(&mut self.expect_continue) {
                let hundred = Head { status: 100, fields: Vec::new() };
                if self.stream.send([Out::Informational(hundred)]).is_err() {
                    return Err(BodyError::Http(HttpError::NoMoreData));
                }
            }
            if Instant::now() >= deadline {
                return Err(BodyError::Http(HttpError::NoMoreData));
            }
            self.waiter.wait(py, &self.stream, Want::Body, deadline).map_err(BodyError::Interrupted)?;
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// The response of a stream.
pub struct H2Sink<W: StreamWait> {
    stream: Arc<StreamShared>,
    waiter: W,
    /// How long a write waits for a client that takes nothing.
    stall: Duration,
}

impl<W: StreamWait> H2Sink<W> {
    pub fn new(stream: Arc<StreamShared>, waiter: W, stall: Duration) -> H2Sink<W> {
        H2Sink { stream, waiter, stall }
    }

    fn queue(&self, parts: Vec<Out>) -> Result<usize, SinkError> {
        self.stream.send(parts).map_err(|g| SinkError::Io(gone_error(g)))
    }

    /// Waits until at most [`OUT_LOW`] bytes are queued.
    fn wait_room(&self, py: Python<'_>) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.stall;
        loop {
            if let Some(g) = self.stream.gone() {
                return Err(SinkError::Io(gone_error(g)));
            }
            if self.stream.queued() <= OUT_LOW {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SinkError::Io(gone_error(Gone::Stalled)));
            }
            self.waiter.wait(py, &self.stream, Want::Room, deadline).map_err(SinkError::Interrupted)?;
        }
    }
}

fn joined(bufs: &[&[u8]]) -> Bytes {
    match bufs.iter().filter(|b| !b.is_empty()).count() {
        0 => Bytes::new(),
        1 => bufs.iter().find(|b| !b.is_empty()).map(|b| Bytes::copy_from_slice(b)).unwrap_or_default(),
        _ => Bytes::from(bufs.concat()),
    }
}

impl<W: StreamWait> Sink for H2Sink<W> {
    fn write_all(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        let queued = self.queue(vec![Out::Data(joined(bufs))])?;
        if queued > OUT_HIGH {
            self.wait_room(py)?;
        }
        Ok(())
    }

    fn write_final(&mut self, _py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        // The engine sends the rest; the request is free.
        self.queue(vec![Out::Data(joined(bufs)), Out::End(None)]).map(|_| ())
    }

    fn can_sendfile(&self) -> bool {
        // sendfile(2) would bypass the HTTP/2 framing.
        false
    }

    fn sendfile(&mut self, _py: Python<'_>, _fd: i32, _offset: u64, _count: u64) -> Result<(), SinkError> {
        Err(SinkError::Io(io::Error::new(io::ErrorKind::Unsupported, "sendfile on an HTTP/2 stream")))
    }

    fn takes_fields(&self) -> bool {
        true
    }

    fn head(&mut self, status: u16, fields: Vec<(Vec<u8>, Vec<u8>)>) {
        // A gone stream is found out by the next write.
        let _ = self.stream.send([Out::Head(Head { status, fields })]);
    }

    fn informational(&mut self, status: u16, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), SinkError> {
        self.queue(vec![Out::Informational(Head { status, fields })]).map(|_| ())
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}
