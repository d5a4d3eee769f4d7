//! One client connection of an event-driven worker (gthread, asgi) and the
//! HTTP/1 request state machine around it: the worker's event loop reads and
//! calls [`Conn::advance`] until a request is ready, hands it to Python
//! (a gthread thread, an asgi task), and calls it again afterwards to find a
//! pipelined one. Flushing, draining an unread body and lingering before a
//! close are the same for every such worker.

use crate::http::body::{BodyDecoder, Decoded};
use crate::http::error::HttpError;
use crate::http::policy::HttpPolicy;
use crate::http::request::{BodyFraming, HeadParser, Parsed, RequestHead};
use crate::net::proxy_protocol::{parse_proxy_header, ProxyInfo, ProxyMode};
use crate::net::stream::{Peer, Stream};
use crate::workers::conn::ReadBuf;
use std::io;
use std::sync::Arc;
use std::time::Instant;

/// A request body is read by the engine up to this much before a thread is
/// given the request, so that a slow upload of a typical form or JSON body
/// never holds a Python thread. Larger bodies stream to the app from there.
pub const PREBUFFER: usize = 64 * 1024;
/// One read's worth for heads and bodies.
const READ_SIZE: usize = 16 * 1024;
/// Gunicorn drains at most this much of a body the app left unread before
/// reusing a connection.
pub const DRAIN_MAX: usize = 64 * 1024;
/// And lingers at most this much after a response (close_graceful).
pub const LINGER_MAX: usize = 64 * 1024;

/// How event-driven workers register a connection: once, edge-triggered,
/// both ways, with the peer's FIN reported. No `epoll_ctl` per request; the
/// worker remembers each edge in an [`Edge`] instead.
pub const EDGE_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// What the last edge said of a connection, as long as no read or write
/// has said otherwise since. With edge-triggered epoll an edge comes once:
/// a connection believed readable must be read before the worker waits
/// for it again.
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

/// A complete request head and what the engine read of its body.
pub struct Pending {
    pub head: RequestHead,
    pub decoder: BodyDecoder,
    pub body: Vec<u8>,
    /// A framing error met while prebuffering: raised when the app reads
    /// past `body`, as Gunicorn raises it from `wsgi.input.read()`.
    pub error: Option<HttpError>,
}

/// What to do once pending output has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    KeepAlive,
    Linger,
}

pub enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Head complete; prebuffering the body.
    Body(Box<Pending>),
    /// Writing `out`, then `After`.
    Flush(After),
    /// Discarding what the app left unread of the last body, then reuse.
    Drain { decoder: Box<BodyDecoder>, drained: usize },
    /// Write side shut; reading until the client closes (close_graceful).
    Linger { drained: usize },
    /// To be closed now.
    Close,
}

pub enum Step {
    /// A request for a thread.
    Dispatch(Box<Pending>),
    NeedRead,
    /// A request the engine must refuse itself (400, 414, 431, 501, 417...).
    Reject(HttpError),
    /// Nothing more will come: close without an answer.
    Done,
}

pub struct Conn {
    pub stream: Arc<Stream>,
    pub peer: Peer,
    /// Index of the listener it came from (SERVER_NAME/SERVER_PORT).
    pub listener: usize,
    pub token: u64,
    pub buf: ReadBuf,
    parser: HeadParser,
    proxy_pending: bool,
    /// From the PROXY header; it only applies to the first request.
    pub proxy: Option<ProxyInfo>,
    pub requests: u64,
    pub phase: Phase,
    pub out: Vec<u8>,
    pub out_pos: usize,
    /// When the engine closes it if nothing happens (idle keep-alive,
    /// drain and linger time limits).
    pub deadline: Option<Instant>,
    /// The peer shut its write side: no more request bytes will come.
    pub eof: bool,
    /// For a worker that registers the connection edge-triggered.
    pub edge: Edge,
}

impl Conn {
    pub fn new(stream: Stream, peer: Peer, listener: usize, token: u64, proxy: ProxyMode) -> Conn {
        Conn {
            stream: Arc::new(stream),
            peer,
            listener,
            token,
            buf: ReadBuf::default(),
            parser: HeadParser::new(),
            proxy_pending: proxy != ProxyMode::Off,
            proxy: None,
            requests: 0,
            phase: Phase::Head,
            out: Vec::new(),
            out_pos: 0,
            deadline: None,
            eof: false,
            // A new socket has room to write; whether it has anything to
            // read, its first edge says.
            edge: Edge { writable: true, ..Edge::default() },
        }
    }

