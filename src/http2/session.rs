//! One HTTP/2 connection, driven by its worker's engine: the `h2` crate
//! does the framing, HPACK and flow control; this turns its futures by
//! hand, from the engine's thread, whenever the socket has an edge or a
//! stream has work (no async runtime). New streams come out as requests for
//! the worker; each stream's body and response go through its
//! [`StreamShared`].
//!
//! Polling is driven by events the engine already has (socket edges, a
//! stream's [`Notify`]), so the waker given to `h2` only records that
//! something asked to be polled again: the drive loops until nothing moves.

use super::request::request_head;
use super::stream::{Gone, Head, Notify, Out, StreamShared};
use super::H2Config;
use crate::http::policy::HttpPolicy;
use crate::http::request::RequestHead;
use bytes::Bytes;
use h2::server::{Connection, Handshake, SendResponse};
use h2::{FlowControl, Reason, RecvStream, SendStream};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use super::io::{H2Io, ReadReady};

/// Passes over the streams per drive before the engine is asked to come
/// back (a connection that always has more cannot starve the others).
const MAX_PASSES: usize = 16;
/// Client resets (RST_STREAM) tolerated per window before the connection
/// is closed with ENHANCE_YOUR_CALM, as Gunicorn 27 counts them.
const RESET_LIMIT: usize = 200;
const RESET_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// The waker `h2` gets: it only notes that a poll should come again.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// A request for the worker to run.
pub struct NewStream {
    pub shared: Arc<StreamShared>,
    pub head: RequestHead,
}

/// What a drive produced.
#[derive(Default)]
pub struct Drive {
    pub streams: Vec<NewStream>,
    /// Streams whose application-side state changed (body bytes, room to
    /// send, gone): an async worker wakes what waits on them.
    pub touched: Vec<u32>,
    /// The connection is over: the worker closes its socket.
    pub closed: bool,
    /// More to do than one drive does: drive again soon, without an edge.
    pub again: bool,
}

struct Slot {
    shared: Arc<StreamShared>,
    recv: Option<RecvStream>,
    flow: FlowControl,
    respond: Option<SendResponse<Bytes>>,
    send: Option<SendStream<Bytes>>,
    /// The response's end went to HTTP/2.
    sent_all: bool,
    /// Response bytes have waited for window since then.
    stalled_since: Option<Instant>,
}

enum State {
    Handshake(Handshake<H2Io, Bytes>),
    Open(Connection<H2Io, Bytes>),
    Closed,
}

pub struct H2Session {
    /// The socket may have input (see [`ReadReady`]).
    read_ready: ReadReady,
    state: State,
    slots: HashMap<u32, Slot>,
    flag: Arc<Flag>,
    waker: Waker,
    tag: u64,
    notify: Arc<dyn Notify>,
    config: Arc<H2Config>,
    started: Instant,
    /// Since when no stream has been open.
    idle_since: Option<Instant>,
    shutting_down: bool,
    resets: VecDeque<Instant>,
}

impl H2Session {
    /// A connection whose first bytes (`already_read`: the client preface,
    /// or part of it) are in hand. `tag` names it to `notify`.
    pub fn new(
        stream: Arc<crate::net::stream::Stream>,
        already_read: &[u8],
        config: Arc<H2Config>,
        tag: u64,
        notify: Arc<dyn Notify>,
    ) -> H2Session {
        let read_ready = ReadReady::default();
        let io = H2Io::new(stream, already_read, read_ready.clone());
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let now = Instant::now();
        H2Session {
            read_ready,
            state: State::Handshake(config.builder().handshake(io)),
            slots: HashMap::new(),
            flag,
            waker,
            tag,
            notify,
            config,
            started: now,
            idle_since: Some(now),
            shutting_down: false,
            resets: VecDeque::new(),
        }
    }

    /// An epoll event for the socket: a readable edge lets reads go to the
    /// socket again.
    pub fn note_event(&self, flags: u32) {
        let readable = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if flags & readable != 0 {
            self.read_ready.set();
        }
    }

