//! A client connection of an event-driven worker (gthread, asgi): the
//! socket, the sans-I/O HTTP/1 state (`http::conn::ServerConn`), the bytes
//! the client has not taken yet, what the last epoll edge said, and the
//! deadline that applies. [`Conn::progress`] moves it while no request of
//! it is in the application's hands: send, read, parse, read a body ahead,
//! refuse, linger, until it has a request for the application, must wait
//! for the socket, or is done.

use super::output::{Lent, OutQueue, Sent};
use super::slab::ConnToken;
use super::sock::{self, Discarded};
use crate::http::conn::{has_no_body, BodyRead, Event, Request, ServerConn, Wait};
use crate::http::error::HttpError;
use crate::http::policy::HttpPolicy;
use crate::http2::preface::H2Offer;
use crate::http2::session::H2Session;
use crate::http2::stream::Notify;
use crate::http2::H2Config;
use crate::net::proxy_protocol::ProxyMode;
use crate::net::stream::{Peer, Stream};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request body is read by the engine up to this much before the request
/// goes to the application, so that a slow upload of a typical form or JSON
/// body never holds a Python thread or task. Larger bodies stream from there.
pub const PREBUFFER: usize = 64 * 1024;
/// One read's worth for heads and bodies.
pub const READ_SIZE: usize = 16 * 1024;

/// How a connection is registered: once, edge-triggered, both ways, with
/// the peer's FIN reported. No `epoll_ctl` per request; each connection
/// remembers its last edge in an [`Edge`] instead.
pub const EDGE_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// What the last edge said of a connection, as long as no read or write
/// has said otherwise since. An edge comes once: a connection believed
/// readable must be read before the worker waits for it again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Edge {
    pub readable: bool,
    pub writable: bool,
    /// The peer's FIN came with an edge: a short read no longer means the
    /// socket is drained (the 0 of EOF is still to read).
    pub rdhup: bool,
    /// The connection failed or was hung up.
    pub hup: bool,
}

impl Edge {
    /// Takes in an epoll event's flags.
    pub fn note(&mut self, flags: u32) {
        let (inp, out, rdhup, hup, err) = (
            libc::EPOLLIN as u32,
            libc::EPOLLOUT as u32,
            libc::EPOLLRDHUP as u32,
            libc::EPOLLHUP as u32,
            libc::EPOLLERR as u32,
        );
        if flags & (inp | rdhup | hup | err) != 0 {
            self.readable = true;
        }
        if flags & out != 0 {
            self.writable = true;
        }
        if flags & rdhup != 0 {
            self.rdhup = true;
        }
        if flags & (hup | err) != 0 {
            self.hup = true;
        }
    }

    /// An edge may have come that nobody saw: try both ways once.
    pub fn assume_ready(&mut self) {
        self.readable = true;
        self.writable = true;
    }
}

/// A request for the application, with what the engine read of its body.
#[derive(Debug)]
pub struct Inbound {
    pub request: Box<Request>,
    pub body: Vec<u8>,
    /// A framing error met while reading ahead: raised when the application
    /// reads past `body`, as Gunicorn raises it from `wsgi.input.read()`.
    pub error: Option<HttpError>,
}

/// Where [`Conn::progress`] left a connection.
#[derive(Debug)]
pub enum Progress {
    /// A request for the application (the connection goes with it, or
    /// waits for it, as the worker type does).
    Dispatch(Inbound),
    /// Keep it until its next edge or its deadline.
    Keep,
    /// Close it now.
    Close,
    /// It is an HTTP/2 connection from here: [`Conn::start_h2`].
    Http2,
}

/// The deadlines of an event-driven worker's connections.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub keepalive: Duration,
    /// `--request-head-timeout`: a request head, once begun, must be whole
    /// within this (None: no limit).
    pub head: Option<Duration>,
}

impl Deadlines {
    pub fn from_settings(settings: &crate::settings::Settings) -> Deadlines {
        let head = Some(settings.request_head_timeout).filter(|d| !d.is_zero());
        Deadlines { keepalive: settings.keepalive, head }
    }
}

/// A new connection gets this long, plus the keep-alive time, to send
/// something (Gunicorn's worker parks a silent new connection after its
/// data timeout).
const FIRST_DATA: Duration = Duration::from_secs(5);
const DRAIN_TIME: Duration = Duration::from_secs(5);
const LINGER_TIME: Duration = Duration::from_secs(2);
/// Once the worker stops, idle connections live this long at most, so a
/// request already on its way is still answered (with `Connection: close`).
pub const STOP_IDLE: Duration = Duration::from_secs(2);

