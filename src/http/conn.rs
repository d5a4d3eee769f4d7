//! One HTTP/1 server connection as a state machine that never touches a
//! socket, in h11's manner. The worker puts what it receives into
//! [`ServerConn::buffer`] (and says when the peer closed); the connection
//! says what comes next: a request for the application, more bytes needed,
//! a request to refuse, or the end of the connection.
//!
//! Reading and writing have states of their own. A request's response must
//! be complete before the next request is looked at (pipelined bytes wait in
//! the buffer). The body the application left unread is drained, within
//! limits, before the next request; a connection that ends lingers,
//! discarding what the client still sends, so that closing never resets the
//! connection under the last response (Gunicorn's `close_graceful`).
//! Deadlines belong to the worker; [`ServerConn::waiting_for`] says which
//! one applies.

use super::body::{BodyDecoder, Decoded};
use super::buffer::ReadBuf;
use super::error::HttpError;
use super::policy::{HttpPolicy, UwsgiPolicy};
use super::request::{BodyFraming, HeadParser, Parsed, RequestHead};
use crate::http2::preface::{sniff, H2Offer, Sniff, PREFACE};
use crate::net::proxy_protocol::{parse_proxy_header, ProxyInfo, ProxyMode};
use crate::uwsgi::UwsgiError;
use std::net::IpAddr;

/// Gunicorn drains at most this much of a body the application left unread
/// before it reads the next request; past it the connection closes instead.
pub const DRAIN_MAX: usize = 64 * 1024;
/// And discards at most this much once the connection is closing.
pub const LINGER_MAX: usize = 64 * 1024;

/// The answer to a request that asked for it (`Expect: 100-continue`).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request head, complete and valid. Its body comes through
/// [`ServerConn::read_body`].
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
    /// What the PROXY header said: for the connection's first request only,
    /// as in Gunicorn.
    pub proxy: Option<ProxyInfo>,
}

/// What the connection needs next.
#[derive(Debug)]
pub enum Event {
    /// A request for the application.
    Request(Box<Request>),
    /// Nothing to do until more bytes (or the end of the input) arrive.
    NeedData,
    /// A request is in progress (its response is not complete, or the
    /// connection was handed to another protocol): what follows waits.
    Paused,
    /// A request to refuse with its error page (if it has one); then the
    /// connection ends as with [`Event::Close`].
    Reject(HttpError),
    /// The connection is HTTP/2 from here ([`ServerConn::take_unread`] has
    /// its first bytes).
    Http2,
    /// The connection ends: once the output is out, shut the write side and
    /// discard what comes ([`ServerConn::lingered`]) until the client
    /// closes, unless it already has ([`ServerConn::peer_closed`]).
    Close,
}

/// How far a request body got, after [`ServerConn::read_body`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRead {
    /// Bytes were appended (more may follow).
    Data,
    /// Nothing could be appended: more bytes must arrive first.
    NeedData,
    /// The body is complete (bytes may have been appended on the way).
    Complete,
}

/// Which time limit applies to the connection now (the worker's deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A new connection that has sent nothing yet.
    FirstRequest,
    /// Between requests, with nothing of the next one received.
    KeepAlive,
    /// Part of a request head is here: Gunicorn waits for the rest without
    /// a limit of its own.
    Request,
    /// A request is in progress: the application's time, not the client's.
    Exchange,
    /// Discarding an unread body before the next request.
    Drain,
    /// Discarding input before closing.
    Linger,
}