    /// Streams whose response is not over.
    pub fn open_streams(&self) -> usize {
        self.slots.len()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The worker stops: GOAWAY, the streams in flight finish, no new ones.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        if let State::Open(conn) = &mut self.state {
            conn.graceful_shutdown();
        }
    }

    /// Moves everything that can move now.
    pub fn drive(&mut self, policy: &HttpPolicy, peer: Option<IpAddr>, now: Instant, out: &mut Drive) {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        self.read_ready.renew();
        for _ in 0..MAX_PASSES {
            self.flag.0.store(false, Ordering::Release);
            let progress = match &mut self.state {
                State::Closed => {
                    out.closed = true;
                    return;
                }
                State::Handshake(hs) => match Pin::new(hs).poll(&mut cx) {
                    Poll::Ready(Ok(mut conn)) => {
                        if self.shutting_down {
                            conn.graceful_shutdown();
                        }
                        self.state = State::Open(conn);
                        true
                    }
                    Poll::Ready(Err(e)) => {
                        crate::log::debug!("HTTP/2 connection closed: {e}");
                        self.close(out);
                        return;
                    }
                    Poll::Pending => false,
                },
                State::Open(_) => {
                    let mut moved = self.pump_out(&mut cx, now, out);
                    moved |= self.accept(&mut cx, policy, peer, now, out);
                    if matches!(self.state, State::Closed) {
                        out.closed = true;
                        return;
                    }
                    moved |= self.pump_in(&mut cx, out);
                    moved | self.reap(now)
                }
            };
            if !progress && !self.flag.0.load(Ordering::Acquire) {
                // Input left unread for want of budget: come back soon.
                out.again |= self.read_ready.spent();
                return;
            }
        }
        out.again = true;
    }

    /// Response parts the applications queued, as far as flow control lets
    /// them go.
    fn pump_out(&mut self, cx: &mut Context<'_>, now: Instant, out: &mut Drive) -> bool {
        let mut progress = false;
        for (id, slot) in self.slots.iter_mut() {
            if slot.sent_all || slot.shared.gone().is_some() {
                continue;
            }
            let shared = slot.shared.clone();
            let (moved, gone) = shared.with_out(|queue, queued| send_queued(slot, queue, queued, cx));
            if moved {
                progress = true;
                if !slot.sent_all {
                    out.touched.push(*id);
                }
            }
            if let Some(g) = gone {
                shared.set_gone(g);
                out.touched.push(*id);
            }
            let waiting = !slot.sent_all && slot.shared.queued() > 0;
            slot.stalled_since = match (waiting, moved) {
                (true, false) => Some(slot.stalled_since.unwrap_or(now)),
                _ => None,
            };
        }
        progress
    }