impl Deadlines {
    fn limit(&self, wait: Wait) -> Option<Duration> {
        match wait {
            Wait::FirstRequest => Some(FIRST_DATA + self.keepalive),
            Wait::KeepAlive => Some(self.keepalive),
            Wait::Drain => Some(DRAIN_TIME),
            Wait::Linger => Some(LINGER_TIME),
            // Gunicorn waits for the rest of a head without a limit; a
            // client that trickles one then holds a connection for ever.
            Wait::Request => self.head,
            // The application's time, not the client's.
            Wait::Exchange => None,
        }
    }
}

/// When the engine closes a connection if nothing happens. Set when the
/// kind of wait changes and kept while it does not, so a client that
/// trickles bytes during a drain or a linger does not extend it.
#[derive(Debug, Default)]
pub struct Timer {
    wait: Option<Wait>,
    pub deadline: Option<Instant>,
    /// Since when the connection has been waiting for a request head (a
    /// new or kept-alive connection, or a head arriving): the one waiting
    /// longest makes room when the worker is full.
    head_wait_since: Option<Instant>,
}

impl Timer {
    pub fn follow(&mut self, wait: Wait, now: Instant, limits: &Deadlines, stopping: bool) {
        if self.wait == Some(wait) {
            return;
        }
        self.head_wait_since = match wait {
            Wait::FirstRequest | Wait::KeepAlive | Wait::Request => Some(self.head_wait_since.unwrap_or(now)),
            Wait::Exchange | Wait::Drain | Wait::Linger => None,
        };
        self.wait = Some(wait);
        self.deadline = limits.limit(wait).map(|d| now + d);
        if stopping {
            self.cap_for_stop(now);
        }
    }

    /// The worker stops: an idle connection gets [`STOP_IDLE`] at most.
    pub fn cap_for_stop(&mut self, now: Instant) {
        if matches!(self.wait, Some(Wait::FirstRequest | Wait::KeepAlive)) {
            let cap = now + STOP_IDLE;
            self.deadline = Some(self.deadline.map_or(cap, |d| d.min(cap)));
        }
    }

    pub fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }

    pub fn head_wait_since(&self) -> Option<Instant> {
        self.head_wait_since
    }
}

/// Of the connections waiting for a request head, the one waiting longest:
/// what a full worker closes to admit a new client, so that connections
/// that never complete a head (slowloris, idle floods) cannot keep new
/// clients out.
pub fn longest_head_wait<'a>(conns: impl Iterator<Item = &'a Conn>) -> Option<ConnToken> {
    conns.filter_map(|c| c.timer.head_wait_since().map(|t| (t, c.token))).min_by_key(|(t, _)| *t).map(|(_, k)| k)
}

pub struct Conn {
    pub stream: Arc<Stream>,
    pub peer: Peer,
    /// Index of the listener it came from (SERVER_NAME, SERVER_PORT).
    pub listener: usize,
    pub token: ConnToken,
    pub http: ServerConn,
    pub out: OutQueue,
    pub timer: Timer,
    pub edge: Edge,
    /// The write side is shut (lingering).
    write_shut: bool,
    /// Given up on (a thread met an error with it): close it.
    abandoned: bool,
    /// A request whose body is being read ahead.
    inbound: Option<Inbound>,
    /// HTTP/2 if ALPN chooses it, once the TLS handshake is over.
    alpn_h2_pending: bool,
    /// The connection is HTTP/2: its session has it.
    pub h2: Option<Box<H2Session>>,
}

/// What one read found.
enum Read {
    /// Bytes, or the end of the input: look again.
    Progress,
    /// Nothing to read until the next edge.
    Drained,
    /// The connection failed.
    Failed,
}

impl Conn {
    pub fn new(stream: Stream, peer: Peer, listener: usize, token: ConnToken, proxy: ProxyMode) -> Conn {
        Conn {
            stream: Arc::new(stream),
            peer,
            listener,
            token,
            http: ServerConn::new(proxy),
            out: OutQueue::default(),
            timer: Timer::default(),
            // A new socket has room to write; whether it has anything to
            // read, its first edge says.
            edge: Edge { writable: true, ..Edge::default() },
            write_shut: false,
            abandoned: false,
            inbound: None,
            alpn_h2_pending: false,
            h2: None,
        }
    }