#[derive(Debug)]
enum ReadState {
    /// Waiting for a request head.
    Head,
    /// The current request's body (the decoder says when it is complete).
    Body(Box<BodyDecoder>),
    /// The response is complete: what is left of the body is discarded
    /// before the next request.
    Drain { decoder: Box<BodyDecoder>, drained: usize },
    /// Another protocol (a WebSocket) has the connection's bytes.
    Upgraded,
    /// Closing: what the client still sends is discarded.
    Linger { drained: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteState {
    /// No request waits for an answer.
    Idle,
    /// A request came; its response has not started (a `100 Continue` may
    /// still be sent).
    Awaiting,
    /// The response has started.
    Responding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyStage {
    /// A PROXY header may (or must) come before the first request.
    Expected,
    Done,
}

#[derive(Debug)]
pub struct ServerConn {
    buf: ReadBuf,
    parser: HeadParser,
    /// The unread length the parser last saw and found incomplete: it is
    /// called once per read, which is how Gunicorn judges its limits.
    parsed_len: Option<usize>,
    proxy_mode: ProxyMode,
    proxy_stage: ProxyStage,
    proxy: Option<ProxyInfo>,
    read: ReadState,
    write: WriteState,
    /// The request asked for `100 Continue` and has not had it.
    wants_continue: bool,
    /// The body could not be read to its end: the next request's start is
    /// unknown, so the connection cannot be reused.
    body_failed: bool,
    eof: bool,
    requests: u64,
    /// Whether and how the connection may turn into HTTP/2.
    h2: H2Offer,
}

/// A connection with no PROXY header expected: what a worker leaves behind
/// while the real state is lent out (to a request body reader).
impl Default for ServerConn {
    fn default() -> Self {
        ServerConn::new(ProxyMode::Off)
    }
}

impl ServerConn {
    pub fn new(proxy_mode: ProxyMode) -> ServerConn {
        let proxy_stage = if proxy_mode == ProxyMode::Off { ProxyStage::Done } else { ProxyStage::Expected };
        ServerConn {
            buf: ReadBuf::default(),
            parser: HeadParser::new(),
            parsed_len: None,
            proxy_mode,
            proxy_stage,
            proxy: None,
            read: ReadState::Head,
            write: WriteState::Idle,
            wants_continue: false,
            body_failed: false,
            eof: false,
            requests: 0,
            h2: H2Offer::None,
        }
    }

    /// The PROXY header's information, once it was read.
    pub fn proxy(&self) -> Option<&ProxyInfo> {
        self.proxy.as_ref()
    }

    /// Lets the connection become HTTP/2 before its first request (ALPN
    /// chose h2, or a trusted peer may open with the h2c preface).
    pub fn offer_h2(&mut self, offer: H2Offer) {
        self.h2 = offer;
    }

    /// The bytes received and not parsed (the HTTP/2 connection's first
    /// bytes, once [`Event::Http2`] came).
    pub fn take_unread(&mut self) -> Vec<u8> {
        let bytes = self.buf.unread().to_vec();
        self.buf = ReadBuf::default();
        bytes
    }

    /// Where received bytes go.
    pub fn buffer(&mut self) -> &mut ReadBuf {
        &mut self.buf
    }

    pub fn unread(&self) -> &[u8] {
        self.buf.unread()
    }

    /// The peer shut its side: no more bytes will come.
    pub fn received_eof(&mut self) {
        self.eof = true;
    }

    pub fn peer_closed(&self) -> bool {
        self.eof
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Waiting for a new request with nothing of it received.
    pub fn is_idle(&self) -> bool {
        matches!(self.read, ReadState::Head) && self.write == WriteState::Idle && self.buf.is_empty()
    }

    pub fn is_lingering(&self) -> bool {
        matches!(self.read, ReadState::Linger { .. })
    }

    /// The current request's body has arrived whole.
    pub fn body_complete(&self) -> bool {
        match &self.read {
            ReadState::Body(d) | ReadState::Drain { decoder: d, .. } => d.is_done(),
            _ => true,
        }
    }

    /// How much the next read should ask for, given its usual size: the
    /// rest of the body when it is known, up to `max`.
    pub fn read_hint(&self, usual: usize, max: usize) -> usize {
        match &self.read {
            ReadState::Body(d) => {
                d.remaining_hint().map_or(usual, |h| usize::try_from(h).unwrap_or(max).clamp(usual, max))
            }
            _ => usual,
        }
    }

    pub fn waiting_for(&self) -> Wait {
        match self.read {
            ReadState::Linger { .. } => Wait::Linger,
            ReadState::Drain { .. } => Wait::Drain,
            ReadState::Body(_) | ReadState::Upgraded => Wait::Exchange,
            ReadState::Head if self.write != WriteState::Idle => Wait::Exchange,
            ReadState::Head if !self.buf.is_empty() => Wait::Request,
            ReadState::Head if self.requests == 0 => Wait::FirstRequest,
            ReadState::Head => Wait::KeepAlive,
        }
    }

    /// What comes next, from what is buffered.
    pub fn next_event(&mut self, policy: &HttpPolicy, peer: Option<IpAddr>) -> Event {
        loop {
            match &mut self.read {
                ReadState::Linger { .. } => return Event::Close,
                ReadState::Upgraded | ReadState::Body(_) => return Event::Paused,
                ReadState::Head if self.write != WriteState::Idle => return Event::Paused,
                ReadState::Drain { decoder, drained } => match discard(decoder, &mut self.buf, drained) {
                    Ok(true) => self.read = ReadState::Head,
                    Ok(false) if *drained <= DRAIN_MAX && !self.eof => return Event::NeedData,
                    // Too much to drain, or the client stopped sending (a
                    // truncated body): not worth keeping the connection.
                    Ok(false) | Err(_) => return self.close(),
                },
                ReadState::Head => return self.next_head(policy, peer),
            }
        }
    }

    fn next_head(&mut self, policy: &HttpPolicy, peer: Option<IpAddr>) -> Event {
        if let Some(uwsgi) = &policy.uwsgi {
            return self.next_packet(policy, uwsgi, peer);
        }
        loop {
            if self.buf.is_empty() {
                return if self.eof { self.close() } else { Event::NeedData };
            }
            let unread = self.buf.unread().len();
            if self.parsed_len == Some(unread) {
                // Nothing new since the parser last waited.
                return self.incomplete();
            }
            if self.proxy_stage == ProxyStage::Expected {
                match parse_proxy_header(self.buf.unread(), self.proxy_mode, peer, &policy.proxy_allow) {
                    Ok(Parsed::Complete(info, n)) => {
                        self.buf.consume(n);
                        self.proxy_stage = ProxyStage::Done;
                        // What follows the PROXY header is new to the request
                        // parser, even when it is as long as the buffer was
                        // when the header was incomplete.
                        self.parsed_len = None;
                        if info.is_some() && self.buf.is_empty() {
                            // Gunicorn then starts on the request with no
                            // bytes in hand: a CRLF next is an empty line.
                            self.parser = HeadParser::without_leading_crlf();
                        }
                        self.proxy = info;
                        continue;
                    }
                    Ok(Parsed::Partial) => {
                        self.parsed_len = Some(unread);
                        return self.incomplete();
                    }
                    Err(e) => return self.reject(e),
                }
            }
            if self.requests == 0 {
                match self.h2 {
                    H2Offer::None => {}
                    H2Offer::Alpn => {
                        self.read = ReadState::Upgraded;
                        return Event::Http2;
                    }
                    H2Offer::PriorKnowledge { strict } => match sniff(self.buf.unread()) {
                        Sniff::Match => {
                            self.read = ReadState::Upgraded;
                            return Event::Http2;
                        }
                        Sniff::Partial => {
                            self.parsed_len = Some(unread);
                            return self.incomplete();
                        }
                        Sniff::Mismatch if strict => {
                            let seen = self.buf.unread();
                            let seen = seen.get(..PREFACE.len()).unwrap_or(seen).to_vec();
                            return self.reject(HttpError::InvalidH2cPreface(seen));
                        }
                        // h2c by upgrade, or plain HTTP/1: parse it.
                        Sniff::Mismatch => self.h2 = H2Offer::None,
                    },
                }
            }
            return match self.parser.parse(self.buf.unread(), policy, peer) {
                Ok(Parsed::Complete(head, n)) => {
                    self.parser = HeadParser::new();
                    self.parsed_len = None;
                    self.start_request(head, n, policy)
                }
                Ok(Parsed::Partial) => {
                    self.parsed_len = Some(unread);
                    self.incomplete()
                }
                Err(e) => self.reject(e),
            };
        }
    }

    /// A head came (`n` bytes of the buffer): its body is read next.
    fn start_request(&mut self, head: RequestHead, n: usize, policy: &HttpPolicy) -> Event {
        self.buf.consume(n);
        self.requests += 1;
        self.wants_continue = head.expect_continue;
        let decoder = BodyDecoder::new(&head.body, policy);
        self.read = ReadState::Body(Box::new(decoder));
        self.write = WriteState::Awaiting;
        let proxy = if self.requests == 1 { self.proxy.clone() } else { None };
        Event::Request(Box::new(Request { head, proxy }))
    }

    /// The next uwsgi packet. Gunicorn looks at the peer's address before
    /// it reads anything, and a packet cut short by the peer's end is a
    /// refused header (its end between packets is a plain close).
    fn next_packet(&mut self, policy: &HttpPolicy, uwsgi: &UwsgiPolicy, peer: Option<IpAddr>) -> Event {
        let refused = |error| HttpError::Uwsgi { error, answered: uwsgi.answer_errors };
        if let Err(e) = crate::uwsgi::check_peer(&uwsgi.allow, peer) {
            return self.reject(refused(e));
        }
        if self.buf.is_empty() {
            return if self.eof { self.close() } else { Event::NeedData };
        }
        match crate::uwsgi::parse_packet(self.buf.unread(), policy.is_ssl) {
            Ok(Parsed::Complete(head, n)) => self.start_request(head, n, policy),
            Ok(Parsed::Partial) if self.eof => {
                let what = if self.buf.unread().len() < crate::uwsgi::HEADER_LEN {
                    "incomplete header"
                } else {
                    "incomplete vars block"
                };
                self.reject(refused(UwsgiError::InvalidHeader(what)))
            }
            Ok(Parsed::Partial) => Event::NeedData,
            Err(e) => self.reject(refused(e)),
        }
    }

    /// A head (or PROXY header) still incomplete: wait, unless the peer is
    /// gone, which Gunicorn reports as NoMoreData and does not answer.
    fn incomplete(&mut self) -> Event {
        if self.eof {
            self.reject(HttpError::NoMoreData)
        } else {
            Event::NeedData
        }
    }

    fn reject(&mut self, e: HttpError) -> Event {
        self.start_linger();
        Event::Reject(e)
    }

    fn close(&mut self) -> Event {
        self.start_linger();
        Event::Close
    }

    fn start_linger(&mut self) {
        self.read = ReadState::Linger { drained: 0 };
        self.write = WriteState::Idle;
        // Nothing more is parsed: the storage can go.
        self.buf = ReadBuf::default();
    }

    /// Decodes what is buffered of the current request's body into `out`,
    /// stopping once `out` holds `limit` bytes. An error is the body's
    /// (framing, or the peer closed before its end) and stays: the
    /// connection will not be reused.
    pub fn read_body(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<BodyRead, HttpError> {
        let ReadState::Body(decoder) = &mut self.read else { return Ok(BodyRead::Complete) };
        let mut appended = false;
        while out.len() < limit {
            match decoder.decode(self.buf.unread()) {
                Ok((n, Decoded::Data(data))) => {
                    out.extend_from_slice(data);
                    self.buf.consume(n);
                    appended = true;
                    // The client sent its body without waiting for a 100.
                    self.wants_continue = false;
                }
                Ok((n, Decoded::Done)) => {
                    self.buf.consume(n);
                    return Ok(BodyRead::Complete);
                }
                Ok((n, Decoded::NeedMore)) => {
                    self.buf.consume(n);
                    if self.eof {
                        if let Err(e) = decoder.at_eof() {
                            self.body_failed = true;
                            return Err(e);
                        }
                        return Ok(BodyRead::Complete);
                    }
                    break;
                }
                Err(e) => {
                    self.body_failed = true;
                    return Err(e);
                }
            }
        }
        Ok(if appended {
            BodyRead::Data
        } else if decoder.is_done() {
            BodyRead::Complete
        } else {
            BodyRead::NeedData
        })
    }

    /// `HTTP/1.1 100 Continue`, once, when the request asked for it, its
    /// response has not started and no body byte has been read yet (a
    /// client that sent its body anyway needs no invitation). Gunicorn's
    /// WSGI workers send it before calling the app; its ASGI worker when
    /// the app first waits for the body.
    pub fn take_continue(&mut self) -> Option<&'static [u8]> {
        if !self.wants_continue || self.write != WriteState::Awaiting {
            return None;
        }
        self.wants_continue = false;
        Some(CONTINUE)
    }

    /// The application sent a `100 Continue` itself.
    pub fn continue_sent(&mut self) {
        self.wants_continue = false;
    }

    /// The final response's head is on its way.
    pub fn response_started(&mut self) {
        self.write = WriteState::Responding;
        self.wants_continue = false;
    }

    /// The response is complete (all of it handed to the transport).
    /// `reusable`: neither the response, the request nor the worker asks to
    /// close. The connection then reads the next request, drains what is
    /// left of this one's body first, or ends.
    pub fn response_complete(&mut self, reusable: bool) {
        self.write = WriteState::Idle;
        self.wants_continue = false;
        let read = std::mem::replace(&mut self.read, ReadState::Head);
        self.read = match read {
            _ if !reusable || self.body_failed || self.eof => {
                self.start_linger();
                return;
            }
            ReadState::Body(decoder) if !decoder.is_done() => ReadState::Drain { decoder, drained: 0 },
            ReadState::Body(_) | ReadState::Head => ReadState::Head,
            other => other,
        };
    }

    /// Another protocol takes the connection (a WebSocket after `101`): the
    /// buffered bytes and what follows are its own.
    pub fn upgrade(&mut self) {
        self.read = ReadState::Upgraded;
        self.write = WriteState::Responding;
    }

    /// Ends the connection whatever its state (an upgraded protocol is done,
    /// the application broke off a response, the worker stops it).
    pub fn end(&mut self) {
        if !self.is_lingering() {
            self.start_linger();
        }
    }

    /// How much more may be discarded while lingering.
    pub fn linger_allowance(&self) -> usize {
        match self.read {
            ReadState::Linger { drained } => LINGER_MAX.saturating_sub(drained),
            _ => 0,
        }
    }

    /// `n` more bytes were discarded while lingering: true when that is
    /// enough and the connection should just close.
    pub fn lingered(&mut self, n: usize) -> bool {
        match &mut self.read {
            ReadState::Linger { drained } => {
                *drained += n;
                *drained >= LINGER_MAX
            }
            _ => true,
        }
    }

    /// While idle, the buffer's storage, for another connection to use (an
    /// idle keep-alive connection then costs no buffer).
    pub fn release_buffer(&mut self) -> Option<Vec<u8>> {
        if self.is_idle() {
            self.buf.take_storage()
        } else {
            None
        }
    }

    /// Storage to read into, if the connection has none.
    pub fn lend_buffer(&mut self, storage: Vec<u8>) -> Option<Vec<u8>> {
        if self.buf.capacity() == 0 && self.buf.is_empty() {
            self.buf = ReadBuf::reuse(storage);
            None
        } else {
            Some(storage)
        }
    }

    pub fn has_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }
}

/// Drops buffered body bytes; true once the body is complete.
fn discard(decoder: &mut BodyDecoder, buf: &mut ReadBuf, drained: &mut usize) -> Result<bool, HttpError> {
    loop {
        match decoder.decode(buf.unread())? {
            (n, Decoded::Data(d)) => {
                *drained += d.len();
                buf.consume(n);
            }
            (n, Decoded::Done) => {
                buf.consume(n);
                return Ok(true);
            }
            (n, Decoded::NeedMore) => {
                buf.consume(n);
                return Ok(false);
            }
        }
    }
}

/// Whether a request's body needs no reading at all.
pub fn has_no_body(head: &RequestHead) -> bool {
    matches!(head.body, BodyFraming::Empty | BodyFraming::Length(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::tests::local;

    fn policy() -> HttpPolicy {
        HttpPolicy::default()
    }

    fn feed(c: &mut ServerConn, bytes: &[u8]) {
        c.buffer().extend(bytes);
    }

    /// Feeds `raw` in pieces of `step` bytes, asking for events after each
    /// one, and collects what came: the requests (method, path, body) and
    /// how the connection ended.
    fn run(raw: &[u8], step: usize, reusable: bool) -> (Vec<(String, String, Vec<u8>)>, String) {
        let mut c = ServerConn::new(ProxyMode::Off);
        let mut seen = Vec::new();
        let mut current: Option<(String, String, Vec<u8>)> = None;
        let mut pos = 0;
        loop {
            if let Some(req) = current.as_mut() {
                match c.read_body(&mut req.2, usize::MAX) {
                    Ok(BodyRead::Complete) => {
                        seen.extend(current.take());
                        c.response_complete(reusable);
                        continue;
                    }
                    Ok(BodyRead::Data | BodyRead::NeedData) => {}
                    Err(e) => return (seen, format!("body error: {e}")),
                }
            } else {
                match c.next_event(&policy(), local()) {
                    Event::Request(r) => {
                        c.response_started();
                        current = Some((r.head.method.clone(), r.head.path.clone(), Vec::new()));
                        continue;
                    }
                    Event::Reject(e) => return (seen, format!("reject: {e}")),
                    Event::Close => return (seen, "close".into()),
                    Event::Paused => return (seen, "paused".into()),
                    Event::Http2 => return (seen, "http2".into()),
                    Event::NeedData => {}
                }
            }
            if pos >= raw.len() {
                c.received_eof();
                if pos > raw.len() {
                    return (seen, "stuck".into());
                }
                pos += 1;
                continue;
            }
            let end = (pos + step).min(raw.len());
            feed(&mut c, &raw[pos..end]);
            pos = end;
        }
    }

    const PIPELINE: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";

    #[test]
    fn pipelined_requests_come_one_after_another_in_any_chunking() {
        for step in 1..=PIPELINE.len() {
            let (seen, end) = run(PIPELINE, step, true);
            let paths: Vec<_> = seen.iter().map(|(m, p, b)| (m.as_str(), p.as_str(), b.as_slice())).collect();
            assert_eq!(
                paths,
                vec![("POST", "/a", &b"hello"[..]), ("GET", "/b", &b""[..]), ("POST", "/c", &b"abc"[..])],
                "step {step}"
            );
            assert_eq!(end, "close", "step {step}");
        }
    }

    #[test]
    fn the_next_request_waits_for_the_response() {
        let mut c = ServerConn::new(ProxyMode::Off);
        feed(&mut c, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
        assert!(matches!(c.next_event(&policy(), local()), Event::Request(_)));
        assert!(matches!(c.next_event(&policy(), local()), Event::Paused));
        c.response_started();
        assert!(matches!(c.next_event(&policy(), local()), Event::Paused));
        c.response_complete(true);
        match c.next_event(&policy(), local()) {
            Event::Request(r) => assert_eq!(r.head.path, "/2"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_response_that_closes_ends_the_connection() {
        let (seen, end) = run(PIPELINE, PIPELINE.len(), false);
        assert_eq!(seen.len(), 1);
        assert_eq!(end, "close");
    }

    #[test]
    fn an_unread_body_is_drained_within_limits() {
        let mut c = ServerConn::new(ProxyMode::Off);
        feed(&mut c, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123");
        assert!(matches!(c.next_event(&policy(), local()), Event::Request(_)));
        c.response_started();
        c.response_complete(true);
        assert_eq!(c.waiting_for(), Wait::Drain);
        assert!(matches!(c.next_event(&policy(), local()), Event::NeedData));
        feed(&mut c, b"456789GET /next HTTP/1.1\r\n\r\n");
        match c.next_event(&policy(), local()) {
            Event::Request(r) => assert_eq!(r.head.path, "/next"),
            other => panic!("{other:?}"),
        }

        // Past DRAIN_MAX the connection is not worth keeping.
        let mut c = ServerConn::new(ProxyMode::Off);
        feed(&mut c, format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", DRAIN_MAX * 4).as_bytes());
        assert!(matches!(c.next_event(&policy(), local()), Event::Request(_)));
        c.response_complete(true);
        feed(&mut c, &vec![b'x'; DRAIN_MAX + 1]);
        assert!(matches!(c.next_event(&policy(), local()), Event::Close));
        assert_eq!(c.waiting_for(), Wait::Linger);
    }

    #[test]
    fn a_truncated_head_is_no_more_data_and_a_clean_end_is_a_close() {
        let (seen, end) = run(b"GET / HTTP/1.1\r\nHost", 4, true);
        assert!(seen.is_empty());
        assert_eq!(end, format!("reject: {}", HttpError::NoMoreData));
        let (seen, end) = run(b"", 1, true);
        assert!(seen.is_empty());
        assert_eq!(end, "close");
    }

    #[test]
    fn a_truncated_body_is_an_error_and_the_connection_ends() {
        let (seen, end) = run(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 3, true);
        assert!(seen.is_empty());
        assert_eq!(end, format!("body error: {}", HttpError::NoMoreData));
    }

    #[test]
    fn bad_requests_are_refused_and_the_connection_lingers() {
        let (seen, end) = run(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 5, true);
        assert!(seen.is_empty());
        assert!(end.starts_with("reject: "), "{end}");
        let mut c = ServerConn::new(ProxyMode::Off);
        feed(&mut c, b"\x01\x02 / HTTP/1.1\r\n\r\n");
        assert!(matches!(c.next_event(&policy(), local()), Event::Reject(_)));
        assert!(c.is_lingering());
        assert!(!c.lingered(LINGER_MAX - 1));
        assert!(c.lingered(1));
    }

    #[test]
    fn the_parser_is_asked_once_per_read() {
        let mut c = ServerConn::new(ProxyMode::Off);
        feed(&mut c, b"GET / HTTP/1.1\r\n");
        assert!(matches!(c.next_event(&policy(), local()), Event::NeedData));
        // Asking again without new bytes is not another read.
        assert!(matches!(c.next_event(&policy(), local()), Event::NeedData));
        feed(&mut c, b"\r\n");
        assert!(matches!(c.next_event(&policy(), local()), Event::Request(_)));
    }

    #[test]
    fn continue_is_offered_once_before_the_response() {
        let mut c = ServerConn::new(ProxyMode::Off);
        feed(&mut c, b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(matches!(c.next_event(&policy(), local()), Event::Request(_)));
        assert_eq!(c.take_continue(), Some(CONTINUE));
        assert_eq!(c.take_continue(), None);

        // Not once the response has started, nor when the body is here.
        let mut c = ServerConn::new(ProxyMode::Off);
        feed(&mut c, b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(matches!(c.next_event(&policy(), local()), Event::Request(_)));
        c.response_started();
        assert_eq!(c.take_continue(), None);
        let mut c = ServerConn::new(ProxyMode::Off);
        feed(&mut c, b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nab");
        assert!(matches!(c.next_event(&policy(), local()), Event::Request(_)));
        let mut body = Vec::new();
        assert_eq!(c.read_body(&mut body, usize::MAX), Ok(BodyRead::Data));
        assert_eq!(c.take_continue(), None);
    }

    #[test]
    fn the_proxy_header_speaks_for_the_first_request_only() {
        let mut p = policy();
        p.proxy_protocol = ProxyMode::V1;
        p.proxy_allow = crate::http::policy::AllowList::parse(&["*".to_owned()]).expect("allow list");
        let mut c = ServerConn::new(ProxyMode::V1);
        feed(&mut c, b"PROXY TCP4 1.2.3.4 5.6.7.8 1000 80\r\nGET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
        assert_eq!(c.waiting_for(), Wait::Request);
        let Event::Request(first) = c.next_event(&p, local()) else { panic!("a request") };
        assert_eq!(first.proxy.as_ref().and_then(|i| i.client.clone()), Some(("1.2.3.4".to_owned(), 1000)));
        c.response_complete(true);
        let Event::Request(second) = c.next_event(&p, local()) else { panic!("a request") };
        assert!(second.proxy.is_none());
    }

    #[test]
    fn what_follows_a_split_proxy_header_is_parsed_at_once() {
        // Found by tests/fuzz/http_diff.py: when the bytes left after the
        // PROXY header were as many as the first read (judged incomplete),
        // the parser was not asked again, so a complete request waited for
        // more bytes, and a request line over the limit was refused a read
        // late.
        let mut p = policy();
        p.proxy_protocol = ProxyMode::V1;
        let mut c = ServerConn::new(ProxyMode::V1);
        let first = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r";
        feed(&mut c, first);
        assert!(matches!(c.next_event(&p, local()), Event::NeedData));
        let request = b"GET /x HTTP/1.1\r\nHost: abcd\r\n\r\n";
        assert_eq!(request.len(), first.len());
        feed(&mut c, b"\n");
        feed(&mut c, request);
        let Event::Request(r) = c.next_event(&p, local()) else { panic!("a request, not a wait") };
        assert_eq!(r.head.path, "/x");

        p.limit_request_line = 16;
        let mut c = ServerConn::new(ProxyMode::V1);
        feed(&mut c, b"PROXY TCP4 192.168.0.1 19");
        assert!(matches!(c.next_event(&p, local()), Event::NeedData));
        feed(&mut c, b".1.0.1 4 3\r\nGET /stuff/here?foo=bar H");
        match c.next_event(&p, local()) {
            Event::Reject(e) => assert_eq!(e, HttpError::LimitRequestLine { size: 25, max: 16 }),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn waits_name_the_deadline_that_applies() {
        let mut c = ServerConn::new(ProxyMode::Off);
        assert_eq!(c.waiting_for(), Wait::FirstRequest);
        feed(&mut c, b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n");
        assert!(matches!(c.next_event(&policy(), local()), Event::Request(_)));
        // The body is the application's business (Gunicorn waits for it
        // without the keep-alive limit).
        assert_eq!(c.waiting_for(), Wait::Exchange);
        feed(&mut c, b"ok");
        let mut body = Vec::new();
        assert_eq!(c.read_body(&mut body, usize::MAX), Ok(BodyRead::Complete));
        c.response_complete(true);
        assert_eq!(c.waiting_for(), Wait::KeepAlive);
        assert!(c.is_idle());
        assert!(c.release_buffer().is_some());
        feed(&mut c, b"GE");
        assert_eq!(c.waiting_for(), Wait::Request);
    }

    #[test]
    fn an_upgraded_connection_keeps_its_bytes_for_the_new_protocol() {
        let mut c = ServerConn::new(ProxyMode::Off);
        feed(&mut c, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x80");
        assert!(matches!(c.next_event(&policy(), local()), Event::Request(_)));
        c.upgrade();
        assert!(matches!(c.next_event(&policy(), local()), Event::Paused));
        assert_eq!(c.unread(), b"\x81\x80");
        c.end();
        assert!(matches!(c.next_event(&policy(), local()), Event::Close));
    }
}
