//! Gunicorn's `wsgi.Response` framing rules as a pure state machine:
//! status and header validation, hop-by-hop filtering, `Connection`,
//! chunked vs Content-Length, no-body responses, truncation to the declared
//! length, and the chunk framing of each write.
//!
//! Input is bytes: the WSGI bridge encodes the application's `str` status
//! and headers as latin-1 first (refusing what does not encode, as
//! `str.encode("latin-1")` would).

use std::fmt;
use std::ops::Range;

use crate::http::error::ErrorResponse;
use crate::http::text::{is_token, latin1_to_string, py_int, py_repr};

pub use crate::http::date::{http_date, DateCache};

/// An application mistake caught by `start_response`; Gunicorn answers it
/// like any application exception (500, if nothing was sent yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The status text (latin-1), failing `STATUS_RE`; Python `ValueError`.
    InvalidStatus(String),
    /// The header name (latin-1); `InvalidResponseHeaderName`.
    InvalidHeaderName(String),
    /// The header *name* (the value may be sensitive); `InvalidResponseHeader`.
    InvalidHeaderValue(String),
    /// The Content-Length value after stripping; `int()`'s `ValueError`.
    InvalidContentLength(String),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::InvalidStatus(s) => write!(f, "Invalid status {}", py_repr(s)),
            ResponseError::InvalidHeaderName(n) => {
                write!(f, "Invalid response header name from the application: {}", py_repr(n))
            }
            ResponseError::InvalidHeaderValue(n) => {
                write!(f, "Invalid response header from the application: {}", py_repr(n))
            }
            ResponseError::InvalidContentLength(v) => {
                write!(f, "invalid literal for int() with base 10: {}", py_repr(v))
            }
        }
    }
}

impl std::error::Error for ResponseError {}

impl ResponseError {
    /// What Gunicorn's `handle_error` sends for it (when nothing was sent).
    pub fn response(&self) -> ErrorResponse {
        ErrorResponse { status: 500, reason: "Internal Server Error", message: String::new() }
    }
}

/// What the response rules need to know about the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub method_is_head: bool,
    pub version: (u8, u8),
    /// `RequestHead::should_close()`.
    pub should_close: bool,
    /// The response goes on an HTTP/2 stream, which delimits the body.
    pub http2: bool,
    /// The answer to a uwsgi packet: never chunked (the front end would
    /// pass the chunk markers on as body).
    pub uwsgi: bool,
}

/// `util.hop_headers`.
const HOP_HEADERS: [&[u8]; 10] = [
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailers",
    b"transfer-encoding",
    b"upgrade",
    b"server",
    b"date",
];

/// `util.is_hoppish(name)`: `name.lower().strip()` is hop-by-hop (or one of
/// `server`/`date`, which Gunicorn writes itself).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let start = name.iter().position(|&b| !py_space(b)).unwrap_or(name.len());
    let end = name.iter().rposition(|&b| !py_space(b)).map_or(start, |e| e + 1);
    let name = name.get(start..end).unwrap_or(&[]);
    HOP_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// `str.isspace()` for latin-1.
fn py_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | 0x1c..=0x20 | 0x85 | 0xa0)
}