    /// New streams (this also reads and writes the socket).
    fn accept(
        &mut self,
        cx: &mut Context<'_>,
        policy: &HttpPolicy,
        peer: Option<IpAddr>,
        now: Instant,
        out: &mut Drive,
    ) -> bool {
        let State::Open(conn) = &mut self.state else { return false };
        let mut progress = false;
        loop {
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, mut respond)))) => {
                    progress = true;
                    self.idle_since = None;
                    let id = u32::from(respond.stream_id());
                    let (parts, mut recv) = request.into_parts();
                    let end = recv.is_end_stream();
                    let head = match request_head(&parts, end, policy, peer) {
                        Ok(head) => head,
                        Err(e) => {
                            // Gunicorn resets a request it cannot take.
                            crate::log::debug!("HTTP/2 stream {id} refused: {e}");
                            respond.send_reset(Reason::PROTOCOL_ERROR);
                            continue;
                        }
                    };
                    let shared = Arc::new(StreamShared::new(id, self.tag, self.notify.clone(), end));
                    let flow = recv.flow_control().clone();
                    self.slots.insert(
                        id,
                        Slot {
                            shared: shared.clone(),
                            recv: (!end).then_some(recv),
                            flow,
                            respond: Some(respond),
                            send: None,
                            sent_all: false,
                            stalled_since: None,
                        },
                    );
                    out.streams.push(NewStream { shared, head });
                }
                Poll::Ready(Some(Err(e))) => {
                    log_connection_error(&e);
                    self.close(out);
                    return true;
                }
                Poll::Ready(None) => {
                    self.close(out);
                    return true;
                }
                Poll::Pending => break,
            }
        }
        if self.slots.is_empty() && self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
        progress
    }

    /// Request bodies into their streams, window back to the client for what
    /// the applications took, and resets from the client.
    fn pump_in(&mut self, cx: &mut Context<'_>, out: &mut Drive) -> bool {
        let mut progress = false;
        let mut resets = 0;
        for (id, slot) in self.slots.iter_mut() {
            if let Some(recv) = slot.recv.as_mut() {
                loop {
                    match recv.poll_data(cx) {
                        Poll::Ready(Some(Ok(data))) => {
                            slot.shared.deliver(data);
                            progress = true;
                            out.touched.push(*id);
                        }
                        Poll::Ready(Some(Err(e))) => {
                            slot.shared.set_gone(gone_of(&e));
                            slot.recv = None;
                            out.touched.push(*id);
                            break;
                        }
                        Poll::Ready(None) => {
                            slot.shared.end_body();
                            slot.recv = None;
                            progress = true;
                            out.touched.push(*id);
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
            }
            let window = slot.shared.take_window();
            if window > 0 {
                let _ = slot.flow.release_capacity(window);
            }
            if slot.sent_all || slot.shared.gone().is_some() {
                continue;
            }
            let reset = match (slot.respond.as_mut(), slot.send.as_mut()) {
                (Some(r), _) => r.poll_reset(cx),
                (None, Some(s)) => s.poll_reset(cx),
                (None, None) => Poll::Pending,
            };
            match reset {
                Poll::Ready(Ok(reason)) => {
                    slot.shared.set_gone(Gone::Reset(u32::from(reason)));
                    out.touched.push(*id);
                    resets += 1;
                }
                Poll::Ready(Err(_)) => {
                    slot.shared.set_gone(Gone::Connection);
                    out.touched.push(*id);
                }
                Poll::Pending => {}
            }
        }
        if resets > 0 {
            self.count_resets(resets);
        }
        progress
    }

    /// A client that resets streams at flood rate loses the connection.
    fn count_resets(&mut self, n: usize) {
        let now = Instant::now();
        for _ in 0..n {
            self.resets.push_back(now);
        }
        while self.resets.front().is_some_and(|t| now.duration_since(*t) > RESET_WINDOW) {
            self.resets.pop_front();
        }
        if self.resets.len() > RESET_LIMIT {
            crate::log::debug!("HTTP/2 connection closed: RST_STREAM rate exceeded");
            if let State::Open(conn) = &mut self.state {
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
            }
            self.resets.clear();
        }
    }

    /// Drops the streams that are over (the response went, or the stream is
    /// gone); window the client sent for a body nobody read goes back to
    /// the connection.
    fn reap(&mut self, now: Instant) -> bool {
        let before = self.slots.len();
        self.slots.retain(|_, slot| {
            let over = slot.sent_all || slot.shared.gone().is_some();
            if over {
                let untaken = slot.shared.untaken();
                if untaken > 0 {
                    let _ = slot.flow.release_capacity(untaken);
                }
            }
            !over
        });
        if self.slots.is_empty() && self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
        self.slots.len() != before
    }

    fn close(&mut self, out: &mut Drive) {
        for (id, slot) in self.slots.drain() {
            slot.shared.set_gone(Gone::Connection);
            out.touched.push(id);
        }
        self.state = State::Closed;
        out.closed = true;
    }

    /// The connection's timers: a handshake that does not complete, an idle
    /// connection (GOAWAY after the keep-alive time, as Gunicorn closes an
    /// idle HTTP/2 connection), streams stalled on a zero window. Returns
    /// true when the connection should be driven now.
    fn expire(&mut self, now: Instant, out: &mut Drive) -> bool {
        match &mut self.state {
            State::Closed => return true,
            State::Handshake(_) => {
                if self.config.handshake_timeout.is_some_and(|t| now.duration_since(self.started) >= t) {
                    crate::log::debug!("HTTP/2 connection closed: no preface in time");
                    self.close(out);
                    return true;
                }
            }
            State::Open(conn) => {
                if let Some(since) = self.idle_since {
                    if !self.config.idle.is_zero() && now.duration_since(since) >= self.config.idle {
                        if self.shutting_down {
                            // GOAWAY went and nothing came since: done.
                            self.close(out);
                            return true;
                        }
                        self.shutting_down = true;
                        conn.graceful_shutdown();
                        self.idle_since = Some(now);
                        return true;
                    }
                }
            }
        }
        let mut any = false;
        for (id, slot) in self.slots.iter_mut() {
            if slot.stalled_since.is_some_and(|t| now.duration_since(t) >= self.config.stall) {
                crate::log::debug!("HTTP/2 stream {id} reset: no window for its response in time");
                match (slot.send.as_mut(), slot.respond.as_mut()) {
                    (Some(s), _) => s.send_reset(Reason::CANCEL),
                    (None, Some(r)) => r.send_reset(Reason::CANCEL),
                    (None, None) => {}
                }
                slot.shared.set_gone(Gone::Stalled);
                out.touched.push(*id);
                any = true;
            }
        }
        any
    }

    /// A timer of the connection is due: input already waiting is taken
    /// first (a connection whose next request sits unread is not idle),
    /// then the timers act, then what they changed is sent.
    pub fn expire_and_drive(&mut self, policy: &HttpPolicy, peer: Option<IpAddr>, now: Instant, out: &mut Drive) {
        self.drive(policy, peer, now, out);
        if !out.closed {
            self.expire(now, out);
            self.drive(policy, peer, now, out);
        }
    }

    /// When [`H2Session::expire`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        match self.state {
            State::Handshake(_) => {
                if let Some(t) = self.config.handshake_timeout {
                    consider(self.started + t);
                }
            }
            State::Open(_) => {
                if let Some(since) = self.idle_since {
                    if !self.config.idle.is_zero() {
                        consider(since + self.config.idle);
                    }
                }
            }
            State::Closed => consider(self.started),
        }
        for slot in self.slots.values() {
            if let Some(t) = slot.stalled_since {
                consider(t + self.config.stall);
            }
        }
        next
    }
}

