//! The per-connection reader: turns the bytes a client sends into messages
//! and control events, enforcing RFC 6455's framing rules, plus the close
//! codes and the close frame the server answers with.
//!
//! Driving it: keep the unconsumed bytes of each read, call
//! [`Reader::feed_with`] (or [`Reader::feed`]) on them, and drop the first
//! `used` bytes it returns. Data-frame payloads are consumed as they arrive,
//! so what stays behind is never more than an incomplete header or an
//! incomplete control frame (under [`MAX_PENDING`] bytes); the buffer never
//! has to hold a whole large message. The consumed bytes are unmasked in
//! place, so they must not be fed again.
//!
//! After a [`WsError`], send [`close_frame`] with [`WsError::close_code`] and
//! close the connection: the reader refuses all further input. After a
//! [`EventRef::Close`], answer with a close frame (echoing the code, or
//! 1000/empty when there was none) unless one was already sent, then close
//! the TCP connection; the reader ignores anything that follows.

use std::fmt;
use std::str;

use crate::ws::frame::{self, apply_mask, parse_header, FrameHeader, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::ws::utf8::Utf8Stream;

/// Most bytes [`Reader::feed_with`] can leave unconsumed: a complete header
/// of a control frame plus its whole payload, less one byte.
pub const MAX_PENDING: usize = MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD - 1;

/// Assembly buffers larger than this are released after their message, so
/// one big message does not pin its memory for the life of the connection.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// What a completed frame or message means to the application, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// `code` is `None` when the close frame had no payload (ASGI: 1005).
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// An [`Event`] borrowing its payload from the input buffer or the reader's
/// assembly buffer, valid only during the callback: lets the caller build its
/// Python object straight from those bytes with no intermediate copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventRef<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    Close { code: Option<u16>, reason: &'a str },
}

impl From<EventRef<'_>> for Event {
    fn from(e: EventRef<'_>) -> Event {
        match e {
            EventRef::Text(s) => Event::Text(s.to_owned()),
            EventRef::Binary(b) => Event::Binary(b.to_vec()),
            EventRef::Ping(b) => Event::Ping(b.to_vec()),
            EventRef::Pong(b) => Event::Pong(b.to_vec()),
            EventRef::Close { code, reason } => Event::Close { code, reason: reason.to_owned() },
        }
    }
}

/// Why the connection must be failed (RFC 6455 §7.1.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// A framing rule was broken; the text names which.
    Protocol(&'static str),
    /// A text message or close reason is not UTF-8.
    InvalidUtf8,
    /// A message (or single frame) exceeds the reader's limit.
    TooBig,
}

impl WsError {
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::InvalidUtf8 => 1007,
            WsError::TooBig => 1009,
        }
    }

    /// Short text for the close frame's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            WsError::Protocol(why) => why,
            WsError::InvalidUtf8 => "invalid UTF-8",
            WsError::TooBig => "message too big",
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.close_code())
    }
}

impl std::error::Error for WsError {}