    /// Lets the connection become HTTP/2 (the worker decided the offer from
    /// the settings, the listener and the peer).
    pub fn offer_h2(&mut self, offer: H2Offer) {
        match offer {
            H2Offer::Alpn => self.alpn_h2_pending = true,
            other => self.http.offer_h2(other),
        }
    }

    /// Hands the connection to an HTTP/2 session, with what was read of it.
    pub fn start_h2(&mut self, config: Arc<H2Config>, tag: u64, notify: Arc<dyn Notify>) {
        let first = self.http.take_unread();
        self.h2 = Some(Box::new(H2Session::new(self.stream.clone(), &first, config, tag, notify)));
    }

    pub fn fd(&self) -> i32 {
        self.stream.fd()
    }

    /// Moves the connection as far as it can go while no request of it is
    /// with the application.
    pub fn progress(&mut self, policy: &HttpPolicy, pool: &mut BufferPool) -> Progress {
        if self.abandoned {
            return Progress::Close;
        }
        loop {
            if self.alpn_h2_pending {
                if let Some(tls) = self.stream.tls().filter(|t| !t.is_handshaking()) {
                    self.alpn_h2_pending = false;
                    if tls.alpn_is_h2() {
                        self.http.offer_h2(H2Offer::Alpn);
                    }
                }
            }
            if self.has_output() {
                match self.flush() {
                    Ok(true) => {}
                    Ok(false) => return Progress::Keep,
                    Err(e) => {
                        sock::log_socket_error(&e);
                        return Progress::Close;
                    }
                }
            }
            if self.http.is_lingering() {
                return self.linger();
            }
            if let Some(mut inbound) = self.inbound.take() {
                match self.read_ahead(&mut inbound, pool) {
                    Some(Read::Failed) => return Progress::Close,
                    Some(Read::Drained | Read::Progress) => {
                        self.inbound = Some(inbound);
                        return Progress::Keep;
                    }
                    None => return Progress::Dispatch(inbound),
                }
            }
            match self.http.next_event(policy, self.peer.ip()) {
                Event::Request(request) => {
                    let inbound = Inbound { request, body: Vec::new(), error: None };
                    // A client that asked for 100-continue waits for it
                    // before it sends the body: no reading ahead.
                    if inbound.request.head.expect_continue || has_no_body(&inbound.request.head) {
                        return Progress::Dispatch(inbound);
                    }
                    self.inbound = Some(inbound);
                }
                Event::NeedData => match self.read(pool) {
                    Read::Progress => {}
                    Read::Drained => return Progress::Keep,
                    Read::Failed => return Progress::Close,
                },
                Event::Paused => return Progress::Keep,
                Event::Http2 => return Progress::Http2,
                Event::Reject(e) => self.refuse(&e),
                // The lingering branch takes it from here.
                Event::Close => {}
            }
        }
    }

    /// Reads the body ahead until [`PREBUFFER`] or its end (None: ready for
    /// the application), or until the socket is drained.
    fn read_ahead(&mut self, inbound: &mut Inbound, pool: &mut BufferPool) -> Option<Read> {
        loop {
            match self.http.read_body(&mut inbound.body, PREBUFFER) {
                Ok(BodyRead::Complete) => return None,
                Ok(BodyRead::Data) if inbound.body.len() >= PREBUFFER => return None,
                Ok(BodyRead::Data) => {}
                Ok(BodyRead::NeedData) => match self.read(pool) {
                    Read::Progress => {}
                    other => return Some(other),
                },
                Err(e) => {
                    inbound.error = Some(e);
                    return None;
                }
            }
        }
    }

    /// One read where the last edge said there is something.
    fn read(&mut self, pool: &mut BufferPool) -> Read {
        if !self.edge.readable || self.http.peer_closed() {
            return Read::Drained;
        }
        pool.lend(self);
        match self.read_edge() {
            Ok(_) => Read::Progress,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if self.edge.hup {
                    Read::Failed
                } else {
                    Read::Drained
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Read::Progress,
            Err(e) => {
                sock::log_socket_error(&e);
                Read::Failed
            }
        }
    }

    /// One read for an edge-triggered worker: a short read drained the
    /// socket (unless the FIN came with the edge), and so does EAGAIN, so
    /// the connection then waits for its next edge.
    pub fn read_edge(&mut self) -> io::Result<usize> {
        let asked = self.http.read_hint(READ_SIZE, PREBUFFER);
        match self.stream.recv_into(self.http.buffer(), asked) {
            Ok(got) => {
                if got.n == 0 {
                    self.http.received_eof();
                } else if got.drained && !self.edge.rdhup {
                    self.edge.readable = false;
                }
                Ok(got.n)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.edge.readable = false;
                }
                Err(e)
            }
        }
    }