/// `STATUS_RE`: three ASCII digits, optionally a space and a reason of
/// HTAB / SP / VCHAR / obs-text.
fn status_valid(s: &[u8]) -> bool {
    match s {
        [a, b, c, rest @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => match rest {
            [] => true,
            [b' ', reason @ ..] => reason.iter().all(|&b| field_value_byte(b)),
            _ => false,
        },
        _ => false,
    }
}

/// `HEADER_VALUE_RE` character class.
#[inline]
fn field_value_byte(b: u8) -> bool {
    b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

fn strip_sp_tab(s: &[u8]) -> &[u8] {
    crate::http::text::trim_sp_tab(s)
}

/// How one body write goes on the wire: `prefix`, then the first
/// `data_len` bytes of the data, then `suffix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyPlan {
    prefix: [u8; 18],
    prefix_len: u8,
    pub data_len: u64,
    pub suffix: &'static [u8],
}

impl BodyPlan {
    const NOTHING: BodyPlan = BodyPlan { prefix: [0; 18], prefix_len: 0, data_len: 0, suffix: b"" };

    fn chunk(len: u64) -> BodyPlan {
        let mut plan = BodyPlan { data_len: len, suffix: b"\r\n", ..BodyPlan::NOTHING };
        // "%X\r\n" % len: at most 16 hex digits + CRLF.
        let hex = format!("{len:X}\r\n");
        let n = hex.len().min(plan.prefix.len());
        plan.prefix[..n].copy_from_slice(&hex.as_bytes()[..n]);
        plan.prefix_len = n as u8;
        plan
    }

    fn raw(len: u64) -> BodyPlan {
        BodyPlan { data_len: len, ..BodyPlan::NOTHING }
    }

    /// The chunk-size line, or nothing.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix[..usize::from(self.prefix_len)]
    }

    /// Whether nothing at all goes on the wire.
    pub fn is_empty(&self) -> bool {
        self.prefix_len == 0 && self.data_len == 0 && self.suffix.is_empty()
    }

    /// The data range to send out of a buffer of `len` bytes.
    pub fn data_range(&self, len: usize) -> Range<usize> {
        0..usize::try_from(self.data_len).map_or(len, |d| d.min(len))
    }
}

/// One response's framing state, from `start_response` to the last write.
#[derive(Clone, Debug)]
pub struct ResponseState {
    req: RequestInfo,
    status: Vec<u8>,
    status_code: u16,
    /// The application headers kept, serialized as `Name: value\r\n` lines.
    header_lines: Vec<u8>,
    header_spans: Vec<(Range<usize>, Range<usize>)>,
    /// Python's `response_length`: any integer the application declared.
    response_length: Option<i128>,
    chunked: bool,
    must_close: bool,
    upgrade: bool,
    omits_body: bool,
    sent: u64,
}

impl ResponseState {
    /// `Response.start_response(status, headers)` (+ `process_headers`).
    pub fn start(req: &RequestInfo, status: &[u8], headers: &[(&[u8], &[u8])]) -> Result<ResponseState, ResponseError> {
        if !status_valid(status) {
            return Err(ResponseError::InvalidStatus(latin1_to_string(status)));
        }
        let status_code = status.iter().take(3).fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
        // RFC 9110: HEAD and 1xx/204/304 carry no body, and 1xx/204 no
        // Content-Length either (a 304 or HEAD may keep the GET's).
        let omits_body =
            req.method_is_head || status_code == 204 || status_code == 304 || (100..200).contains(&status_code);
        let forbids_length = status_code == 204 || (100..200).contains(&status_code);

        let mut state = ResponseState {
            req: *req,
            status: status.to_vec(),
            status_code,
            header_lines: Vec::with_capacity(headers.len() * 32),
            header_spans: Vec::with_capacity(headers.len()),
            response_length: None,
            chunked: false,
            must_close: false,
            upgrade: false,
            omits_body,
            sent: 0,
        };
        for &(name, value) in headers {
            if !is_token(name) {
                return Err(ResponseError::InvalidHeaderName(latin1_to_string(name)));
            }
            if !value.iter().all(|&b| field_value_byte(b)) {
                return Err(ResponseError::InvalidHeaderValue(latin1_to_string(name)));
            }
            let value = strip_sp_tab(value);
            if name.eq_ignore_ascii_case(b"content-length") {
                let n = py_int(value).ok_or_else(|| ResponseError::InvalidContentLength(latin1_to_string(value)))?;
                state.response_length = Some(n);
                if omits_body && forbids_length {
                    continue;
                }
            } else if is_hop_by_hop(name) {
                if name.eq_ignore_ascii_case(b"connection") {
                    if value.eq_ignore_ascii_case(b"upgrade") {
                        state.upgrade = true;
                    }
                } else if name.eq_ignore_ascii_case(b"upgrade") && value.eq_ignore_ascii_case(b"websocket") {
                    state.push_header(name, value);
                }
                continue;
            }
            state.push_header(name, value);
        }
        if omits_body && forbids_length {
            state.response_length = None;
        }
        // HTTP/2 delimits the body by the stream's end (chunked coding is
        // forbidden there, RFC 9113 8.2.2).
        state.chunked =
            state.response_length.is_none() && req.version > (1, 0) && !req.http2 && !req.uwsgi && !omits_body;
        Ok(state)
    }

