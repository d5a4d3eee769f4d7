//! Blocking socket I/O for a worker that serves one connection at a time:
//! reading a request head, the request body as a `wsgi.input` source, the
//! response sink, and Gunicorn's graceful close. The GIL is released for
//! every wait; an interrupted wait runs Python's signal handlers, which may
//! raise SystemExit (QUIT, ABRT) and end the request.

use crate::http::body::{BodyDecoder, Decoded};
use crate::http::error::HttpError;
use crate::http::policy::HttpPolicy;
use crate::http::request::{HeadParser, Parsed, RequestHead};
use crate::net::proxy_protocol::{parse_proxy_header, ProxyInfo, ProxyMode};
use crate::net::stream::{Peer, Stream};
use crate::wsgi::input::{BodyError, BodySource};
use crate::wsgi::response::{Sink, SinkError};
use pyo3::prelude::*;
use std::io::{self, IoSlice, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub enum ConnError {
    Http(HttpError),
    Io(io::Error),
    /// A signal handler raised while we waited.
    Interrupted(PyErr),
}

/// Waits in `op` with the GIL released; on EINTR runs the signal handlers
/// and tries again.
pub fn blocking<T, F>(py: Python<'_>, mut op: F) -> Result<T, ConnError>
where
    F: FnMut() -> io::Result<T> + Send,
    T: Send,
{
    loop {
        match py.detach(&mut op) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                py.check_signals().map_err(ConnError::Interrupted)?;
            }
            Err(e) => return Err(ConnError::Io(e)),
            Ok(v) => return Ok(v),
        }
    }
}

/// The bytes read from a connection and not yet consumed.
#[derive(Default)]
pub struct ReadBuf {
    pub data: Vec<u8>,
    pub start: usize,
}

impl ReadBuf {
    pub fn new() -> ReadBuf {
        ReadBuf { data: Vec::with_capacity(8192), start: 0 }
    }

    pub fn unread(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// For decoders that work in place (WebSocket unmasking).
    pub fn unread_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..]
    }

    /// Moves unread bytes to the front once at least half the buffer is
    /// spent, so reads append to a buffer that never grows without bound.
    pub fn compact(&mut self) {
        if self.start > 0 && self.start * 2 >= self.data.len() {
            self.data.drain(..self.start);
            self.start = 0;
        }
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.data.len());
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// One non-blocking read into the room after the buffered bytes (made
    /// at least `max`): (bytes read, bytes asked for). 0 read means the
    /// peer closed.
    pub fn recv_nonblocking(&mut self, fd: std::os::fd::RawFd, max: usize) -> io::Result<(usize, usize)> {
        self.compact();
        let len = self.data.len();
        self.data.reserve(max);
        let spare = self.data.spare_capacity_mut();
        let want = spare.len().min(max);
        // SAFETY: recv writes at most `want` bytes into the spare capacity,
        // and only the bytes it wrote are exposed by set_len.
        let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), want, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: see above.
        unsafe { self.data.set_len(len + n as usize) };
        Ok((n as usize, want))
    }

    /// One read of up to `max` bytes; 0 means the peer closed.
    pub fn fill(&mut self, py: Python<'_>, stream: &Stream, max: usize) -> Result<usize, ConnError> {
        self.compact();
        let len = self.data.len();
        self.data.resize(len + max, 0);
        let tail = &mut self.data[len..];
        let result = blocking(py, || {
            let mut s = stream;
            s.read(tail)
        });
        let n = *result.as_ref().unwrap_or(&0);
        self.data.truncate(len + n);
        result
    }
}

/// What came before the application: the head and any PROXY header.
pub struct Incoming {
    pub head: RequestHead,
    pub proxy: Option<ProxyInfo>,
}

/// Reads until a complete, valid request head is buffered. Ok(None): the
/// client closed without sending anything (not an error, as in Gunicorn).
/// The parser is called once per read, which is how Gunicorn judges limits.
pub fn read_head(
    py: Python<'_>,
    stream: &Stream,
    buf: &mut ReadBuf,
    policy: &HttpPolicy,
    peer: Peer,
    proxy_mode: ProxyMode,
) -> Result<Option<Incoming>, ConnError> {
    let mut proxy: Option<ProxyInfo> = None;
    let mut proxy_pending = proxy_mode != ProxyMode::Off;
    let mut parser = HeadParser::new();
    let mut seen_any = !buf.unread().is_empty();
    loop {
        if !buf.unread().is_empty() {
            if proxy_pending {
                match parse_proxy_header(buf.unread(), proxy_mode, peer.ip(), &policy.proxy_allow)
                    .map_err(ConnError::Http)?
                {
                    Parsed::Complete(info, n) => {
                        buf.consume(n);
                        proxy_pending = false;
                        if info.is_some() && buf.unread().is_empty() {
                            // Gunicorn then holds no bytes when it starts on
                            // the request: a CRLF next is an empty request line.
                            parser = HeadParser::without_leading_crlf();
                        }
                        proxy = info;
                        continue;
                    }
                    Parsed::Partial => {}
                }
            } else {
                match parser.parse(buf.unread(), policy, peer.ip()).map_err(ConnError::Http)? {
                    Parsed::Complete(head, n) => {
                        buf.consume(n);
                        return Ok(Some(Incoming { head, proxy }));
                    }
                    Parsed::Partial => {}
                }
            }
        }
        let n = buf.fill(py, stream, 8192)?;
        if n == 0 {
            return if seen_any { Err(ConnError::Http(HttpError::NoMoreData)) } else { Ok(None) };
        }
        seen_any = true;
    }
}