    pub fn fd(&self) -> i32 {
        self.stream.fd()
    }

    /// The engine slot this connection lives in.
    pub fn slot(&self) -> usize {
        slot_index(self.token)
    }

    /// Idle: waiting for a new request with nothing of it buffered.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head) && self.buf.unread().is_empty()
    }

    /// One read of `read_size()` for an edge-triggered worker: a short
    /// read drained the socket (unless the FIN came with the edge), and so
    /// does EAGAIN, so the connection then waits for its next edge.
    pub fn read_edge(&mut self) -> io::Result<usize> {
        match self.buf.recv_nonblocking(self.stream.fd(), self.read_size()) {
            Ok((n, asked)) => {
                if n == 0 {
                    self.eof = true;
                } else if n < asked && !self.edge.rdhup {
                    self.edge.readable = false;
                }
                Ok(n)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.edge.readable = false;
                }
                Err(e)
            }
        }
    }

    /// How much the next read should ask for.
    pub fn read_size(&self) -> usize {
        match &self.phase {
            Phase::Body(p) => {
                p.decoder.remaining_hint().map_or(READ_SIZE, |h| (h as usize).clamp(READ_SIZE, PREBUFFER))
            }
            _ => READ_SIZE,
        }
    }

    /// Moves the request state forward with what is buffered.
    pub fn advance(&mut self, policy: &HttpPolicy) -> Step {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Head) {
                Phase::Head => {
                    if self.buf.unread().is_empty() {
                        return if self.eof { Step::Done } else { Step::NeedRead };
                    }
                    if self.proxy_pending {
                        match parse_proxy_header(
                            self.buf.unread(),
                            policy.proxy_protocol,
                            self.peer.ip(),
                            &policy.proxy_allow,
                        ) {
                            Ok(Parsed::Complete(info, n)) => {
                                self.buf.consume(n);
                                self.proxy_pending = false;
                                if info.is_some() && self.buf.unread().is_empty() {
                                    // Gunicorn then starts the request with no
                                    // bytes in hand: a CRLF is an empty line.
                                    self.parser = HeadParser::without_leading_crlf();
                                }
                                self.proxy = info;
                                continue;
                            }
                            Ok(Parsed::Partial) => return self.partial(),
                            Err(e) => return Step::Reject(e),
                        }
                    }
                    match self.parser.parse(self.buf.unread(), policy, self.peer.ip()) {
                        Ok(Parsed::Complete(head, n)) => {
                            self.buf.consume(n);
                            self.parser = HeadParser::new();
                            let decoder = BodyDecoder::new(&head.body, policy);
                            let immediate = head.expect_continue
                                || matches!(head.body, BodyFraming::Empty | BodyFraming::Length(0));
                            let pending = Box::new(Pending { head, decoder, body: Vec::new(), error: None });
                            if immediate {
                                // A client that asked for 100-continue waits
                                // for it before sending the body.
                                return Step::Dispatch(pending);
                            }
                            self.phase = Phase::Body(pending);
                        }
                        Ok(Parsed::Partial) => return self.partial(),
                        Err(e) => return Step::Reject(e),
                    }
                }
                Phase::Body(mut p) => loop {
                    if p.body.len() >= PREBUFFER {
                        return Step::Dispatch(p);
                    }
                    match p.decoder.decode(self.buf.unread()) {
                        Ok((n, Decoded::Data(d))) => {
                            p.body.extend_from_slice(d);
                            self.buf.consume(n);
                        }
                        Ok((n, Decoded::Done)) => {
                            self.buf.consume(n);
                            return Step::Dispatch(p);
                        }
                        Ok((n, Decoded::NeedMore)) => {
                            self.buf.consume(n);
                            if self.eof {
                                if let Err(e) = p.decoder.at_eof() {
                                    p.error = Some(e);
                                }
                                return Step::Dispatch(p);
                            }
                            self.phase = Phase::Body(p);
                            return Step::NeedRead;
                        }
                        Err(e) => {
                            p.error = Some(e);
                            return Step::Dispatch(p);
                        }
                    }
                },
                other => {
                    self.phase = other;
                    return Step::NeedRead;
                }
            }
        }
    }

    /// A head or PROXY header still incomplete: wait, unless the peer is gone.
    fn partial(&mut self) -> Step {
        self.phase = Phase::Head;
        if self.eof {
            // Gunicorn: NoMoreData, no answer.
            Step::Done
        } else {
            Step::NeedRead
        }
    }

    /// Discards buffered body bytes the app did not read; true once the
    /// body is complete.
    pub fn discard_body(&mut self, decoder: &mut BodyDecoder, drained: &mut usize) -> Result<bool, HttpError> {
        loop {
            match decoder.decode(self.buf.unread())? {
                (n, Decoded::Data(d)) => {
                    *drained += d.len();
                    self.buf.consume(n);
                }
                (n, Decoded::Done) => {
                    self.buf.consume(n);
                    return Ok(true);
                }
                (n, Decoded::NeedMore) => {
                    self.buf.consume(n);
                    if self.eof {
                        decoder.at_eof()?;
                        return Ok(decoder.is_done());
                    }
                    return Ok(false);
                }
            }
        }
    }

    /// Writes pending output without blocking; true when all has left.
    pub fn flush_out(&mut self) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.stream.send_nonblocking(&[io::IoSlice::new(&self.out[self.out_pos..])]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.edge.writable = false;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out = Vec::new();
        self.out_pos = 0;
        Ok(true)
    }

    /// Takes the read buffer out while the connection waits for a new
    /// request with nothing unread.
    fn take_idle_buffer(&mut self) -> Option<Vec<u8>> {
        if !self.buf.unread().is_empty() || self.buf.data.capacity() == 0 {
            return None;
        }
        let mut data = std::mem::take(&mut self.buf).data;
        data.clear();
        Some(data)
    }
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
        if conn.buf.data.capacity() == 0 {
            if let Some(data) = self.spare.pop() {
                conn.buf = ReadBuf { data, start: 0 };
            }
        }
    }

    /// The connection waits for a new request with nothing unread: its
    /// buffer comes back here (or is freed).
    pub fn reclaim(&mut self, conn: &mut Conn) {
        if let Some(data) = conn.take_idle_buffer() {
            if self.spare.len() < Self::KEEP {
                self.spare.push(data);
            }
        }
    }
}

