//! Request body decoding: Gunicorn's `LengthReader` and `ChunkedReader`
//! (chunk-size grammar, chunk extensions, trailer section and its limits),
//! as an incremental, zero-copy state machine over the connection buffer.

use crate::http::error::HttpError;
use crate::http::policy::HttpPolicy;
use crate::http::request::{
    find_blank_line, find_crlf, parse_fields, split_at_byte, BodyFraming, FieldContext, FieldRules, FieldState, Header,
    Scheme,
};
use crate::http::text::{latin1_to_string, rtrim_sp_tab, TOKEN_CHARS};

/// What [`BodyDecoder::decode`] found at the front of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Body bytes for the application (a slice of the buffer passed in).
    Data(&'a [u8]),
    /// Nothing more can be decoded until more bytes arrive.
    NeedMore,
    /// The body (and any trailer section) is complete.
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Length {
        remaining: u64,
    },
    ChunkSize,
    ChunkData {
        remaining: u64,
    },
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
    Done,
    /// A decode error happened: the next request's start is unknown, so the
    /// connection must close (Gunicorn's `Body.failed`).
    Failed(HttpError),
}

/// Incremental request-body decoder.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: State,
    /// `limit_request_field_size`, Gunicorn's bound on a chunk-size line.
    limit_size_line: usize,
    /// `max_buffer_headers`, Gunicorn's bound on a trailer section.
    limit_trailers: usize,
    rules: FieldRules,
    trailers: Vec<Header>,
    /// Bytes at the front of the buffer already scanned without finding the
    /// end of the current size line or trailer section.
    scanned: usize,
    /// What was buffered of a chunk's closing CRLF when more was needed;
    /// reported if the peer closes there.
    partial_end: Vec<u8>,
    truncated: bool,
}

impl BodyDecoder {
    pub fn new(framing: &BodyFraming, policy: &HttpPolicy) -> Self {
        let state = match *framing {
            BodyFraming::Empty | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length { remaining: n },
            BodyFraming::Chunked => State::ChunkSize,
            // Never decoded from bytes: HTTP/2 frames the body itself.
            BodyFraming::Stream => State::Done,
        };
        BodyDecoder {
            state,
            limit_size_line: policy.limit_request_field_size(),
            limit_trailers: policy.max_buffer_headers(),
            rules: FieldRules::from_policy(policy),
            trailers: Vec::new(),
            scanned: 0,
            partial_end: Vec::new(),
            truncated: false,
        }
    }