/// Hands the app what `buf` holds of the body: Some(true) when bytes were
/// appended to `out`, Some(false) when the body is complete, None when
/// more must be read first.
pub fn take_buffered_body(
    decoder: &mut BodyDecoder,
    buf: &mut ReadBuf,
    out: &mut Vec<u8>,
) -> Result<Option<bool>, HttpError> {
    let (n, taken) = match decoder.decode(buf.unread())? {
        (n, Decoded::Data(data)) => {
            out.extend_from_slice(data);
            (n, Some(true))
        }
        (n, Decoded::Done) => (n, Some(false)),
        (n, Decoded::NeedMore) => (n, None),
    };
    buf.consume(n);
    Ok(taken)
}

/// `wsgi.input` over the socket: the bytes buffered after the head, then
/// further reads, through the body decoder.
pub struct SocketBody {
    stream: Arc<Stream>,
    buf: ReadBuf,
    decoder: BodyDecoder,
    eof: bool,
}

impl SocketBody {
    pub fn new(stream: Arc<Stream>, buf: ReadBuf, decoder: BodyDecoder) -> SocketBody {
        SocketBody { stream, buf, decoder, eof: false }
    }
}

/// Reads larger than this gain nothing and hold memory per request.
const MAX_READ: usize = 1024 * 1024;

impl BodySource for SocketBody {
    fn fill(&mut self, py: Python<'_>, out: &mut Vec<u8>, want: usize) -> Result<bool, BodyError> {
        loop {
            if let Some(more) = take_buffered_body(&mut self.decoder, &mut self.buf, out).map_err(BodyError::Http)? {
                return Ok(more);
            }
            if self.eof {
                self.decoder.at_eof().map_err(BodyError::Http)?;
                return Ok(false);
            }
            let hint = self.decoder.remaining_hint().unwrap_or(want as u64);
            let size = (hint.max(want as u64) as usize).clamp(8192, MAX_READ);
            match self.buf.fill(py, &self.stream, size) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(ConnError::Io(e)) => return Err(BodyError::Io(e)),
                Err(ConnError::Interrupted(e)) => return Err(BodyError::Interrupted(e)),
                Err(ConnError::Http(e)) => return Err(BodyError::Http(e)),
            }
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// Response bytes straight to the socket: a non-blocking attempt with the
/// GIL held (a small response never waits), then blocking waits without it.
pub struct SocketSink {
    stream: Arc<Stream>,
    sendfile: bool,
}

impl SocketSink {
    pub fn new(stream: Arc<Stream>, sendfile: bool) -> SocketSink {
        SocketSink { stream, sendfile }
    }
}

pub fn write_all(py: Python<'_>, stream: &Stream, bufs: &[&[u8]]) -> Result<(), ConnError> {
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().filter(|b| !b.is_empty()).map(|b| IoSlice::new(b)).collect();
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        match stream.send_nonblocking(rest) {
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let fd = stream.fd();
                blocking(py, || wait_fd(fd, libc::POLLOUT, None).map(|_| ()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                py.check_signals().map_err(ConnError::Interrupted)?;
            }
            Err(e) => return Err(ConnError::Io(e)),
        }
    }
    Ok(())
}

impl Sink for SocketSink {
    fn write_all(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        write_all(py, &self.stream, bufs).map_err(|e| match e {
            ConnError::Interrupted(e) => SinkError::Interrupted(e),
            ConnError::Io(e) => SinkError::Io(e),
            ConnError::Http(e) => SinkError::Io(io::Error::other(e.to_string())),
        })
    }

    fn can_sendfile(&self) -> bool {
        self.sendfile
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }

    fn sendfile(&mut self, py: Python<'_>, fd: i32, offset: u64, count: u64) -> Result<(), SinkError> {
        let sock = self.stream.fd();
        let mut off = offset as libc::off_t;
        let mut left = count;
        while left > 0 {
            // Gunicorn sends at most 1 GiB per call; some kernels choke above 2 GiB.
            let step = left.min(0x3FFF_FFFF) as usize;
            let sent = blocking(py, || {
                // SAFETY: sendfile between two fds we hold; `off` is ours.
                let n = unsafe { libc::sendfile(sock, fd, &mut off, step) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as u64)
                }
            })
            .map_err(|e| match e {
                ConnError::Interrupted(e) => SinkError::Interrupted(e),
                ConnError::Io(e) => SinkError::Io(e),
                ConnError::Http(e) => SinkError::Io(io::Error::other(e.to_string())),
            })?;
            if sent == 0 {
                // The file is shorter than it said: nothing more will come.
                return Err(SinkError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "file ended early")));
            }
            left -= sent;
        }
        Ok(())
    }
}