/// The connections of an event-driven worker, found by their epoll token:
/// the slot index in the low 32 bits, the slot's generation in the high
/// ones, so an event for a connection already closed (its slot since
/// reused) finds nothing. A connection is taken out of its slot while
/// something works on it (a gthread thread, the asgi server's `drive`) and
/// put back after; its slot stays reserved meanwhile.
pub struct Slots<C> {
    slots: Vec<Slot<C>>,
    free: Vec<u32>,
}

struct Slot<C> {
    generation: u32,
    conn: Option<Box<C>>,
    reserved: bool,
}

impl<C> Default for Slots<C> {
    fn default() -> Self {
        Slots { slots: Vec::new(), free: Vec::new() }
    }
}

/// A token for slot `index` in its `generation` (see [`Slots`]).
pub fn slot_token(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

/// The slot index in a token.
pub fn slot_index(tok: u64) -> usize {
    (tok & 0xffff_ffff) as usize
}

/// The slot generation in a token.
pub fn slot_generation(tok: u64) -> u32 {
    (tok >> 32) as u32
}

impl<C> Slots<C> {
    /// Reserves a slot for a new connection: its token.
    pub fn reserve(&mut self) -> u64 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { generation: 0, conn: None, reserved: false });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.reserved = true;
        slot_token(index, slot.generation)
    }

    /// Frees a slot (its connection, if held, is dropped); its next token
    /// differs from every earlier one.
    pub fn release(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.reserved = false;
        slot.conn = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index as u32);
    }

    fn current(&self, tok: u64) -> Option<&Slot<C>> {
        self.slots.get(slot_index(tok)).filter(|s| s.reserved && s.generation == slot_generation(tok))
    }

    fn current_mut(&mut self, tok: u64) -> Option<&mut Slot<C>> {
        self.slots.get_mut(slot_index(tok)).filter(|s| s.reserved && s.generation == slot_generation(tok))
    }

    pub fn get_mut(&mut self, tok: u64) -> Option<&mut C> {
        self.current_mut(tok)?.conn.as_deref_mut()
    }

    /// Takes the connection of `tok` out of its slot.
    pub fn take(&mut self, tok: u64) -> Option<Box<C>> {
        self.current_mut(tok)?.conn.take()
    }

    /// The slot of `tok` is reserved but its connection is taken out.
    pub fn is_taken(&self, tok: u64) -> bool {
        self.current(tok).is_some_and(|s| s.conn.is_none())
    }

    /// Puts a connection (back) into its reserved slot.
    pub fn put(&mut self, index: usize, conn: Box<C>) {
        self.slots[index].conn = Some(conn);
    }

    /// Every connection held in a slot (not taken out).
    pub fn held_mut(&mut self) -> impl Iterator<Item = &mut C> {
        self.slots.iter_mut().filter_map(|s| s.conn.as_deref_mut())
    }

    /// Takes out every held connection `pick` chooses (to close them).
    pub fn take_if(&mut self, mut pick: impl FnMut(&C) -> bool) -> Vec<Box<C>> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            if slot.conn.as_deref().is_some_and(&mut pick) {
                out.extend(slot.conn.take());
            }
        }
        out
    }
}