    /// The connection is not to be used again: [`Conn::progress`] closes it.
    pub fn abandon(&mut self) {
        self.abandoned = true;
    }

    /// Whether the engine has something to do with it now (else its next
    /// edge or deadline will tell).
    pub fn needs_engine(&self) -> bool {
        self.abandoned || if self.has_output() { self.edge.writable } else { self.edge.readable }
    }

    /// Bytes wait to be sent: queued here, or (over TLS) encrypted and
    /// not written yet.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || self.stream.has_pending()
    }

    /// Sends what is queued; Ok(true) when all has gone.
    pub fn flush(&mut self) -> io::Result<bool> {
        if !self.edge.writable {
            return Ok(!self.has_output());
        }
        match self.out.flush(&self.stream)? {
            Sent::All => Ok(true),
            Sent::Blocked => {
                self.edge.writable = false;
                Ok(false)
            }
        }
    }

    /// Sends `parts` after what is queued, as far as the socket takes them
    /// now; the rest is queued.
    pub fn send(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        if self.out.send(&self.stream, parts, self.edge.writable)? == Sent::Blocked {
            self.edge.writable = false;
        }
        Ok(())
    }

    /// As [`Conn::send`], but what the socket does not take of `body` is
    /// kept by reference rather than copied.
    pub fn send_lending(&mut self, prefix: &[u8], body: Lent, suffix: &[u8]) -> io::Result<()> {
        if self.out.send_lending(&self.stream, prefix, body, suffix, self.edge.writable)? == Sent::Blocked {
            self.edge.writable = false;
        }
        Ok(())
    }

    /// A request refused before the application: Gunicorn's log line and
    /// error page; the connection then lingers and closes.
    pub fn refuse(&mut self, e: &HttpError) {
        log_refused(self.peer, e);
        if let Some(page) = e.response() {
            self.out.push(&page.to_bytes());
        }
    }

    /// Gunicorn's close_graceful: once the output is out, shut the write
    /// side and read until the client closes, within limits.
    fn linger(&mut self) -> Progress {
        if self.http.peer_closed() || self.edge.hup {
            return Progress::Close;
        }
        if !self.write_shut {
            if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
                return Progress::Close;
            }
            self.write_shut = true;
        }
        if !self.edge.readable {
            return Progress::Keep;
        }
        match sock::discard_input(self.fd(), self.http.linger_allowance()) {
            Discarded::WouldBlock(n) if !self.http.lingered(n) => {
                self.edge.readable = false;
                Progress::Keep
            }
            _ => Progress::Close,
        }
    }

    /// Applies the deadline the connection's wait calls for. While the
    /// client is still taking a response, it has no deadline of its own.
    pub fn follow_timer(&mut self, now: Instant, limits: &Deadlines, stopping: bool) {
        let wait = if self.has_output() { Wait::Exchange } else { self.http.waiting_for() };
        self.timer.follow(wait, now, limits, stopping);
    }
}

/// Gunicorn's line for a request it refuses (the client leaving mid-head
/// is only a debug line, and gets no answer).
pub fn log_refused(peer: Peer, e: &HttpError) {
    match e {
        HttpError::NoMoreData => crate::log::debug!("Ignored premature client disconnection. No more data after: b''"),
        // Gunicorn's WSGI workers take a refused packet for a crash (an
        // error with the exception's class and text); its asgi worker for
        // a debug line.
        HttpError::Uwsgi { error, answered: true } => {
            crate::log::error!("Error handling request (no URI read)\n{}: {error}", error.class_name())
        }
        HttpError::Uwsgi { error, answered: false } => crate::log::debug!("uWSGI parse error: {error}"),
        e => crate::log::warning!("Invalid request from ip={}: {e}", peer_ip(peer)),
    }
}

/// The client's address as log lines show it (empty for a Unix socket).
pub fn peer_ip(peer: Peer) -> String {
    peer.ip().map(|ip| ip.to_string()).unwrap_or_default()
}