/// poll(2) for one fd; Ok(false) on timeout.
pub fn wait_fd(fd: i32, events: libc::c_short, timeout: Option<Duration>) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let ms = timeout.map(|t| t.as_millis().min(i32::MAX as u128) as libc::c_int).unwrap_or(-1);
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc > 0)
}

/// Gunicorn's `close_graceful` (RFC 9112 section 9.6), without making the
/// worker wait for the client: the write side is shut at once (the client
/// sees the end of the response), and the socket is kept until the client
/// closes its side, 64 KiB have been drained or 2 seconds have passed, so that
/// closing with unread data never resets the connection and truncates the
/// response. The worker serves the next request meanwhile.
#[derive(Default)]
pub struct Lingerer {
    socks: Vec<Lingering>,
}

struct Lingering {
    stream: Arc<Stream>,
    deadline: Instant,
    drained: usize,
}

const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_DRAIN: usize = 65536;
/// Past this many, lingering sockets are serviced after every request.
const LINGER_BATCH: usize = 16;
/// The most sockets kept at once: beyond it the oldest is waited for.
const LINGER_CAP: usize = 512;

impl Lingerer {
    pub fn new() -> Lingerer {
        Lingerer { socks: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// Ends a connection whose response has been written.
    pub fn close(&mut self, stream: Arc<Stream>) {
        if stream.shutdown(std::net::Shutdown::Write).is_err() {
            return;
        }
        let mut l = Lingering { stream, deadline: Instant::now() + LINGER, drained: 0 };
        // Often the client has already closed: no need to keep it.
        if drain(&mut l) {
            return;
        }
        self.socks.push(l);
        if self.socks.len() > LINGER_CAP {
            let mut oldest = self.socks.remove(0);
            let left = oldest.deadline.saturating_duration_since(Instant::now());
            let _ = wait_fd(oldest.stream.fd(), libc::POLLIN, Some(left));
            drain(&mut oldest);
        }
    }

    /// Whether enough sockets wait that they should be looked at now.
    pub fn due(&self) -> bool {
        self.socks.len() >= LINGER_BATCH
    }

    /// The fds to poll for and how long the earliest may still wait.
    pub fn poll_set(&self, fds: &mut Vec<libc::pollfd>) -> Option<Duration> {
        let now = Instant::now();
        fds.extend(self.socks.iter().map(|l| libc::pollfd { fd: l.stream.fd(), events: libc::POLLIN, revents: 0 }));
        self.socks.iter().map(|l| l.deadline.saturating_duration_since(now)).min()
    }

    /// Drops every socket whose client closed, that drained enough, or whose
    /// time is up; `ready` are the pollfds [`poll_set`] added, after poll.
    pub fn service(&mut self, ready: &[libc::pollfd]) {
        let now = Instant::now();
        let mut i = 0;
        self.socks.retain_mut(|l| {
            let readable = ready.get(i).is_some_and(|p| p.revents != 0);
            i += 1;
            let finished = (readable && drain(l)) || now >= l.deadline;
            !finished
        });
    }

    /// Non-blocking pass over all sockets (while busy serving).
    pub fn service_now(&mut self) {
        let mut fds = Vec::with_capacity(self.socks.len());
        self.poll_set(&mut fds);
        // SAFETY: `fds` is a valid array for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        self.service(&fds);
    }

    /// At worker exit: wait (up to each deadline) for the rest to finish.
    pub fn finish(&mut self) {
        while !self.socks.is_empty() {
            let mut fds = Vec::with_capacity(self.socks.len());
            let wait = self.poll_set(&mut fds).unwrap_or_default();
            let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
            // SAFETY: `fds` is a valid array for the call.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            self.service(&fds);
        }
    }
}

/// Reads and drops what the client sent; true when the socket is done with
/// (the client closed, an error, or the drain limit reached).
fn drain(l: &mut Lingering) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: non-blocking read into a local buffer.
        let n = unsafe { libc::recv(l.stream.fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n > 0 {
            l.drained += n as usize;
            if l.drained >= LINGER_MAX_DRAIN {
                return true;
            }
            continue;
        }
        if n == 0 {
            return true;
        }
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock => false,
            io::ErrorKind::Interrupted => continue,
            _ => true,
        };
    }
}