    fn push_header(&mut self, name: &[u8], value: &[u8]) {
        let n0 = self.header_lines.len();
        self.header_lines.extend_from_slice(name);
        let n1 = self.header_lines.len();
        self.header_lines.extend_from_slice(b": ");
        let v0 = self.header_lines.len();
        self.header_lines.extend_from_slice(value);
        let v1 = self.header_lines.len();
        self.header_lines.extend_from_slice(b"\r\n");
        self.header_spans.push((n0..n1, v0..v1));
    }

    pub fn status_code(&self) -> u16 {
        self.status_code
    }

    /// The status line text as the application gave it.
    pub fn status(&self) -> &[u8] {
        &self.status
    }

    /// The application headers that will be sent (values stripped), for
    /// access logs.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.header_spans.iter().map(|(n, v)| {
            (self.header_lines.get(n.clone()).unwrap_or(&[]), self.header_lines.get(v.clone()).unwrap_or(&[]))
        })
    }

    pub fn force_close(&mut self) {
        self.must_close = true;
    }

    /// `Response.should_close()`.
    pub fn should_close(&self) -> bool {
        if self.must_close || self.req.should_close {
            return true;
        }
        if self.response_length.is_some() || self.chunked {
            return false;
        }
        if self.req.method_is_head {
            return false;
        }
        !(self.status_code < 200 || self.status_code == 204 || self.status_code == 304)
    }

    pub fn is_chunked(&self) -> bool {
        self.chunked
    }

    /// Whether the application sent `Connection: upgrade`.
    pub fn is_upgrade(&self) -> bool {
        self.upgrade
    }

    /// The declared Content-Length (negative values read as 0: nothing is
    /// ever written), if any and if this status may carry one.
    pub fn content_length(&self) -> Option<u64> {
        self.response_length.map(|n| u64::try_from(n.max(0)).unwrap_or(u64::MAX))
    }

    /// `default_headers()` + `send_headers()`: status line, Server, Date,
    /// Connection, Transfer-Encoding when chunked, the application's
    /// headers, and the empty line.
    pub fn write_head(&mut self, out: &mut Vec<u8>, server: &[u8], date: &[u8]) {
        let connection: &[u8] = if self.upgrade {
            b"upgrade"
        } else if self.should_close() {
            b"close"
        } else {
            b"keep-alive"
        };
        out.reserve(64 + self.status.len() + server.len() + date.len() + self.header_lines.len());
        out.extend_from_slice(b"HTTP/");
        push_u8(out, self.req.version.0);
        out.push(b'.');
        push_u8(out, self.req.version.1);
        out.push(b' ');
        out.extend_from_slice(&self.status);
        out.extend_from_slice(b"\r\nServer: ");
        out.extend_from_slice(server);
        out.extend_from_slice(b"\r\nDate: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\nConnection: ");
        out.extend_from_slice(connection);
        out.extend_from_slice(b"\r\n");
        if self.chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        out.extend_from_slice(&self.header_lines);
        out.extend_from_slice(b"\r\n");
    }

    /// The head as HTTP/2 fields: the application's headers (hop-by-hop
    /// ones were dropped), then Server and Date unless the application gave
    /// them, as Gunicorn's HTTP/2 response adds them.
    pub fn fields(&self, server: &[u8], date: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> =
            self.headers().map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec())).collect();
        if !fields.iter().any(|(n, _)| n == b"server") {
            fields.push((b"server".to_vec(), server.to_vec()));
        }
        if !fields.iter().any(|(n, _)| n == b"date") {
            fields.push((b"date".to_vec(), date.to_vec()));
        }
        fields
    }

    /// `Response.write(data)`'s framing, appended to `out`.
    pub fn frame_body(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let plan = self.plan_body(data.len() as u64);
        out.extend_from_slice(plan.prefix());
        out.extend_from_slice(data.get(plan.data_range(data.len())).unwrap_or(&[]));
        out.extend_from_slice(plan.suffix);
    }

    /// `Response.write()` for `len` bytes, without touching them: nothing
    /// for a no-body response, truncated to Content-Length, nothing for an
    /// empty chunk (which would end the body), chunk framing otherwise.
    pub fn plan_body(&mut self, len: u64) -> BodyPlan {
        if self.omits_body {
            return BodyPlan::NOTHING;
        }
        let mut tosend = len;
        if let Some(limit) = self.response_length {
            let sent = i128::from(self.sent);
            if sent >= limit {
                return BodyPlan::NOTHING;
            }
            tosend = u64::try_from(limit - sent).map_or(len, |room| room.min(len));
        }
        if self.chunked && tosend == 0 {
            return BodyPlan::NOTHING;
        }
        self.sent += tosend;
        if self.chunked {
            BodyPlan::chunk(tosend)
        } else {
            BodyPlan::raw(tosend)
        }
    }

    /// `Response.sendfile()`'s framing for a file with `file_remaining`
    /// bytes from its current offset: the whole declared Content-Length
    /// (the kernel stops at end of file) or the rest of the file, one chunk
    /// even when empty, and `sent` is not counted, all as Gunicorn does.
    pub fn plan_sendfile(&mut self, file_remaining: u64) -> BodyPlan {
        if self.omits_body {
            return BodyPlan::NOTHING;
        }
        let nbytes = match self.response_length {
            Some(n) => u64::try_from(n.max(0)).unwrap_or(u64::MAX),
            None => file_remaining,
        };
        if self.chunked {
            BodyPlan::chunk(nbytes)
        } else {
            BodyPlan::raw(nbytes)
        }
    }

    /// `Response.close()`'s tail: the last chunk when chunked. (`close()`
    /// also sends the head if nothing was written: call `write_head` first.)
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }

    /// Body bytes accounted by `write()` so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn omits_body(&self) -> bool {
        self.omits_body
    }
}