impl Drop for H2Session {
    /// A connection dropped with streams still open (the worker closed it:
    /// an expired timer, the end of a graceful stop): their applications
    /// learn it now rather than at their own timeouts.
    fn drop(&mut self) {
        for slot in self.slots.values() {
            slot.shared.set_gone(Gone::Connection);
        }
    }
}

fn log_connection_error(e: &h2::Error) {
    if e.is_io() {
        if let Some(io) = e.get_io() {
            crate::workers::core::sock::log_socket_error(&std::io::Error::new(io.kind(), io.to_string()));
            return;
        }
    }
    crate::log::debug!("HTTP/2 connection closed: {e}");
}

/// What a stream-level error from `h2` means for the application.
fn gone_of(e: &h2::Error) -> Gone {
    match e.reason() {
        Some(reason) if !e.is_go_away() => Gone::Reset(u32::from(reason)),
        _ => Gone::Connection,
    }
}

/// Sends what `queue` holds of a stream as far as HTTP/2 lets it now.
/// Returns (anything moved, the stream is gone).
fn send_queued(
    slot: &mut Slot,
    queue: &mut VecDeque<Out>,
    queued: &mut usize,
    cx: &mut Context<'_>,
) -> (bool, Option<Gone>) {
    let mut moved = false;
    loop {
        // The response's end rides on the frame before it when it can.
        let plain_end_next = matches!(queue.get(1), Some(Out::End(None)));
        let Some(front) = queue.front_mut() else { return (moved, None) };
        match front {
            Out::Informational(head) => {
                if let (Some(respond), Some(response)) = (slot.respond.as_mut(), response(head)) {
                    let _ = respond.send_informational(response);
                }
                queue.pop_front();
                moved = true;
            }
            Out::Head(head) => {
                let Some(mut respond) = slot.respond.take() else {
                    queue.pop_front();
                    continue;
                };
                let Some(response) = response(head) else {
                    respond.send_reset(Reason::INTERNAL_ERROR);
                    slot.sent_all = true;
                    return (true, None);
                };
                match respond.send_response(response, plain_end_next) {
                    Ok(send) => slot.send = Some(send),
                    Err(e) => return (moved, Some(gone_of(&e))),
                }
                queue.pop_front();
                if plain_end_next {
                    queue.pop_front();
                    slot.sent_all = true;
                }
                moved = true;
            }
            Out::Data(data) => {
                let Some(send) = slot.send.as_mut() else {
                    queue.pop_front();
                    continue;
                };
                send.reserve_capacity(*queued);
                // poll_capacity only reports an increase: what is left of
                // window already given is read directly.
                let window = match send.capacity() {
                    0 => send.poll_capacity(cx),
                    n => Poll::Ready(Some(Ok(n))),
                };
                match window {
                    Poll::Ready(Some(Ok(n))) if n > 0 => {
                        let chunk = data.split_to(n.min(data.len()));
                        *queued = queued.saturating_sub(chunk.len());
                        let last = data.is_empty();
                        let end = last && plain_end_next;
                        if let Err(e) = send.send_data(chunk, end) {
                            return (moved, Some(gone_of(&e)));
                        }
                        moved = true;
                        if last {
                            queue.pop_front();
                            if end {
                                queue.pop_front();
                                slot.sent_all = true;
                            }
                        }
                    }
                    Poll::Ready(Some(Ok(_))) | Poll::Pending => return (moved, None),
                    Poll::Ready(Some(Err(e))) => return (moved, Some(gone_of(&e))),
                    Poll::Ready(None) => return (moved, Some(Gone::Connection)),
                }
            }
            Out::End(trailers) => {
                let result = match (slot.send.as_mut(), trailers.take()) {
                    (Some(send), Some(fields)) => match header_map(&fields) {
                        Some(map) => send.send_trailers(map),
                        None => send.send_data(Bytes::new(), true),
                    },
                    (Some(send), None) => send.send_data(Bytes::new(), true),
                    (None, _) => Ok(()),
                };
                queue.pop_front();
                slot.sent_all = true;
                if let Err(e) = result {
                    return (true, Some(gone_of(&e)));
                }
                return (true, None);
            }
            Out::Reset => {
                match (slot.send.as_mut(), slot.respond.as_mut()) {
                    (Some(s), _) => s.send_reset(Reason::INTERNAL_ERROR),
                    (None, Some(r)) => r.send_reset(Reason::INTERNAL_ERROR),
                    (None, None) => {}
                }
                queue.pop_front();
                slot.sent_all = true;
                return (true, None);
            }
        }
    }
}

fn header_map(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<http::HeaderMap> {
    let mut map = http::HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        if super::connection_specific(name) {
            continue;
        }
        let name = http::HeaderName::from_bytes(&name.to_ascii_lowercase()).ok()?;
        let value = http::HeaderValue::from_bytes(value).ok()?;
        map.append(name, value);
    }
    Some(map)
}

/// The `http` response for a head; None if a field cannot be sent (the
/// bridges check fields before, so this is a bug's safety net).
fn response(head: &Head) -> Option<http::Response<()>> {
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(head.status).ok()?;
    *response.headers_mut() = header_map(&head.fields)?;
    Some(response)
}