/// RFC 6455 §7.4: the codes a peer may put in a close frame. 1004, 1005,
/// 1006 and 1015 are reserved for reporting and never appear on the wire;
/// 0-999, the rest of 1000-2999 and 5000+ are not assigned for use. 1012,
/// 1013 and 1014 were registered with IANA after the RFC; Gunicorn 27
/// accepts them too.
pub fn close_code_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Appends a close frame with `code` and `reason`, the reason cut on a char
/// boundary so the payload fits in 125 bytes. For a close frame with no
/// status at all, encode an empty [`Opcode::Close`] frame instead.
pub fn close_frame(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = reason.get(..cut).unwrap_or("");
    let header = frame::encode_header(Opcode::Close, true, 2 + reason.len());
    out.reserve(header.len() + 2 + reason.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// A data frame whose payload is still arriving.
#[derive(Clone, Copy, Debug)]
struct PendingPayload {
    remaining: u64,
    key: [u8; 4],
    offset: u64,
    fin: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    Failed(WsError),
}

/// Reads one connection's client-to-server stream.
#[derive(Debug)]
pub struct Reader {
    max_message_size: usize,
    state: State,
    payload: Option<PendingPayload>,
    /// Kind of the message being assembled, if one is.
    message: Option<Kind>,
    /// Sum of the announced payload lengths of the message's frames so far.
    message_len: u64,
    text: String,
    utf8: Utf8Stream,
    binary: Vec<u8>,
}

impl Reader {
    /// `max_message_size` bounds a whole message (all its fragments); use
    /// `usize::MAX` for no limit. Control frames are bounded by the protocol.
    pub fn new(max_message_size: usize) -> Reader {
        Reader {
            max_message_size,
            state: State::Open,
            payload: None,
            message: None,
            message_len: 0,
            text: String::new(),
            utf8: Utf8Stream::default(),
            binary: Vec::new(),
        }
    }

    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// True once a close frame was read; later input is discarded.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Consumes every complete frame at the front of `buf` and the available
    /// part of a data frame's payload, calling `on_event` for each event they
    /// complete, in order. Returns how many bytes were used; the rest (an
    /// incomplete header or control frame) must be fed again with more bytes
    /// after it. On error, the events before it were delivered already.
    #[inline]
    pub fn feed_with<F: FnMut(EventRef<'_>)>(&mut self, buf: &mut [u8], mut on_event: F) -> Result<usize, WsError> {
        match self.state {
            State::Open => {}
            State::Closed => return Ok(buf.len()),
            State::Failed(e) => return Err(e),
        }
        let result = self.run(buf, &mut on_event);
        if let Err(e) = result {
            self.state = State::Failed(e);
            self.release();
        }
        result
    }

    /// [`Reader::feed_with`] collecting owned events into `events`.
    pub fn feed(&mut self, buf: &mut [u8], events: &mut Vec<Event>) -> Result<usize, WsError> {
        self.feed_with(buf, |e| events.push(e.into()))
    }

    fn run<F: FnMut(EventRef<'_>)>(&mut self, buf: &mut [u8], on_event: &mut F) -> Result<usize, WsError> {
        let mut pos = 0;
        loop {
            let Some(rest) = buf.get_mut(pos..) else {
                return Ok(pos);
            };
            if let Some(mut pending) = self.payload {
                let take = usize::try_from(pending.remaining).unwrap_or(usize::MAX).min(rest.len());
                let chunk = rest.get_mut(..take).unwrap_or_default();
                apply_mask(chunk, pending.key, pending.offset);
                self.append(chunk)?;
                pos += take;
                pending.remaining -= take as u64;
                pending.offset += take as u64;
                if pending.remaining > 0 {
                    self.payload = Some(pending);
                    return Ok(pos);
                }
                self.payload = None;
                if pending.fin {
                    self.finish_message(on_event)?;
                }
                continue;
            }

            let header = match parse_header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(pos),
                Err(frame::LengthOverflow) => return Err(WsError::Protocol("payload length has its top bit set")),
            };
            let (opcode, key) = self.check(&header)?;
            // `check` bounded the length by 125 or by the message limit.
            let payload_len = usize::try_from(header.payload_len).map_err(|_| WsError::TooBig)?;
            let frame_len = header.header_len.saturating_add(payload_len);

            if opcode.is_control() {
                // Control payloads are small: wait for the whole frame.
                let Some(payload) = rest.get_mut(header.header_len..frame_len) else {
                    return Ok(pos);
                };
                apply_mask(payload, key, 0);
                pos += frame_len;
                match opcode {
                    Opcode::Ping => on_event(EventRef::Ping(payload)),
                    Opcode::Pong => on_event(EventRef::Pong(payload)),
                    _ => {
                        let (code, reason) = parse_close(payload)?;
                        self.state = State::Closed;
                        self.release();
                        on_event(EventRef::Close { code, reason });
                        return Ok(buf.len());
                    }
                }
                continue;
            }

            let kind = match opcode {
                Opcode::Text => Some(Kind::Text),
                Opcode::Binary => Some(Kind::Binary),
                _ => None,
            };
            if let (Some(kind), true) = (kind, header.fin) {
                // The common case, a whole unfragmented message already in
                // the buffer: hand it out in place, no copy.
                if let Some(payload) = rest.get_mut(header.header_len..frame_len) {
                    apply_mask(payload, key, 0);
                    pos += frame_len;
                    match kind {
                        Kind::Text => {
                            on_event(EventRef::Text(str::from_utf8(payload).map_err(|_| WsError::InvalidUtf8)?))
                        }
                        Kind::Binary => on_event(EventRef::Binary(payload)),
                    }
                    continue;
                }
            }
            if let Some(kind) = kind {
                self.message = Some(kind);
            }
            self.message_len += header.payload_len;
            self.payload = Some(PendingPayload { remaining: header.payload_len, key, offset: 0, fin: header.fin });
            pos += header.header_len;
        }
    }

    /// Applies the rules a header alone decides.
    #[inline]
    fn check(&self, h: &FrameHeader) -> Result<(Opcode, [u8; 4]), WsError> {
        if h.rsv != 0 {
            return Err(WsError::Protocol("reserved bits set without an extension"));
        }
        let opcode = Opcode::from_u8(h.opcode).ok_or(WsError::Protocol("reserved opcode"))?;
        let key = h.mask.ok_or(WsError::Protocol("client frame not masked"))?;
        if !h.length_is_minimal() {
            return Err(WsError::Protocol("payload length not in its minimal form"));
        }
        // Gunicorn 27's order, so a frame breaking two rules gets its code:
        // a misplaced data frame, a bad control frame, the size, and only
        // then a continuation with no message to continue.
        if matches!(opcode, Opcode::Text | Opcode::Binary) && self.message.is_some() {
            return Err(WsError::Protocol("new message before the fragmented one ended"));
        }
        if opcode.is_control() {
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(WsError::Protocol("control frame payload over 125 bytes"));
            }
            if !h.fin {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            return Ok((opcode, key));
        }
        if self.message_len.saturating_add(h.payload_len) > self.max_message_size as u64 {
            return Err(WsError::TooBig);
        }
        if opcode == Opcode::Continuation && self.message.is_none() {
            return Err(WsError::Protocol("continuation frame outside a message"));
        }
        Ok((opcode, key))
    }

    fn append(&mut self, chunk: &[u8]) -> Result<(), WsError> {
        match self.message {
            Some(Kind::Text) => self.utf8.push(chunk, &mut self.text).map_err(|_| WsError::InvalidUtf8),
            Some(Kind::Binary) => {
                self.binary.extend_from_slice(chunk);
                Ok(())
            }
            None => Err(WsError::Protocol("payload outside a message")),
        }
    }

    fn finish_message<F: FnMut(EventRef<'_>)>(&mut self, on_event: &mut F) -> Result<(), WsError> {
        let kind = self.message.take();
        self.message_len = 0;
        match kind {
            Some(Kind::Text) => {
                self.utf8.finish().map_err(|_| WsError::InvalidUtf8)?;
                on_event(EventRef::Text(&self.text));
                recycle_string(&mut self.text);
            }
            Some(Kind::Binary) => {
                on_event(EventRef::Binary(&self.binary));
                recycle_vec(&mut self.binary);
            }
            None => return Err(WsError::Protocol("message end outside a message")),
        }
        Ok(())
    }

    /// Frees the assembly buffers once no more messages can follow.
    fn release(&mut self) {
        self.payload = None;
        self.message = None;
        self.message_len = 0;
        self.text = String::new();
        self.binary = Vec::new();
        self.utf8 = Utf8Stream::default();
    }
}

fn recycle_string(s: &mut String) {
    if s.capacity() > RETAINED_CAPACITY {
        *s = String::new();
    } else {
        s.clear();
    }
}

fn recycle_vec(v: &mut Vec<u8>) {
    if v.capacity() > RETAINED_CAPACITY {
        *v = Vec::new();
    } else {
        v.clear();
    }
}

/// RFC 6455 §5.5.1: empty, or a valid status code then a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<(Option<u16>, &str), WsError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(WsError::Protocol("close frame payload of 1 byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_valid(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            let reason = str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok((Some(code), reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::encode_masked;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn client(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_masked(opcode, fin, payload, MASK, &mut out);
        out
    }

    /// Feeds the whole stream at once; returns events and the final outcome.
    fn read_all(max: usize, wire: &[u8]) -> (Vec<Event>, Result<usize, WsError>) {
        let mut reader = Reader::new(max);
        let mut events = Vec::new();
        let mut buf = wire.to_vec();
        let r = reader.feed(&mut buf, &mut events);
        (events, r)
    }

    fn error_of(max: usize, wire: &[u8]) -> WsError {
        match read_all(max, wire).1 {
            Err(e) => e,
            Ok(n) => panic!("expected an error, consumed {n}"),
        }
    }

    /// Feeds `wire` in pieces cut at `cuts`, keeping unconsumed bytes like a
    /// connection driver would; returns the events and the first error.
    fn read_chunked(max: usize, wire: &[u8], cuts: &[usize]) -> (Vec<Event>, Option<WsError>) {
        let mut reader = Reader::new(max);
        let mut events = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c <= wire.len()).collect();
        ends.sort_unstable();
        ends.push(wire.len());
        for end in ends {
            pending.extend_from_slice(&wire[start..end.max(start)]);
            start = end.max(start);
            match reader.feed(&mut pending, &mut events) {
                Ok(used) => {
                    assert!(used <= pending.len());
                    pending.drain(..used);
                    assert!(pending.len() <= MAX_PENDING, "left {} bytes", pending.len());
                }
                Err(e) => return (events, Some(e)),
            }
        }
        (events, None)
    }

    #[test]
    fn rfc_masked_hello() {
        let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (events, r) = read_all(1 << 20, &wire);
        assert_eq!(r, Ok(wire.len()));
        assert_eq!(events, [Event::Text("Hello".into())]);
    }

    #[test]
    fn rfc_unmasked_hello_is_a_protocol_error() {
        let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let e = error_of(1 << 20, &wire);
        assert_eq!(e, WsError::Protocol("client frame not masked"));
        assert_eq!(e.close_code(), 1002);
    }

    #[test]
    fn rfc_fragmented_hello() {
        let wire = [client(Opcode::Text, false, b"Hel"), client(Opcode::Continuation, true, b"lo")].concat();
        let (events, r) = read_all(1 << 20, &wire);
        assert_eq!(r, Ok(wire.len()));
        assert_eq!(events, [Event::Text("Hello".into())]);
    }

    #[test]
    fn rfc_ping_and_pong() {
        let wire = [0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(read_all(1 << 20, &wire).0, [Event::Ping(b"Hello".to_vec())]);
        let wire = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(read_all(1 << 20, &wire).0, [Event::Pong(b"Hello".to_vec())]);
    }

    #[test]
    fn rfc_256_byte_and_64k_binary() {
        for len in [256usize, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let wire = client(Opcode::Binary, true, &payload);
            assert_eq!(&wire[..2], if len == 256 { &[0x82, 0xFE][..] } else { &[0x82, 0xFF][..] });
            let (events, r) = read_all(1 << 20, &wire);
            assert_eq!(r, Ok(wire.len()));
            assert_eq!(events, [Event::Binary(payload.clone())]);
            let (events, err) = read_chunked(1 << 20, &wire, &[1, 3, 9, 100, 300, 40_000]);
            assert_eq!((events, err), (vec![Event::Binary(payload)], None));
        }
    }

    #[test]
    fn empty_messages() {
        let wire = [
            client(Opcode::Text, true, b""),
            client(Opcode::Binary, true, b""),
            client(Opcode::Text, false, b""),
            client(Opcode::Continuation, false, b""),
            client(Opcode::Continuation, true, b""),
            client(Opcode::Ping, true, b""),
        ]
        .concat();
        let expected =
            [Event::Text(String::new()), Event::Binary(vec![]), Event::Text(String::new()), Event::Ping(vec![])];
        assert_eq!(read_all(100, &wire).0, expected);
        assert_eq!(read_chunked(100, &wire, &[1, 2, 7, 13]).0, expected);
    }

    #[test]
    fn rsv_bits_are_protocol_errors() {
        for rsv in [0x40, 0x20, 0x10, 0x70] {
            let mut wire = client(Opcode::Text, true, b"x");
            wire[0] |= rsv;
            assert_eq!(error_of(100, &wire), WsError::Protocol("reserved bits set without an extension"));
        }
    }

    #[test]
    fn reserved_opcodes_are_protocol_errors() {
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            let mut wire = client(Opcode::Binary, true, b"x");
            wire[0] = 0x80 | op;
            let e = error_of(100, &wire);
            assert_eq!((e, e.close_code()), (WsError::Protocol("reserved opcode"), 1002), "opcode {op:#x}");
        }
    }

    #[test]
    fn control_frame_rules() {
        let e = error_of(1000, &client(Opcode::Ping, true, &[0; 126]));
        assert_eq!(e, WsError::Protocol("control frame payload over 125 bytes"));
        assert_eq!(read_all(1000, &client(Opcode::Ping, true, &[7; 125])).0, [Event::Ping(vec![7; 125])]);
        for op in [Opcode::Ping, Opcode::Pong, Opcode::Close] {
            let e = error_of(1000, &client(op, false, b""));
            assert_eq!(e, WsError::Protocol("fragmented control frame"));
        }
        // Control limits hold even when the message limit is lower.
        assert_eq!(read_all(1, &client(Opcode::Ping, true, &[1; 100])).0, [Event::Ping(vec![1; 100])]);
    }

    #[test]
    fn control_frames_between_fragments() {
        let wire = [
            client(Opcode::Text, false, b"He"),
            client(Opcode::Ping, true, b"p1"),
            client(Opcode::Continuation, false, b"l"),
            client(Opcode::Pong, true, b"p2"),
            client(Opcode::Continuation, true, b"lo"),
        ]
        .concat();
        let expected = [Event::Ping(b"p1".to_vec()), Event::Pong(b"p2".to_vec()), Event::Text("Hello".into())];
        assert_eq!(read_all(100, &wire).0, expected);
        for cut in 0..wire.len() {
            assert_eq!(read_chunked(100, &wire, &[cut]), (expected.to_vec(), None), "cut {cut}");
        }
    }

    #[test]
    fn close_between_fragments_ends_the_stream() {
        let wire = [
            client(Opcode::Binary, false, b"ab"),
            client(Opcode::Close, true, &[0x03, 0xe8]),
            client(Opcode::Continuation, true, b"cd"),
        ]
        .concat();
        let (events, r) = read_all(100, &wire);
        assert_eq!(events, [Event::Close { code: Some(1000), reason: String::new() }]);
        assert_eq!(r, Ok(wire.len()));
    }

    #[test]
    fn sequencing_errors() {
        let e = error_of(100, &client(Opcode::Continuation, true, b"x"));
        assert_eq!(e, WsError::Protocol("continuation frame outside a message"));
        for op in [Opcode::Text, Opcode::Binary] {
            let wire = [client(Opcode::Binary, false, b"a"), client(op, true, b"b")].concat();
            assert_eq!(error_of(100, &wire), WsError::Protocol("new message before the fragmented one ended"));
        }
        // A finished message frees the sequence for a new one.
        let wire = [
            client(Opcode::Text, false, b"a"),
            client(Opcode::Continuation, true, b"b"),
            client(Opcode::Continuation, true, b"c"),
        ]
        .concat();
        let (events, r) = read_all(100, &wire);
        assert_eq!(events, [Event::Text("ab".into())]);
        assert_eq!(r, Err(WsError::Protocol("continuation frame outside a message")));
    }

    #[test]
    fn invalid_utf8_text() {
        let e = error_of(100, &client(Opcode::Text, true, b"ok \xff"));
        assert_eq!((e, e.close_code()), (WsError::InvalidUtf8, 1007));
        // Cut short at the end of the message.
        let wire = [client(Opcode::Text, false, b"ok \xe2\x82"), client(Opcode::Continuation, true, b"")].concat();
        assert_eq!(error_of(100, &wire), WsError::InvalidUtf8);
        // Binary is not checked.
        assert_eq!(read_all(100, &client(Opcode::Binary, true, b"\xff")).0, [Event::Binary(vec![0xff])]);
    }

    #[test]
    fn invalid_utf8_prefix_fails_before_the_message_ends() {
        let mut reader = Reader::new(100);
        let mut events = Vec::new();
        let mut first = client(Opcode::Text, false, b"ok \xc0\xaf");
        assert_eq!(reader.feed(&mut first, &mut events), Err(WsError::InvalidUtf8));
        // Also within one frame still arriving.
        let mut reader = Reader::new(100);
        let wire = client(Opcode::Text, true, b"\xed\xa0\x80 and more to come");
        let mut head = wire[..9].to_vec();
        assert_eq!(reader.feed(&mut head, &mut events), Err(WsError::InvalidUtf8));
        assert!(events.is_empty());
    }

    #[test]
    fn utf8_split_across_fragments() {
        let text = "€𝄞é";
        let b = text.as_bytes();
        for i in 0..=b.len() {
            for j in i..=b.len() {
                let wire = [
                    client(Opcode::Text, false, &b[..i]),
                    client(Opcode::Continuation, false, &b[i..j]),
                    client(Opcode::Continuation, true, &b[j..]),
                ]
                .concat();
                assert_eq!(read_all(100, &wire).0, [Event::Text(text.into())], "{i} {j}");
            }
        }
    }

    #[test]
    fn too_big_known_from_the_header() {
        // Only the header of a huge frame: the error comes before any payload.
        let mut header = frame::encode_header(Opcode::Binary, true, 1 << 40).to_vec();
        header[1] |= 0x80;
        header.extend_from_slice(&MASK);
        let e = error_of(1 << 20, &header);
        assert_eq!((e, e.close_code()), (WsError::TooBig, 1009));
        // Exactly the limit is fine; one more is not.
        assert_eq!(read_all(10, &client(Opcode::Binary, true, &[1; 10])).0, [Event::Binary(vec![1; 10])]);
        assert_eq!(error_of(10, &client(Opcode::Binary, true, &[1; 11])), WsError::TooBig);
        // Fragments add up; the third header alone trips it.
        let wire = [
            client(Opcode::Text, false, b"aaaa"),
            client(Opcode::Continuation, false, b"bbbb"),
            client(Opcode::Continuation, true, b"ccc"),
        ]
        .concat();
        assert_eq!(read_all(12, &wire).0, [Event::Text("aaaabbbbccc".into())]);
        let (events, err) = read_chunked(10, &wire, &[(wire.len() - 3)]);
        assert_eq!((events, err), (vec![], Some(WsError::TooBig)));
    }

    #[test]
    fn no_allocation_from_an_announced_length() {
        let mut reader = Reader::new(usize::MAX);
        let mut wire = frame::encode_header(Opcode::Binary, true, 1 << 60).to_vec();
        wire[1] |= 0x80;
        wire.extend_from_slice(&MASK);
        wire.extend_from_slice(&[0; 10]);
        let mut events = Vec::new();
        assert_eq!(reader.feed(&mut wire, &mut events), Ok(wire.len()));
        assert!(reader.binary.capacity() < 1024);
        assert_eq!(reader.binary.len(), 10);
    }

    #[test]
    fn length_with_top_bit_is_a_protocol_error() {
        let mut wire = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1];
        wire.extend_from_slice(&MASK);
        assert_eq!(error_of(usize::MAX, &wire).close_code(), 1002);
    }

    #[test]
    fn close_payloads() {
        let close = |payload: &[u8]| read_all(100, &client(Opcode::Close, true, payload));
        assert_eq!(close(b"").0, [Event::Close { code: None, reason: String::new() }]);
        assert_eq!(close(b"\x03\xe8").0, [Event::Close { code: Some(1000), reason: String::new() }]);
        assert_eq!(
            close(&[&[0x0f, 0xa0], "bye ✓".as_bytes()].concat()).0,
            [Event::Close { code: Some(4000), reason: "bye ✓".into() }]
        );
        assert_eq!(close(b"\x03").1, Err(WsError::Protocol("close frame payload of 1 byte")));
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
            let e = close(&code.to_be_bytes()).1;
            assert_eq!(e, Err(WsError::Protocol("invalid close code")), "code {code}");
        }
        let e = close(b"\x03\xe8bad \xff").1.unwrap_err();
        assert_eq!((e, e.close_code()), (WsError::InvalidUtf8, 1007));
    }

    #[test]
    fn non_minimal_lengths_are_protocol_errors() {
        // RFC 6455 §5.2 ("the minimal number of bytes MUST be used"), and
        // Gunicorn 27 fails the connection with 1002.
        let with_key = |head: &[u8]| [head, &MASK, b"hello"].concat();
        let e = error_of(1 << 20, &with_key(&[0x82, 0xFE, 0x00, 0x05]));
        assert_eq!((e, e.close_code()), (WsError::Protocol("payload length not in its minimal form"), 1002));
        let e = error_of(1 << 20, &with_key(&[0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5]));
        assert_eq!(e.close_code(), 1002);
        let e = error_of(1 << 20, &with_key(&[0x89, 0xFE, 0x00, 0x05]));
        assert_eq!(e.close_code(), 1002);
    }

    #[test]
    fn a_frame_breaking_two_rules_gets_gunicorns_code() {
        // A continuation with no message to continue that is also over the
        // limit: Gunicorn checks the size first (1009).
        assert_eq!(error_of(100, &client(Opcode::Continuation, true, &[0; 101])), WsError::TooBig);
        assert_eq!(
            error_of(100, &client(Opcode::Continuation, true, &[0; 100])),
            WsError::Protocol("continuation frame outside a message")
        );
        // A new message inside a fragmented one comes before the size.
        let wire = [client(Opcode::Text, false, b"a"), client(Opcode::Binary, true, &[0; 200])].concat();
        assert_eq!(error_of(100, &wire), WsError::Protocol("new message before the fragmented one ended"));
    }

    #[test]
    fn close_code_table() {
        let valid: Vec<u16> = (0..=u16::MAX).filter(|&c| close_code_valid(c)).collect();
        assert_eq!(valid.len(), 4 + 8 + 2000);
        for c in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
            assert!(close_code_valid(c), "{c}");
        }
        for c in [1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!close_code_valid(c), "{c}");
        }
    }

    #[test]
    fn after_close_input_is_discarded() {
        let mut reader = Reader::new(100);
        let mut events = Vec::new();
        let mut wire = [client(Opcode::Close, true, b"\x03\xe9"), client(Opcode::Text, true, b"late")].concat();
        assert_eq!(reader.feed(&mut wire, &mut events), Ok(wire.len()));
        assert!(reader.is_closed());
        let mut more = client(Opcode::Text, true, b"later");
        assert_eq!(reader.feed(&mut more, &mut events), Ok(more.len()));
        assert_eq!(events, [Event::Close { code: Some(1001), reason: String::new() }]);
    }

    #[test]
    fn errors_are_sticky_and_earlier_events_delivered() {
        let mut reader = Reader::new(100);
        let mut events = Vec::new();
        let mut wire = [client(Opcode::Text, true, b"first"), vec![0x81, 0x01, b'x']].concat();
        let e = reader.feed(&mut wire, &mut events).unwrap_err();
        assert_eq!(events, [Event::Text("first".into())]);
        let mut fine = client(Opcode::Text, true, b"ok");
        assert_eq!(reader.feed(&mut fine, &mut events), Err(e));
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn partial_input_is_left_unconsumed() {
        let wire = client(Opcode::Ping, true, b"12345");
        let mut reader = Reader::new(100);
        let mut events = Vec::new();
        for cut in 0..wire.len() {
            let mut part = wire[..cut].to_vec();
            assert_eq!(reader.feed(&mut part, &mut events), Ok(0), "cut {cut}");
            assert_eq!(part, wire[..cut], "control frames are not unmasked until whole");
        }
        // A data frame's payload is consumed as it comes.
        let wire = client(Opcode::Binary, true, b"12345");
        let mut part = wire[..8].to_vec();
        assert_eq!(reader.feed(&mut part, &mut events), Ok(8));
        let mut rest = wire[8..].to_vec();
        assert_eq!(reader.feed(&mut rest, &mut events), Ok(3));
        assert_eq!(events, [Event::Binary(b"12345".to_vec())]);
    }

    #[test]
    fn zero_copy_callback_borrows_the_buffer() {
        let mut reader = Reader::new(100);
        let mut wire = [client(Opcode::Text, true, b"one"), client(Opcode::Binary, true, b"two")].concat();
        let mut seen = Vec::new();
        let used = reader
            .feed_with(&mut wire, |e| match e {
                EventRef::Text(s) => seen.push(s.len()),
                EventRef::Binary(b) => seen.push(b.len() * 10),
                _ => {}
            })
            .unwrap();
        assert_eq!((used, seen), (wire.len(), vec![3, 30]));
    }

    #[test]
    fn close_frame_encoding() {
        let mut out = Vec::new();
        close_frame(1000, "", &mut out);
        assert_eq!(out, [0x88, 0x02, 0x03, 0xe8]);
        out.clear();
        close_frame(1001, "bye", &mut out);
        assert_eq!(out, [0x88, 0x05, 0x03, 0xe9, b'b', b'y', b'e']);
        // 2-byte characters: 123 bytes would split one, so 122 are kept.
        let long = "é".repeat(100);
        out.clear();
        close_frame(1011, &long, &mut out);
        assert_eq!(out[1] as usize, 2 + 122);
        assert_eq!(out.len(), 2 + 2 + 122);
        assert!(str::from_utf8(&out[4..]).is_ok());
        let ascii = "x".repeat(200);
        out.clear();
        close_frame(1000, &ascii, &mut out);
        assert_eq!(out[1], 125);
    }

    #[test]
    fn error_reasons_fit_a_close_frame() {
        for e in [WsError::Protocol("client frame not masked"), WsError::InvalidUtf8, WsError::TooBig] {
            let mut out = Vec::new();
            close_frame(e.close_code(), e.reason(), &mut out);
            assert!(out.len() <= 2 + 125);
            assert!(close_code_valid(e.close_code()));
            assert!(!e.to_string().is_empty());
        }
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn cuts(&mut self, len: usize) -> Vec<usize> {
            let n = self.below(6);
            (0..n).map(|_| self.below(len + 1)).collect()
        }
    }

    /// Random bytes, with frame-like first bytes often enough to get past the
    /// header checks: no input panics, and every chunking agrees.
    #[test]
    fn fuzz_random_bytes_any_chunking() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..20_000 {
            let len = rng.below(64);
            let mut wire: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let mut i = 0;
            while i + 1 < wire.len() && rng.below(3) > 0 {
                wire[i] = [0x81, 0x82, 0x01, 0x00, 0x80, 0x89, 0x8a, 0x88][rng.below(8)];
                wire[i + 1] = 0x80 | [0, 1, 2, 5, 11, 125, 126, 127][rng.below(8)];
                i += 2 + 4 + (wire[i + 1] & 0x7f) as usize;
            }
            let max = [0, 5, 30, usize::MAX][rng.below(4)];
            let whole = read_chunked(max, &wire, &[]);
            for _ in 0..4 {
                let cuts = rng.cuts(wire.len());
                assert_eq!(read_chunked(max, &wire, &cuts), whole, "{wire:x?} {cuts:?}");
            }
            let bytewise: Vec<usize> = (0..wire.len()).collect();
            assert_eq!(read_chunked(max, &wire, &bytewise), whole, "{wire:x?} bytewise");
        }
    }

    /// Random valid traffic: messages of random kinds and contents, randomly
    /// fragmented, with pings between fragments and an optional close.
    fn valid_stream(rng: &mut Rng) -> (Vec<u8>, Vec<Event>) {
        let alphabet = ["a", "é", "€", "𝄞", " ", "\u{7ff}", "\u{10ffff}"];
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..rng.below(5) {
            let text = rng.below(2) == 0;
            let payload: Vec<u8> = if text {
                (0..rng.below(40)).flat_map(|_| alphabet[rng.below(alphabet.len())].bytes()).collect()
            } else {
                (0..rng.below(300)).map(|_| rng.next() as u8).collect()
            };
            let mut start = 0;
            let mut first = true;
            loop {
                let end = (start + rng.below(payload.len() + 1)).min(payload.len());
                let fin = end == payload.len() && rng.below(4) > 0;
                let op = match (first, text) {
                    (false, _) => Opcode::Continuation,
                    (true, true) => Opcode::Text,
                    (true, false) => Opcode::Binary,
                };
                let key = (rng.next() as u32).to_be_bytes();
                encode_masked(op, fin, &payload[start..end], key, &mut wire);
                if fin {
                    expected.push(if text {
                        Event::Text(String::from_utf8(payload.clone()).unwrap())
                    } else {
                        Event::Binary(payload.clone())
                    });
                }
                if rng.below(4) == 0 {
                    let ping: Vec<u8> = (0..rng.below(126)).map(|_| rng.next() as u8).collect();
                    encode_masked(Opcode::Ping, true, &ping, key, &mut wire);
                    expected.push(Event::Ping(ping));
                }
                first = false;
                start = end;
                if fin {
                    break;
                }
            }
        }
        if rng.below(2) == 0 {
            encode_masked(Opcode::Close, true, b"\x03\xe8done", MASK, &mut wire);
            expected.push(Event::Close { code: Some(1000), reason: "done".into() });
            wire.extend_from_slice(b"ignored garbage");
        }
        (wire, expected)
    }

    /// Valid traffic decodes to exactly its messages however it is chunked.
    #[test]
    fn fuzz_valid_streams_any_chunking() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3_000 {
            let (wire, expected) = valid_stream(&mut rng);
            for _ in 0..5 {
                let cuts = rng.cuts(wire.len());
                assert_eq!(read_chunked(1 << 20, &wire, &cuts), (expected.clone(), None), "{cuts:?}");
            }
        }
    }

    /// Valid traffic with a few bytes overwritten reaches every rule from
    /// deep inside well-formed streams: no panic, and every chunking agrees.
    #[test]
    fn fuzz_mutated_streams_any_chunking() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut outcomes = [0usize; 4];
        for _ in 0..5_000 {
            let (mut wire, _) = valid_stream(&mut rng);
            if wire.is_empty() {
                continue;
            }
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(wire.len());
                wire[i] = match rng.below(3) {
                    0 => rng.next() as u8,
                    1 => wire[i] ^ (1 << rng.below(8)),
                    _ => [0x7E, 0xFE, 0x7F, 0xFF, 0x00, 0x80][rng.below(6)],
                };
            }
            let max = [0, 40, 1 << 20][rng.below(3)];
            let whole = read_chunked(max, &wire, &[]);
            outcomes[match whole.1 {
                None => 0,
                Some(WsError::Protocol(_)) => 1,
                Some(WsError::InvalidUtf8) => 2,
                Some(WsError::TooBig) => 3,
            }] += 1;
            for _ in 0..3 {
                let cuts = rng.cuts(wire.len());
                assert_eq!(read_chunked(max, &wire, &cuts), whole, "{wire:x?} {cuts:?}");
            }
        }
        // Each outcome is reached often enough to mean something.
        assert!(outcomes.iter().all(|&n| n > 100), "{outcomes:?}");
    }
}