fn push_u8(out: &mut Vec<u8>, v: u8) {
    if v >= 100 {
        out.push(b'0' + v / 100);
    }
    if v >= 10 {
        out.push(b'0' + v / 10 % 10);
    }
    out.push(b'0' + v % 10);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET11: RequestInfo =
        RequestInfo { method_is_head: false, version: (1, 1), should_close: false, http2: false, uwsgi: false };
    const GET10: RequestInfo =
        RequestInfo { method_is_head: false, version: (1, 0), should_close: true, http2: false, uwsgi: false };
    const HEAD11: RequestInfo =
        RequestInfo { method_is_head: true, version: (1, 1), should_close: false, http2: false, uwsgi: false };

    fn start(req: &RequestInfo, status: &str, headers: &[(&str, &str)]) -> ResponseState {
        try_start(req, status, headers).unwrap()
    }

    fn try_start(req: &RequestInfo, status: &str, headers: &[(&str, &str)]) -> Result<ResponseState, ResponseError> {
        let h: Vec<(&[u8], &[u8])> = headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
        ResponseState::start(req, status.as_bytes(), &h)
    }

    fn head_text(r: &mut ResponseState) -> String {
        let mut out = Vec::new();
        r.write_head(&mut out, b"gunicorn", b"Thu, 01 Jan 1970 00:00:00 GMT");
        String::from_utf8(out).unwrap()
    }

    fn write_all(r: &mut ResponseState, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            r.frame_body(p, &mut out);
        }
        r.finish(&mut out);
        out
    }

    #[test]
    fn chunked_keepalive_response() {
        let mut r = start(&GET11, "200 OK", &[("Content-Type", " text/plain \t"), ("X-A", "1")]);
        assert!(r.is_chunked() && !r.should_close());
        assert_eq!(
            head_text(&mut r),
            "HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\n"
        );
        assert_eq!(
            write_all(&mut r, &[b"hello", b"", b"0123456789abcdefX"]),
            b"5\r\nhello\r\n11\r\n0123456789abcdefX\r\n0\r\n\r\n"
        );
        assert_eq!(r.sent(), 22);
        let hs: Vec<_> = r.headers().collect();
        assert_eq!(hs, vec![(&b"Content-Type"[..], &b"text/plain"[..]), (b"X-A", b"1")]);
    }

    #[test]
    fn content_length_truncates() {
        let mut r = start(&GET11, "200 OK", &[("Content-Length", "5")]);
        assert!(!r.is_chunked() && !r.should_close());
        assert_eq!(r.content_length(), Some(5));
        assert_eq!(write_all(&mut r, &[b"hel", b"lo world", b"more"]), b"hello");
        assert_eq!(r.sent(), 5);
        // Python int() forms.
        let mut r = start(&GET11, "200 OK", &[("Content-Length", "+1_0")]);
        assert_eq!(r.content_length(), Some(10));
        assert_eq!(write_all(&mut r, &[b"0123456789abc"]), b"0123456789");
        let mut r = start(&GET11, "200 OK", &[("Content-Length", "-5")]);
        assert_eq!(write_all(&mut r, &[b"abc"]), b"");
        assert_eq!(
            try_start(&GET11, "200 OK", &[("Content-Length", "12a")]).unwrap_err().to_string(),
            "invalid literal for int() with base 10: '12a'"
        );
    }

    #[test]
    fn http10_and_close() {
        let mut r = start(&GET10, "200 OK", &[]);
        assert!(!r.is_chunked() && r.should_close());
        assert!(head_text(&mut r).contains("HTTP/1.0 200 OK\r\n"));
        assert!(head_text(&mut r).contains("Connection: close\r\n"));
        assert_eq!(write_all(&mut r, &[b"abc", b""]), b"abc");
        let mut r = start(&GET11, "200 OK", &[("Content-Length", "3")]);
        r.force_close();
        assert!(head_text(&mut r).contains("Connection: close\r\n"));
    }

    #[test]
    fn no_body_statuses() {
        let mut r = start(&HEAD11, "200 OK", &[("Content-Length", "5")]);
        assert!(r.omits_body() && !r.is_chunked() && !r.should_close());
        assert!(head_text(&mut r).contains("Content-Length: 5\r\n"));
        assert_eq!(write_all(&mut r, &[b"hello"]), b"");
        let mut r = start(&GET11, "204 No Content", &[("Content-Length", "5"), ("content-length", "1"), ("X", "y")]);
        assert_eq!(r.content_length(), None);
        assert!(!head_text(&mut r).to_ascii_lowercase().contains("content-length"));
        assert!(!r.should_close());
        let mut r = start(&GET11, "304 Not Modified", &[("Content-Length", "5")]);
        assert!(head_text(&mut r).contains("Content-Length: 5\r\n"));
        let r = start(&GET11, "103 Early Hints", &[]);
        assert!(r.omits_body() && !r.is_chunked());
        let r = start(&GET10, "200 OK", &[]);
        assert!(r.should_close());
        let r = start(&HEAD11, "200 OK", &[]);
        assert!(!r.should_close());
    }

    #[test]
    fn hop_by_hop_filtering() {
        let mut r = start(
            &GET11,
            "101 Switching Protocols",
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Server", "x"),
                ("Date", "y"),
                ("Keep-Alive", "z"),
                ("Transfer-Encoding", "chunked"),
            ],
        );
        assert!(r.is_upgrade());
        let t = head_text(&mut r);
        assert!(t.contains("Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"), "{t}");
        assert!(!t.contains("Server: x") && !t.contains("Keep-Alive"));
        let mut r = start(&GET11, "200 OK", &[("Upgrade", "h2c")]);
        assert!(!head_text(&mut r).contains("Upgrade"));
        assert!(is_hop_by_hop(b" TE \t"));
        assert!(!is_hop_by_hop(b"content-length"));
    }

    #[test]
    fn validation() {
        for bad in ["20 OK", "2000", "200OK", "200\tOK", "abc OK", "200 O\nK", "", "200 \x7f"] {
            assert_eq!(try_start(&GET11, bad, &[]).unwrap_err(), ResponseError::InvalidStatus(bad.into()), "{bad:?}");
        }
        for ok in ["200", "200 ", "200 OK \t", "599 \u{e9}"] {
            let bytes = crate::http::text::string_to_latin1(ok);
            assert!(ResponseState::start(&GET11, &bytes, &[]).is_ok(), "{ok:?}");
        }
        assert_eq!(try_start(&GET11, "200 OK", &[]).unwrap().status_code(), 200);
        let e = try_start(&GET11, "200 OK", &[("X Y", "1")]).unwrap_err();
        assert_eq!(e.to_string(), "Invalid response header name from the application: 'X Y'");
        let e = try_start(&GET11, "200 OK", &[("X", "a\r\nSet-Cookie: x")]).unwrap_err();
        assert_eq!(e, ResponseError::InvalidHeaderValue("X".into()));
        assert_eq!(e.to_string(), "Invalid response header from the application: 'X'");
        assert_eq!(e.response().status, 500);
        assert_eq!(try_start(&GET11, "2x0 OK", &[]).unwrap_err().to_string(), "Invalid status '2x0 OK'");
    }

    #[test]
    fn plans_for_zero_copy_writes() {
        let mut r = start(&GET11, "200 OK", &[]);
        let p = r.plan_body(300);
        assert_eq!((p.prefix(), p.data_len, p.suffix), (&b"12C\r\n"[..], 300, &b"\r\n"[..]));
        assert_eq!(p.data_range(300), 0..300);
        assert!(r.plan_body(0).is_empty());
        let p = r.plan_sendfile(0);
        assert_eq!(p.prefix(), b"0\r\n");
        let mut r = start(&GET11, "200 OK", &[("Content-Length", "10")]);
        let p = r.plan_sendfile(4);
        assert_eq!((p.prefix(), p.data_len, p.suffix), (&b""[..], 10, &b""[..]));
        assert_eq!(r.sent(), 0);
        let p = r.plan_body(25);
        assert_eq!(p.data_len, 10);
        let p = BodyPlan::chunk(u64::MAX);
        assert_eq!(p.prefix(), b"FFFFFFFFFFFFFFFF\r\n");
    }

    #[test]
    fn http2_bodies_are_not_chunked_and_fields_get_server_and_date() {
        let req =
            RequestInfo { method_is_head: false, version: (2, 0), should_close: false, http2: true, uwsgi: false };
        let r = ResponseState::start(&req, b"200 OK", &[(b"X-A", b"1"), (b"Connection", b"close")]).unwrap();
        assert!(!r.is_chunked());
        let fields = r.fields(b"ferrocorn", b"today");
        assert_eq!(
            fields,
            vec![
                (b"x-a".to_vec(), b"1".to_vec()),
                (b"server".to_vec(), b"ferrocorn".to_vec()),
                (b"date".to_vec(), b"today".to_vec())
            ]
        );
        // Server and Date are Gunicorn's own, as in HTTP/1 (hop-by-hop to it).
        let r = ResponseState::start(&req, b"200 OK", &[(b"Server", b"mine")]).unwrap();
        assert_eq!(r.fields(b"ferrocorn", b"today")[0], (b"server".to_vec(), b"ferrocorn".to_vec()));
    }

    #[test]
    fn odd_versions_in_status_line() {
        let req =
            RequestInfo { method_is_head: false, version: (2, 0), should_close: false, http2: false, uwsgi: false };
        let mut r = start(&req, "200 OK", &[]);
        assert!(head_text(&mut r).starts_with("HTTP/2.0 200 OK\r\n"));
    }
}