/// Puts the listeners in (or takes them out of) an event-driven worker's
/// epoll; listener i gets token `first_token - i`. EPOLLEXCLUSIVE: a new
/// connection wakes one worker, not all.
pub fn watch_listeners(
    epoll: &crate::net::epoll::Epoll,
    listeners: &[crate::net::listener::Listener],
    first_token: u64,
    on: bool,
) -> io::Result<()> {
    for (i, l) in listeners.iter().enumerate() {
        if on {
            epoll.add(l.fd(), crate::net::epoll::READABLE | libc::EPOLLEXCLUSIVE as u32, first_token - i as u64)?;
        } else {
            epoll.delete(l.fd())?;
        }
    }
    Ok(())
}

impl Conn {
    /// Queues the error page and closes gracefully after it.
    pub fn reject(&mut self, e: &HttpError) {
        crate::workers::wsgi_request::log_rejected(self.peer, e);
        match e.response() {
            Some(page) => {
                self.out = page.to_bytes();
                self.out_pos = 0;
                self.phase = Phase::Flush(After::Linger);
            }
            None => self.phase = Phase::Close,
        }
    }

    /// Gunicorn's close_graceful: half-close now, then read until the
    /// client closes (the Linger phase).
    pub fn start_linger(&mut self) {
        if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
            self.phase = Phase::Close;
            return;
        }
        self.buf = ReadBuf::default();
        self.phase = Phase::Linger { drained: 0 };
    }

    /// Reads and drops what a lingering client still sends; true when done
    /// (the client closed, failed, or sent more than [`LINGER_MAX`]).
    pub fn linger_read(&mut self, drained: &mut usize) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: non-blocking read into a local buffer.
            let n = unsafe { libc::recv(self.fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n > 0 {
                *drained += n as usize;
                if *drained >= LINGER_MAX {
                    return true;
                }
                continue;
            }
            if n == 0 {
                return true;
            }
            let would_block = io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
            if would_block {
                self.edge.readable = false;
            }
            return !would_block;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_find_only_the_current_connection() {
        let mut slots: Slots<&str> = Slots::default();
        let a = slots.reserve();
        slots.put(slot_index(a), Box::new("a"));
        assert_eq!(slots.get_mut(a).map(|c| *c), Some("a"));
        let taken = slots.take(a).expect("held");
        assert!(slots.is_taken(a));
        assert!(slots.take(a).is_none());
        slots.put(slot_index(a), taken);
        assert!(!slots.is_taken(a));
        assert_eq!(slots.held_mut().count(), 1);
        slots.release(slot_index(a));
        // The slot is reused under a new token; the old one finds nothing.
        let b = slots.reserve();
        assert_eq!(slot_index(b), slot_index(a));
        assert_ne!(slot_generation(b), slot_generation(a));
        slots.put(slot_index(b), Box::new("b"));
        assert!(slots.get_mut(a).is_none() && !slots.is_taken(a));
        let c = slots.reserve();
        slots.put(slot_index(c), Box::new("c"));
        let gone = slots.take_if(|s| *s == "c");
        assert_eq!(gone.len(), 1);
        assert_eq!(slots.get_mut(b).map(|s| *s), Some("b"));
    }
}