    /// Looks at the connection's buffered bytes (starting right after what
    /// earlier calls consumed); returns how many to drop from the front and
    /// what they carried. The count may be non-zero with `NeedMore` (chunk
    /// framing consumed) and covers framing before and after `Data`.
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Result<(usize, Decoded<'a>), HttpError> {
        let mut pos = 0usize;
        loop {
            let rest = buf.get(pos..).unwrap_or(&[]);
            match &mut self.state {
                State::Done => return Ok((pos, Decoded::Done)),
                State::Failed(e) => return Err(e.clone()),
                State::Length { remaining } | State::ChunkData { remaining } => {
                    if rest.is_empty() {
                        return Ok((pos, Decoded::NeedMore));
                    }
                    let n = usize::try_from(*remaining).map_or(rest.len(), |r| r.min(rest.len()));
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.state = match self.state {
                            State::ChunkData { .. } => State::ChunkEnd,
                            _ => State::Done,
                        };
                    }
                    return Ok((pos + n, Decoded::Data(rest.get(..n).unwrap_or(&[]))));
                }
                State::ChunkSize => match self.chunk_size_line(rest) {
                    Err(e) => return Err(self.fail(e)),
                    Ok(None) => return Ok((pos, Decoded::NeedMore)),
                    Ok(Some((size, used))) => {
                        pos += used;
                        self.scanned = 0;
                        self.state = if size == 0 { State::Trailers } else { State::ChunkData { remaining: size } };
                    }
                },
                State::ChunkEnd => {
                    // Gunicorn waits for two bytes before it judges them.
                    let Some(end) = rest.get(..2) else {
                        self.partial_end = rest.to_vec();
                        return Ok((pos, Decoded::NeedMore));
                    };
                    if end != b"\r\n" {
                        let e = HttpError::ChunkMissingTerminator(latin1_to_string(end));
                        return Err(self.fail(e));
                    }
                    pos += 2;
                    self.partial_end.clear();
                    self.state = State::ChunkSize;
                }
                State::Trailers => match self.trailer_section(rest) {
                    Err(e) => return Err(self.fail(e)),
                    Ok(None) => return Ok((pos, Decoded::NeedMore)),
                    Ok(Some(used)) => {
                        pos += used;
                        self.state = State::Done;
                    }
                },
            }
        }
    }

    fn fail(&mut self, e: HttpError) -> HttpError {
        self.state = State::Failed(e.clone());
        e
    }

    /// `ChunkedReader.parse_chunk_size`: `Some((size, bytes used))`.
    fn chunk_size_line(&mut self, data: &[u8]) -> Result<Option<(u64, usize)>, HttpError> {
        let from = self.scanned.saturating_sub(1);
        let Some(idx) = find_crlf(data.get(from..).unwrap_or(&[])).map(|i| from + i) else {
            if data.len() > self.limit_size_line {
                return Err(HttpError::InvalidChunkSize(format!(
                    "line over {} bytes with no terminator",
                    self.limit_size_line
                )));
            }
            self.scanned = data.len();
            return Ok(None);
        };
        let line = data.get(..idx).unwrap_or(&[]);
        let (mut size, ext) = match split_at_byte(line, b';') {
            Some((size, ext)) => (size, Some(ext)),
            None => (line, None),
        };
        if let Some(ext) = ext {
            // RFC 9112: no bare CR in a chunk extension.
            if ext.contains(&b'\r') {
                return Err(HttpError::InvalidChunkExtension("bare CR not allowed".to_owned()));
            }
            // BWS is allowed before chunk-ext, and only there.
            size = rtrim_sp_tab(size);
        }
        if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(HttpError::InvalidChunkSize(latin1_to_string(size)));
        }
        if let Some(ext) = ext {
            if !chunk_ext_valid(ext) {
                return Err(HttpError::InvalidChunkExtension("invalid chunk extension".to_owned()));
            }
        }
        let value = size.iter().fold(0u64, |acc, &d| {
            let digit = (d as char).to_digit(16).unwrap_or(0);
            acc.saturating_mul(16).saturating_add(u64::from(digit))
        });
        Ok(Some((value, idx + 2)))
    }

    /// `ChunkedReader.parse_trailers`: `Some(bytes used)` once complete.
    fn trailer_section(&mut self, data: &[u8]) -> Result<Option<usize>, HttpError> {
        if data.starts_with(b"\r\n") {
            return Ok(Some(2));
        }
        let from = self.scanned.saturating_sub(3);
        let Some(idx) = find_blank_line(data.get(from..).unwrap_or(&[])).map(|i| from + i) else {
            if data.len() > self.limit_trailers {
                return Err(HttpError::LimitRequestHeaders("limit request trailer section size"));
            }
            let bare_lf = memchr::memchr_iter(b'\n', data.get(self.scanned..).unwrap_or(&[]))
                .map(|i| self.scanned + i)
                .any(|at| at == 0 || data.get(at - 1) != Some(&b'\r'));
            if bare_lf {
                return Err(HttpError::InvalidHeader("bare LF as line terminator".to_owned()));
            }
            self.scanned = data.len();
            return Ok(None);
        };
        let ctx = FieldContext {
            rules: self.rules,
            // Scheme and forwarder headers mean nothing in trailers.
            forwarding: None,
            from_trailer: true,
            version: (1, 1),
        };
        let mut state = FieldState::new(Scheme::Http);
        self.trailers = parse_fields(data.get(..idx).unwrap_or(&[]), &ctx, &mut state)?;
        Ok(Some(idx + 4))
    }

    /// The peer closed the connection: `Ok` when the body is complete, else
    /// the error to raise in `wsgi.input.read()`. A Content-Length body cut
    /// short is NoMoreData: Gunicorn silently hands the app the shorter
    /// body, which ferrocorn refuses to do (an app must never take a
    /// truncated body for a whole one; see docs/compatibility.md).
    /// Call it once `decode` has returned `NeedMore` for everything buffered
    /// (the bytes of a half-received chunk terminator go into the message).
    pub fn at_eof(&mut self) -> Result<(), HttpError> {
        match &self.state {
            State::Done => Ok(()),
            State::Failed(e) => Err(e.clone()),
            State::Length { .. } => {
                self.truncated = true;
                Err(self.fail(HttpError::NoMoreData))
            }
            State::ChunkSize | State::ChunkData { .. } => Err(self.fail(HttpError::NoMoreData)),
            State::ChunkEnd => {
                let e = HttpError::ChunkMissingTerminator(latin1_to_string(&self.partial_end));
                Err(self.fail(e))
            }
            // RFC 9112 7.1.2: the last chunk must be followed by a
            // CRLF-terminated trailer section.
            State::Trailers => Err(self.fail(HttpError::ChunkMissingTerminator(String::new()))),
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether decoding failed: the connection cannot be reused.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Whether a Content-Length body ended early at EOF.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The trailer fields of a chunked body, once it is done.
    pub fn trailers(&self) -> &[Header] {
        &self.trailers
    }

    /// Bytes still expected in the current stretch of body data (the rest of
    /// a Content-Length body or of the current chunk), to size reads.
    pub fn remaining_hint(&self) -> Option<u64> {
        match self.state {
            State::Length { remaining } | State::ChunkData { remaining } => Some(remaining),
            _ => None,
        }
    }
}

/// `CHUNK_EXT_RE.fullmatch(b";" + ext)`, i.e. RFC 9112 7.1.1
/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`.
/// Deterministic: tokens cannot contain whitespace, `;`, `=` or `"`, so no
/// backtracking of the regex can find a match this misses.
fn chunk_ext_valid(ext: &[u8]) -> bool {
    // The caller removed the first ";".
    let s = ext;
    let mut pos = 0usize;
    let mut first = true;
    loop {
        if !first {
            if pos == s.len() {
                return true;
            }
            pos = skip_ws(s, pos);
            if s.get(pos) != Some(&b';') {
                return false;
            }
            pos += 1;
        }
        first = false;
        pos = skip_ws(s, pos);
        let Some(after_name) = token_end(s, pos) else {
            return false;
        };
        pos = after_name;
        let eq = skip_ws(s, pos);
        if s.get(eq) == Some(&b'=') {
            let v = skip_ws(s, eq + 1);
            pos = match s.get(v) {
                Some(b'"') => match quoted_end(s, v) {
                    Some(end) => end,
                    None => return false,
                },
                _ => match token_end(s, v) {
                    Some(end) => end,
                    None => return false,
                },
            };
        }
    }
}

fn skip_ws(s: &[u8], mut pos: usize) -> usize {
    while matches!(s.get(pos), Some(b' ' | b'\t')) {
        pos += 1;
    }
    pos
}

fn token_end(s: &[u8], pos: usize) -> Option<usize> {
    let len = s.get(pos..)?.iter().take_while(|&&b| TOKEN_CHARS[usize::from(b)]).count();
    (len > 0).then_some(pos + len)
}

/// End of a quoted-string starting at `pos` (which holds `"`).
fn quoted_end(s: &[u8], pos: usize) -> Option<usize> {
    let mut i = pos + 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                let e = *s.get(i + 1)?;
                if !(e == b'\t' || (0x20..=0x7e).contains(&e) || e >= 0x80) {
                    return None;
                }
                i += 2;
            }
            b'\t' | b' ' | b'!' | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // tests change one rule of the default policy
mod tests {
    use super::*;

    /// Decodes `input` delivered in pieces of `step` bytes (the way a
    /// connection buffer fills); returns the body or the first error, and
    /// how many bytes were left after the body.
    fn decode_in_steps(
        framing: BodyFraming,
        policy: &HttpPolicy,
        input: &[u8],
        step: usize,
    ) -> (Result<Vec<u8>, HttpError>, usize, BodyDecoder) {
        let mut dec = BodyDecoder::new(&framing, policy);
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut body = Vec::new();
        loop {
            match dec.decode(&buf) {
                Err(e) => return (Err(e), 0, dec),
                Ok((used, Decoded::Data(d))) => {
                    body.extend_from_slice(d);
                    buf.drain(..used);
                }
                Ok((used, Decoded::Done)) => {
                    buf.drain(..used);
                    let left = buf.len() + input.len() - fed;
                    return (Ok(body), left, dec);
                }
                Ok((used, Decoded::NeedMore)) => {
                    buf.drain(..used);
                    if fed == input.len() {
                        return (dec.at_eof().map(|_| body), 0, dec);
                    }
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
        }
    }

    /// Every step size must give the same outcome.
    fn decode_all_ways(framing: BodyFraming, input: &[u8]) -> (Result<Vec<u8>, HttpError>, usize) {
        decode_all_ways_with(framing, &HttpPolicy::default(), input)
    }

    fn decode_all_ways_with(
        framing: BodyFraming,
        policy: &HttpPolicy,
        input: &[u8],
    ) -> (Result<Vec<u8>, HttpError>, usize) {
        let (whole, left, _) = decode_in_steps(framing, policy, input, input.len().max(1));
        for step in [1, 2, 3, 7] {
            let (r, l, _) = decode_in_steps(framing, policy, input, step);
            assert_eq!((&r, l), (&whole, left), "step {step} for {input:?}");
        }
        (whole, left)
    }

    fn chunked(input: &[u8]) -> Result<Vec<u8>, HttpError> {
        decode_all_ways(BodyFraming::Chunked, input).0
    }

    #[test]
    fn length_bodies() {
        let (r, left) = decode_all_ways(BodyFraming::Length(5), b"helloGET");
        assert_eq!((r.unwrap(), left), (b"hello".to_vec(), 3));
        let (r, left) = decode_all_ways(BodyFraming::Length(0), b"GET");
        assert_eq!((r.unwrap(), left), (Vec::new(), 3));
        let (r, _) = decode_all_ways(BodyFraming::Empty, b"");
        assert_eq!(r.unwrap(), b"");
        // EOF before Content-Length is reached: Gunicorn hands over less;
        // ferrocorn raises NoMoreData instead.
        let (r, _, dec) = decode_in_steps(BodyFraming::Length(10), &HttpPolicy::default(), b"abc", 2);
        assert_eq!(r, Err(HttpError::NoMoreData));
        assert!(dec.is_truncated() && dec.is_failed());
    }

    #[test]
    fn length_hint() {
        let p = HttpPolicy::default();
        let mut d = BodyDecoder::new(&BodyFraming::Length(10), &p);
        assert_eq!(d.remaining_hint(), Some(10));
        assert_eq!(d.decode(b"abcd").unwrap(), (4, Decoded::Data(b"abcd")));
        assert_eq!(d.remaining_hint(), Some(6));
        assert_eq!(d.decode(b"").unwrap(), (0, Decoded::NeedMore));
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            chunked(b"1e\r\nall your base are belong to us\r\n0\r\n\r\n").unwrap(),
            b"all your base are belong to us"
        );
        assert_eq!(
            chunked(b"5; some; parameters=stuff\r\nhello\r\n6; blahblah; blah\r\n world\r\n0\r\n\r\n").unwrap(),
            b"hello world"
        );
        assert_eq!(chunked(b"5\r\nhello\r\n6\r\n world\r\n000\r\n\r\n").unwrap(), b"hello world");
        assert_eq!(chunked(b"0005\r\nhello\r\n0\r\n\r\n").unwrap(), b"hello");
        assert_eq!(chunked(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap(), b"0123456789");
        assert_eq!(chunked(b"5 \t;a=\"q\\\"x\" ; b = c\r\nhello\r\n0\r\n\r\n").unwrap(), b"hello");
        let (r, left) = decode_all_ways(BodyFraming::Chunked, b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1");
        assert_eq!((r.unwrap(), left), (b"hello".to_vec(), 14));
    }

    #[test]
    fn chunk_size_errors() {
        use HttpError::*;
        assert_eq!(chunked(b"5\r\nhello\r\n 0\r\n\r\n"), Err(InvalidChunkSize(" 0".into())));
        assert_eq!(chunked(b"5\n;\r\nhello\r\n0\r\n\r\n"), Err(InvalidChunkSize("5\n".into())));
        assert_eq!(chunked(b" ;foo=bar\r\nhello\r\n0\r\n\r\n"), Err(InvalidChunkSize("".into())));
        assert_eq!(chunked(b"-5\r\nhello\r\n0\r\n\r\n"), Err(InvalidChunkSize("-5".into())));
        assert_eq!(chunked(b"+5\r\nhello\r\n0\r\n\r\n"), Err(InvalidChunkSize("+5".into())));
        assert_eq!(chunked(b"\r\n"), Err(InvalidChunkSize("".into())));
        assert_eq!(chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), Err(InvalidChunkSize("0x5".into())));
        assert_eq!(chunked(b"5 \r\nhello\r\n0\r\n\r\n"), Err(InvalidChunkSize("5 ".into())));
        let e = chunked(b"5\r\nhello\r\n 0\r\n\r\n").unwrap_err();
        assert_eq!(e.to_string(), "Invalid chunk size: b' 0'");
    }

    #[test]
    fn chunk_extension_errors() {
        use HttpError::*;
        let cr = || Err(InvalidChunkExtension("bare CR not allowed".into()));
        let bad = || Err(InvalidChunkExtension("invalid chunk extension".into()));
        assert_eq!(chunked(b"5;ext=val\rue\r\nhello\r\n0\r\n\r\n"), cr());
        for ext in
            [&b"5;"[..], b"5;a ", b"5;a=", b"5;=b", b"5;a=\"x", b"5;a=\"\x01\"", b"5;a;", b"5;a=b c", b"5;a=\"x\"y"]
        {
            let raw = [ext, b"\r\nhello\r\n0\r\n\r\n"].concat();
            assert_eq!(chunked(&raw), bad(), "{ext:?}");
        }
        // The size is judged first.
        assert_eq!(chunked(b"x;=\r\n"), Err(InvalidChunkSize("x".into())));
    }

    #[test]
    fn chunk_ext_grammar() {
        for ok in [
            &b"a"[..],
            b" a",
            b"a=b",
            b"a = b",
            b"a=\"\"",
            b"a=\"\\\"\"",
            b"a;b",
            b"a ;b",
            b"a; b=c ;d",
            b"a=\"\x80\xff\"",
        ] {
            assert!(chunk_ext_valid(ok), "{ok:?}");
        }
        for bad in [&b""[..], b" ", b"a ", b"a=b ", b";", b"a;", b"a=\"\\\x01\"", b"a=b=c", b"a\"b\""] {
            assert!(!chunk_ext_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn chunk_terminators_and_eof() {
        use HttpError::*;
        assert_eq!(chunked(b"5\r\nhelloXY0\r\n\r\n"), Err(ChunkMissingTerminator("XY".into())));
        assert_eq!(chunked(b"5\r\nhello\rX"), Err(ChunkMissingTerminator("\rX".into())));
        // EOF at each point of a chunked body.
        assert_eq!(chunked(b""), Err(NoMoreData));
        assert_eq!(chunked(b"5\r"), Err(NoMoreData));
        assert_eq!(chunked(b"5\r\nhel"), Err(NoMoreData));
        assert_eq!(chunked(b"5\r\nhello"), Err(ChunkMissingTerminator("".into())));
        assert_eq!(chunked(b"5\r\nhello\r"), Err(ChunkMissingTerminator("\r".into())));
        assert_eq!(chunked(b"5\r\nhello\r\n"), Err(NoMoreData));
        assert_eq!(chunked(b"0\r\n"), Err(ChunkMissingTerminator("".into())));
        assert_eq!(chunked(b"0\r\nX: y\r\n"), Err(ChunkMissingTerminator("".into())));
        assert_eq!(NoMoreData.response(), None);
    }

    #[test]
    fn trailers() {
        let raw = b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\nNEXT";
        let (r, left, dec) = decode_in_steps(BodyFraming::Chunked, &HttpPolicy::default(), raw, 3);
        assert_eq!((r.unwrap(), left), (b"hello".to_vec(), 4));
        let t: Vec<_> = dec.trailers().iter().map(|h| (h.name.as_str(), h.value.as_slice())).collect();
        assert_eq!(t, vec![("X-CHECKSUM", &b"abc"[..]), ("X-OTHER", b"d")]);
        assert_eq!(decode_all_ways(BodyFraming::Chunked, raw).0.unwrap(), b"hello");
    }

    #[test]
    fn trailer_errors() {
        use HttpError::*;
        for name in ["Content-Length", "Host", "Transfer-Encoding", "Trailer", "Authorization", "TE"] {
            let raw = format!("0\r\n{name}: 1\r\n\r\n");
            assert_eq!(chunked(raw.as_bytes()), Err(InvalidHeaderName(name.to_ascii_uppercase())));
        }
        assert_eq!(chunked(b"0\r\nX: a\nb: c"), Err(InvalidHeader("bare LF as line terminator".into())));
        assert_eq!(
            chunked(b"0\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n"),
            Err(InvalidHeader("CONTENT-TYPE".into()))
        );
        assert_eq!(chunked(b"0\r\nX: a\x01\r\n\r\n"), Err(InvalidHeader("X".into())));
        // Expect means nothing in trailers; underscores follow header_map.
        assert_eq!(chunked(b"0\r\nExpect: nonsense\r\nA_B: 1\r\n\r\n"), Ok(Vec::new()));
        let mut p = HttpPolicy::default();
        p.header_map = crate::http::policy::HeaderMapPolicy::Refuse;
        assert_eq!(
            decode_all_ways_with(BodyFraming::Chunked, &p, b"0\r\nScript_Name: /x\r\n\r\n").0,
            Err(InvalidHeaderName("SCRIPT_NAME".into()))
        );
    }

    #[test]
    fn size_limits() {
        let mut p = HttpPolicy::default();
        p.limit_request_field_size = 8;
        // A size line with no CRLF yet, over the limit.
        let (r, _) = decode_all_ways_with(BodyFraming::Chunked, &p, b"5;aaaaaaa");
        assert_eq!(r, Err(HttpError::InvalidChunkSize("line over 8 bytes with no terminator".into())));
        let e = r.unwrap_err();
        assert_eq!(e.to_string(), "Invalid chunk size: b'line over 8 bytes with no terminator'");
        // Trailer section bounded by max_buffer_headers (100 * 10 + 4).
        let big = [&b"0\r\nX: "[..], &[b'a'; 1010], b"\r\n"].concat();
        let (r, _) = decode_all_ways_with(BodyFraming::Chunked, &p, &big);
        assert_eq!(r, Err(HttpError::LimitRequestHeaders("limit request trailer section size")));
    }

    #[test]
    fn failure_is_sticky() {
        let p = HttpPolicy::default();
        let mut d = BodyDecoder::new(&BodyFraming::Chunked, &p);
        assert!(d.decode(b"zz\r\n").is_err());
        assert!(d.is_failed());
        assert!(d.decode(b"5\r\nhello\r\n").is_err());
        assert!(d.at_eof().is_err());
    }

    #[test]
    fn zero_copy_and_framing_counts() {
        let p = HttpPolicy::default();
        let mut d = BodyDecoder::new(&BodyFraming::Chunked, &p);
        let buf = b"5\r\nhello\r\n0\r\n\r\n";
        let (used, got) = d.decode(buf).unwrap();
        assert_eq!((used, got), (8, Decoded::Data(&buf[3..8])));
        assert_eq!(d.decode(&buf[8..]).unwrap(), (7, Decoded::Done));
        assert!(d.is_done());
        let mut d = BodyDecoder::new(&BodyFraming::Chunked, &p);
        assert_eq!(d.decode(b"5\r\n").unwrap(), (3, Decoded::NeedMore));
        assert_eq!(d.remaining_hint(), Some(5));
    }
}