/// Read buffers of connections that went idle, lent to the next ones that
/// read: an idle keep-alive connection holds no buffer (it costs only its
/// `Conn`), and a busy one does not cost a malloc and a free per request.
#[derive(Default)]
pub struct BufferPool {
    spare: Vec<Vec<u8>>,
}

impl BufferPool {
    /// Buffers kept at most; more are freed.
    const KEEP: usize = 64;

    /// Before a read: a connection without a buffer borrows one.
    pub fn lend(&mut self, conn: &mut Conn) {
        if conn.http.has_buffer() {
            return;
        }
        if let Some(storage) = self.spare.pop() {
            if let Some(unused) = conn.http.lend_buffer(storage) {
                self.spare.push(unused);
            }
        }
    }

    /// The connection waits for a new request with nothing unread: its
    /// buffer comes back here (or is freed).
    pub fn reclaim(&mut self, conn: &mut Conn) {
        if let Some(storage) = conn.http.release_buffer() {
            if self.spare.len() < Self::KEEP {
                self.spare.push(storage);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::core::slab::Slab;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_deadline_is_set_when_the_wait_changes_kind_and_kept_while_it_does_not() {
        let limits = Deadlines { keepalive: Duration::from_secs(2), head: Some(Duration::from_secs(30)) };
        let t0 = Instant::now();
        let mut timer = Timer::default();
        timer.follow(Wait::FirstRequest, t0, &limits, false);
        assert_eq!(timer.deadline, Some(t0 + FIRST_DATA + limits.keepalive));
        // A head arriving: the whole head within its limit, the wait for
        // it counted from the first connection.
        timer.follow(Wait::Request, t0, &limits, false);
        assert_eq!(timer.deadline, Some(t0 + Duration::from_secs(30)));
        assert_eq!(timer.head_wait_since(), Some(t0));
        timer.follow(Wait::Exchange, t0, &limits, false);
        assert_eq!((timer.deadline, timer.head_wait_since()), (None, None));
        let t1 = t0 + Duration::from_secs(1);
        timer.follow(Wait::Drain, t1, &limits, false);
        timer.follow(Wait::Drain, t1 + Duration::from_secs(3), &limits, false);
        assert_eq!(timer.deadline, Some(t1 + DRAIN_TIME), "a trickling client does not extend it");
        timer.follow(Wait::KeepAlive, t1, &limits, false);
        assert!(!timer.expired(t1 + Duration::from_secs(1)) && timer.expired(t1 + Duration::from_secs(2)));
        timer.follow(Wait::KeepAlive, t1, &limits, false);
        timer.cap_for_stop(t1);
        assert_eq!(timer.deadline, Some(t1 + limits.keepalive.min(STOP_IDLE)));
    }

    fn conn_pair() -> (Conn, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        let mut slab: Slab<ConnToken, ()> = Slab::default();
        let conn = Conn::new(Stream::Unix(ours), Peer::Unix, 0, slab.reserve(), ProxyMode::Off);
        (conn, theirs)
    }

    #[test]
    fn a_request_with_a_body_is_read_ahead_then_dispatched() {
        let (mut conn, mut client) = conn_pair();
        let mut pool = BufferPool::default();
        let policy = HttpPolicy::default();
        client.write_all(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel").expect("write");
        conn.edge.note(libc::EPOLLIN as u32);
        assert!(matches!(conn.progress(&policy, &mut pool), Progress::Keep), "the body is not all here");
        client.write_all(b"lo").expect("write");
        conn.edge.note(libc::EPOLLIN as u32);
        match conn.progress(&policy, &mut pool) {
            Progress::Dispatch(inbound) => {
                assert_eq!(inbound.request.head.path, "/x");
                assert_eq!(inbound.body, b"hello");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_request_is_answered_then_the_connection_lingers_and_closes() {
        let (mut conn, mut client) = conn_pair();
        let mut pool = BufferPool::default();
        client.write_all(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").expect("write");
        conn.edge.note(libc::EPOLLIN as u32);
        assert!(matches!(conn.progress(&HttpPolicy::default(), &mut pool), Progress::Keep));
        assert!(conn.http.is_lingering());
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).expect("the write side is shut after the page");
        assert!(answer.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{answer:?}");
        drop(client);
        conn.edge.note(libc::EPOLLIN as u32);
        assert!(matches!(conn.progress(&HttpPolicy::default(), &mut pool), Progress::Close));
    }
}
