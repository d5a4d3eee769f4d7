//! The request head: leading CRLF, request line, header section and the body
//! framing they imply, following Gunicorn 27's pure-Python parser
//! (`Request._parse_python`, `parse_request_line`, `parse_headers`,
//! `_apply_header_policy`, `set_body_reader`) check for check and in the same
//! order, so the same bytes fail with the same exception.
//!
//! Sans-I/O: the parser looks at the bytes buffered so far. Gunicorn applies
//! some checks only while it waits for more input (request line over the
//! limit before its CRLF, a bare LF, header data over `max_buffer_headers`);
//! those are applied whenever the buffer does not yet hold the whole head,
//! which is what Gunicorn does after each read, so a driver that calls the
//! parser after every read gets Gunicorn's answer for the same reads.

use std::net::IpAddr;

use memchr::{memchr, memmem};

use crate::http::error::HttpError;
use crate::http::policy::{HeaderMapPolicy, HttpPolicy};
use crate::http::text::{is_token, latin1_to_string, rtrim_sp_tab, trim_sp_tab, TOKEN_CHARS};
use crate::http::uri::split_request_uri;

/// One header field as Gunicorn stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Uppercased, as `parse_headers` stores it (always an ASCII token).
    pub name: String,
    /// Raw bytes with surrounding spaces/tabs removed; latin-1 text for WSGI.
    /// Folded continuation lines (when permitted) are joined with one space.
    pub value: Vec<u8>,
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No Content-Length and no Transfer-Encoding: Gunicorn reads no body.
    Empty,
    /// Content-Length. Values past `u64::MAX` saturate (unreachable anyway).
    Length(u64),
    Chunked,
    /// HTTP/2: the body is the stream's DATA frames, until it ends.
    Stream,
}

/// `wsgi.url_scheme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A parsed request head. Text fields are ASCII: the request line is
/// refused unless its method is a token and its target printable ASCII.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// After `casefold_http_method`, if set.
    pub method: String,
    /// The request-target as sent (`RAW_URI`).
    pub uri: String,
    /// `urlsplit` path, still percent-encoded.
    pub path: String,
    pub query: String,
    pub fragment: String,
    pub version: (u8, u8),
    /// After the `header_map` policy, in arrival order.
    pub headers: Vec<Header>,
    /// From the secure-scheme headers of a trusted peer, else the listener's.
    pub scheme: Scheme,
    /// An HTTP/1.1+ `Expect: 100-continue`: Gunicorn writes
    /// `HTTP/1.1 100 Continue\r\n\r\n` when it builds the WSGI environ.
    pub expect_continue: bool,
    pub body: BodyFraming,
    /// A compress/deflate/gzip transfer-coding was declared.
    pub must_close: bool,
    /// Set when the request came as a uwsgi packet (`crate::uwsgi`).
    pub uwsgi: Option<Box<crate::uwsgi::UwsgiFacts>>,
}

impl RequestHead {
    /// Gunicorn's `Message.should_close()` for this request.
    pub fn should_close(&self) -> bool {
        if self.must_close || self.method == "CONNECT" {
            return true;
        }
        // Only the first Connection header counts, whatever it says.
        if let Some(v) = self.header("CONNECTION") {
            let v = trim_sp_tab(v);
            if v.eq_ignore_ascii_case(b"close") {
                return true;
            }
            if v.eq_ignore_ascii_case(b"keep-alive") {
                return false;
            }
        }
        self.version <= (1, 0)
    }

    /// The first header with this (uppercase) name.
    pub fn header(&self, upper_name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name == upper_name).map(|h| h.value.as_slice())
    }

    /// `SERVER_PROTOCOL`, e.g. `HTTP/1.1`.
    pub fn server_protocol(&self) -> String {
        format!("HTTP/{}.{}", self.version.0, self.version.1)
    }
}

/// The outcome of looking at a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The value, and how many bytes of the buffer it used.
    Complete(T, usize),
    /// Nothing wrong so far; more bytes are needed.
    Partial,
}

/// Parses a request head from everything buffered so far for this request
/// (after any PROXY header); `peer` is `None` for a Unix socket.
///
/// Stateless: each call starts again from the first byte, which costs one
/// pass over the buffered head (memchr/memmem speed), and judges the buffer
/// as if it had arrived in one read. A driver should rather keep a
/// [`HeadParser`], which resumes where the previous call stopped and knows
/// that the previous call had to wait.
pub fn parse_request_head(
    buf: &[u8],
    policy: &HttpPolicy,
    peer: Option<IpAddr>,
) -> Result<Parsed<RequestHead>, HttpError> {
    HeadParser::new().parse(buf, policy, peer)
}

/// The most a caller needs to buffer before [`parse_request_head`] must
/// have decided (completed or failed): an optional leading CRLF, the longest
/// request line allowed plus the bytes that prove it too long, and
/// `max_buffer_headers` plus one. `usize::MAX` when `limit_request_line` is
/// 0, which Gunicorn treats as unlimited. A PROXY header comes on top.
pub fn max_head_bytes(policy: &HttpPolicy) -> usize {
    match policy.limit_request_line() {
        0 => usize::MAX,
        limit => (2 + limit + 3).saturating_add(policy.max_buffer_headers()).saturating_add(1),
    }
}

/// A request-head parser that resumes scanning where its last call stopped.
///
/// Called once per read, it also reproduces the one check Gunicorn makes
/// only after a read: header data over `max_buffer_headers` is refused once
/// more data had to be awaited, even when that read completed the head.
/// This is the parser a connection driver should keep.
///
/// Contract: between calls the buffer may only grow at the end (the bytes
/// already seen must be unchanged); call [`HeadParser::reset`] before
/// parsing another request. A shorter buffer than last time restarts the
/// scan from scratch.
#[derive(Clone, Debug, Default)]
pub struct HeadParser {
    line: Option<RequestLine>,
    /// Bytes of header data already scanned for the terminator and bare LFs.
    scanned: usize,
    /// The last call waited for the end of the header section, so this call
    /// stands for Gunicorn's next read in that wait.
    waited_for_headers: bool,
    /// Set by [`HeadParser::without_leading_crlf`].
    no_leading_crlf: bool,
}

#[derive(Clone, Debug)]
struct RequestLine {
    method: String,
    uri: String,
    path: String,
    query: String,
    fragment: String,
    version: (u8, u8),
    /// Offset of the header data in the buffer.
    headers_start: usize,
}

impl HeadParser {
    pub fn new() -> Self {
        HeadParser::default()
    }

    /// For the request right after a PROXY header that left nothing else
    /// buffered. Gunicorn decides whether to skip an empty line before the
    /// request line from the bytes it holds when it starts parsing, and it
    /// holds none then: a CRLF arriving next is an (empty, invalid) request
    /// line. Every other request starts with at least one byte read.
    pub fn without_leading_crlf() -> Self {
        HeadParser { no_leading_crlf: true, ..HeadParser::default() }
    }

    pub fn reset(&mut self) {
        *self = HeadParser { no_leading_crlf: self.no_leading_crlf, ..HeadParser::default() };
    }

    /// See [`parse_request_head`].
    pub fn parse(
        &mut self,
        buf: &[u8],
        policy: &HttpPolicy,
        peer: Option<IpAddr>,
    ) -> Result<Parsed<RequestHead>, HttpError> {
        if let Some(line) = &self.line {
            if buf.len() < line.headers_start + self.scanned {
                self.reset();
            }
        }
        if self.line.is_none() {
            match read_request_line(buf, policy, !self.no_leading_crlf)? {
                Some(line) => self.line = Some(line),
                None => return Ok(Parsed::Partial),
            }
        }
        let Some(line) = &self.line else {
            return Ok(Parsed::Partial);
        };
        let data = buf.get(line.headers_start..).unwrap_or(&[]);

        // After each read made while waiting for the header section Gunicorn
        // measures the buffer first, even if that read completed the section.
        if self.waited_for_headers && data.len() > policy.max_buffer_headers() {
            return Err(HttpError::LimitRequestHeaders("max buffer headers"));
        }

        // Gunicorn tests `data[:2] == b"\r\n"` before looking for the end.
        let (block, used) = if data.starts_with(b"\r\n") {
            (None, 2)
        } else {
            // Resume 3 bytes back: the terminator may straddle the old end.
            let from = self.scanned.saturating_sub(3);
            match find_blank_line(data.get(from..).unwrap_or(&[])) {
                Some(i) => (Some(data.get(..from + i).unwrap_or(&[])), from + i + 4),
                None => {
                    // Gunicorn checks for a bare LF before waiting for more,
                    // and the size once more has arrived; the size check is
                    // applied now so a caller never buffers past it.
                    if has_bare_lf(data, self.scanned) {
                        return Err(HttpError::InvalidHeader("bare LF as line terminator".to_owned()));
                    }
                    if data.len() > policy.max_buffer_headers() {
                        return Err(HttpError::LimitRequestHeaders("max buffer headers"));
                    }
                    self.scanned = data.len();
                    self.waited_for_headers = true;
                    return Ok(Parsed::Partial);
                }
            }
        };

        let mut state = FieldState::new(if policy.is_ssl { Scheme::Https } else { Scheme::Http });
        let headers = match block {
            None => Vec::new(),
            Some(block) => {
                let ctx = FieldContext {
                    rules: FieldRules::from_policy(policy),
                    forwarding: policy.peer_is_trusted(peer).then_some(policy),
                    from_trailer: false,
                    version: line.version,
                };
                parse_fields(block, &ctx, &mut state)?
            }
        };
        let consumed = line.headers_start + used;
        let Some(line) = self.line.take() else {
            return Ok(Parsed::Partial);
        };
        // Ready for the next request on the connection.
        *self = HeadParser::default();
        let (body, must_close) = body_framing(&headers, line.version)?;
        Ok(Parsed::Complete(
            RequestHead {
                method: line.method,
                uri: line.uri,
                path: line.path,
                query: line.query,
                fragment: line.fragment,
                version: line.version,
                headers,
                scheme: state.scheme,
                expect_continue: state.expect_continue,
                body,
                must_close,
                uwsgi: None,
            },
            consumed,
        ))
    }
}

/// The first `\r\n\r\n` (the searcher is built once per process).
pub(crate) fn find_blank_line(data: &[u8]) -> Option<usize> {
    static FINDER: std::sync::LazyLock<memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));
    FINDER.find(data)
}

/// The first `\r\n`.
pub(crate) fn find_crlf(data: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', data).find(|&lf| lf > 0 && data.get(lf - 1) == Some(&b'\r')).map(|lf| lf - 1)
}

/// Whether `data[from..]` holds an LF not preceded by CR (Gunicorn's
/// `data.count(b"\n") != data.count(b"\r\n")`); `data[..from]` is known clean.
fn has_bare_lf(data: &[u8], from: usize) -> bool {
    let tail = data.get(from..).unwrap_or(&[]);
    memchr::memchr_iter(b'\n', tail).any(|i| {
        let at = from + i;
        at == 0 || data.get(at - 1) != Some(&b'\r')
    })
}

/// The optional empty line, then `read_line` and `parse_request_line`.
/// `Ok(None)`: the line is not complete yet.
fn read_request_line(buf: &[u8], policy: &HttpPolicy, leading_crlf: bool) -> Result<Option<RequestLine>, HttpError> {
    // RFC 9112 2.2: one CRLF may precede the request line; a lone CR cannot
    // be judged until the next byte arrives.
    let start = match buf {
        [b'\r'] if leading_crlf => return Ok(None),
        [b'\r', b'\n', ..] if leading_crlf => 2,
        _ => 0,
    };
    let data = buf.get(start..).unwrap_or(&[]);
    let limit = policy.limit_request_line();
    let Some(lf) = memchr(b'\n', data) else {
        if limit > 0 && data.len().saturating_sub(2) > limit {
            return Err(HttpError::LimitRequestLine { size: data.len(), max: limit });
        }
        return Ok(None);
    };
    // The first LF must end the first CRLF; anything else is a bare LF.
    if lf == 0 || data.get(lf - 1) != Some(&b'\r') {
        return Err(HttpError::InvalidRequestLine("bare LF as line terminator".to_owned()));
    }
    let idx = lf - 1;
    if limit > 0 && idx > limit {
        return Err(HttpError::LimitRequestLine { size: idx, max: limit });
    }
    let mut line = parse_request_line(data.get(..idx).unwrap_or(&[]), policy)?;
    line.headers_start = start + lf + 1;
    Ok(Some(line))
}

/// `s.split(delim, 1)` when the delimiter is present: (before, after).
#[inline]
pub(crate) fn split_at_byte(s: &[u8], delim: u8) -> Option<(&[u8], &[u8])> {
    let i = memchr(delim, s)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

fn bad_line(line: &[u8]) -> HttpError {
    HttpError::InvalidRequestLine(latin1_to_string(line))
}

/// `Request.parse_request_line`.
fn parse_request_line(line: &[u8], policy: &HttpPolicy) -> Result<RequestLine, HttpError> {
    // line.split(b" ", 2) must give three pieces.
    let (method, after) = split_at_byte(line, b' ').ok_or_else(|| bad_line(line))?;
    let (uri, version) = split_at_byte(after, b' ').ok_or_else(|| bad_line(line))?;

    if !policy.permit_unconventional_http_method
        && (method.iter().any(|&b| b.is_ascii_lowercase() || b == b'#') || !(3..=20).contains(&method.len()))
    {
        return Err(HttpError::InvalidRequestMethod(latin1_to_string(method)));
    }
    if !is_token(method) {
        return Err(HttpError::InvalidRequestMethod(latin1_to_string(method)));
    }
    let mut method = ascii_string(method);
    if policy.casefold_http_method {
        method.make_ascii_uppercase();
    }

    // RFC 9112 3.2: printable ASCII only, checked before urlsplit (which
    // validates nothing); none of the four target forms is empty.
    if uri.is_empty() || uri.iter().any(|&b| !(0x21..=0x7e).contains(&b)) {
        return Err(bad_line(line));
    }
    let uri = ascii_string(uri);
    if uri == "*" && method != "OPTIONS" {
        return Err(bad_line(line));
    }
    // Not origin-, absolute- or asterisk-form: authority-form, CONNECT only.
    if method != "CONNECT" && uri != "*" && !uri.starts_with('/') && !uri.contains("://") {
        return Err(bad_line(line));
    }
    let parts = split_request_uri(&uri).map_err(|_| bad_line(line))?;
    let (path, query, fragment) = (parts.path.to_owned(), parts.query.to_owned(), parts.fragment.to_owned());

    // VERSION_RE = HTTP/(\d)\.(\d), fullmatch; \d is ASCII within latin-1.
    let version = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            (major - b'0', minor - b'0')
        }
        _ => return Err(HttpError::InvalidHttpVersion(latin1_to_string(version))),
    };
    if version.0 != 1 && !policy.permit_unconventional_http_version {
        return Err(HttpError::UnsupportedHttpVersion { major: version.0, minor: version.1 });
    }
    Ok(RequestLine { method, uri, path, query, fragment, version, headers_start: 0 })
}

/// For bytes already checked to be ASCII.
fn ascii_string(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap_or_else(|e| latin1_to_string(e.as_bytes()))
}

/// What `_apply_header_policy` mutates on the message while fields go by.
pub(crate) struct FieldState {
    pub(crate) scheme: Scheme,
    scheme_set: bool,
    pub(crate) expect_continue: bool,
    seen_host: bool,
    seen_content_type: bool,
}

impl FieldState {
    pub(crate) fn new(scheme: Scheme) -> Self {
        FieldState { scheme, scheme_set: false, expect_continue: false, seen_host: false, seen_content_type: false }
    }
}

/// The settings `parse_headers` reads, copied out of an [`HttpPolicy`] so a
/// body decoder can parse trailers without borrowing it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldRules {
    limit_fields: usize,
    limit_size: usize,
    strip_header_spaces: bool,
    permit_obsolete_folding: bool,
    header_map: HeaderMapPolicy,
}

impl FieldRules {
    pub(crate) fn from_policy(policy: &HttpPolicy) -> Self {
        FieldRules {
            limit_fields: policy.limit_request_fields(),
            limit_size: policy.limit_request_field_size(),
            strip_header_spaces: policy.strip_header_spaces,
            permit_obsolete_folding: policy.permit_obsolete_folding,
            header_map: policy.header_map,
        }
    }
}

/// Where a header block comes from, which decides the policy it gets.
pub(crate) struct FieldContext<'p> {
    pub(crate) rules: FieldRules,
    /// Set when the peer may set secure-scheme and forwarder headers (a
    /// trusted peer's head; never trailers).
    pub(crate) forwarding: Option<&'p HttpPolicy>,
    pub(crate) from_trailer: bool,
    pub(crate) version: (u8, u8),
}

/// RFC 9110 6.5.1: fields that must not arrive in trailers.
fn forbidden_in_trailer(name: &str) -> bool {
    matches!(name, "HOST" | "CONTENT-LENGTH" | "TRANSFER-ENCODING" | "TRAILER" | "AUTHORIZATION" | "TE")
}

/// RFC 9110 5.5: controls other than HTAB, and DEL.
pub(crate) static INVALID_VALUE_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b != b'\t' as usize;
        b += 1;
    }
    t[0x7f] = true;
    t
};

/// The uppercased name if it is a token (`TOKEN_RE.fullmatch`), in one pass.
#[inline]
fn upper_token(name: &[u8]) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut upper = Vec::with_capacity(name.len());
    for &b in name {
        if !TOKEN_CHARS[usize::from(b)] {
            return None;
        }
        upper.push(b.to_ascii_uppercase());
    }
    String::from_utf8(upper).ok()
}

/// `Message.parse_headers(data)` for a header block without its final
/// empty line.
pub(crate) fn parse_fields(
    block: &[u8],
    ctx: &FieldContext<'_>,
    state: &mut FieldState,
) -> Result<Vec<Header>, HttpError> {
    let rules = ctx.rules;
    let (limit_fields, limit_size) = (rules.limit_fields, rules.limit_size);
    let mut headers: Vec<Header> = Vec::with_capacity(16);
    let mut lines = Lines::new(block).peekable();

    while let Some(curr) = lines.next() {
        if headers.len() >= limit_fields {
            return Err(HttpError::LimitRequestHeaders("limit request headers fields"));
        }
        let mut header_length = curr.len() + 2;
        let (mut name, raw_value) = match split_at_byte(curr, b':') {
            Some((name, value)) if !name.is_empty() => (name, value),
            _ => return Err(HttpError::InvalidHeader(latin1_to_string(curr))),
        };
        if rules.strip_header_spaces {
            name = rtrim_sp_tab(name);
        }
        let Some(name) = upper_token(name) else {
            return Err(HttpError::InvalidHeaderName(latin1_to_string(name)));
        };
        if ctx.from_trailer && forbidden_in_trailer(&name) {
            return Err(HttpError::InvalidHeaderName(name));
        }

        let first = trim_sp_tab(raw_value);
        let mut folded: Option<Vec<u8>> = None;
        while let Some(next) = lines.next_if(|l| matches!(l.first(), Some(b' ' | b'\t'))) {
            if !rules.permit_obsolete_folding {
                return Err(HttpError::ObsoleteFolding(name));
            }
            header_length += next.len() + 2;
            if header_length > limit_size {
                return Err(HttpError::LimitRequestHeaders("limit request headers fields size"));
            }
            let joined = folded.get_or_insert_with(|| first.to_vec());
            joined.push(b' ');
            joined.extend_from_slice(trim_sp_tab(next));
        }
        let value: &[u8] = folded.as_deref().unwrap_or(first);

        if value.iter().any(|&b| INVALID_VALUE_BYTES[usize::from(b)]) {
            return Err(HttpError::InvalidHeader(name));
        }
        if header_length > limit_size {
            return Err(HttpError::LimitRequestHeaders("limit request headers fields size"));
        }
        if apply_field_policy(&name, value, ctx, state)? {
            let value = folded.unwrap_or_else(|| first.to_vec());
            headers.push(Header { name, value });
        }
    }
    Ok(headers)
}

/// `_apply_header_policy`; `Ok(false)` drops the field (`header_map=drop`).
pub(crate) fn apply_field_policy(
    name: &str,
    value: &[u8],
    ctx: &FieldContext<'_>,
    state: &mut FieldState,
) -> Result<bool, HttpError> {
    // RFC 9110 5.3: a repeated singleton field is ambiguous.
    let seen = match name {
        "HOST" => Some(&mut state.seen_host),
        "CONTENT-TYPE" => Some(&mut state.seen_content_type),
        _ => None,
    };
    if let Some(seen) = seen {
        if *seen {
            return Err(HttpError::InvalidHeader(name.to_owned()));
        }
        *seen = true;
    }

    if !ctx.from_trailer && name == "EXPECT" {
        if value.eq_ignore_ascii_case(b"100-continue") {
            // RFC 9110 10.1.1: HTTP/1.0 servers MUST ignore it.
            if ctx.version >= (1, 1) {
                state.expect_continue = true;
            }
        } else {
            return Err(HttpError::ExpectationFailed(latin1_to_string(value)));
        }
    }

    if let Some(policy) = ctx.forwarding {
        if let Some(secure_value) = policy.secure_scheme_value(name) {
            let scheme = if latin1_eq(value, secure_value) { Scheme::Https } else { Scheme::Http };
            if state.scheme_set {
                if scheme != state.scheme {
                    return Err(HttpError::InvalidSchemeHeaders);
                }
            } else {
                state.scheme_set = true;
                state.scheme = scheme;
            }
        }
    }

    // X-Forwarded-For and X_Forwarded_For would land on the same environ key.
    if name.contains('_') {
        if ctx.forwarding.is_some_and(|p| p.is_forwarder_header(name)) {
            return Ok(true);
        }
        return match ctx.rules.header_map {
            HeaderMapPolicy::Dangerous => Ok(true),
            HeaderMapPolicy::Drop => Ok(false),
            HeaderMapPolicy::Refuse => Err(HttpError::InvalidHeaderName(name.to_owned())),
        };
    }
    Ok(true)
}

/// Python `str ==` between a latin-1-decoded value and a configured string.
fn latin1_eq(value: &[u8], s: &str) -> bool {
    if s.is_ascii() {
        return value == s.as_bytes();
    }
    let mut chars = s.chars();
    value.iter().all(|&b| chars.next() == Some(char::from(b))) && chars.next().is_none()
}

/// `data.split(b"\r\n")`.
struct Lines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Lines<'a> {
    fn new(block: &'a [u8]) -> Self {
        Lines { rest: Some(block) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        // memchr per line; a bare LF stays inside its line, as in Python.
        let mut from = 0;
        while let Some(i) = memchr(b'\n', rest.get(from..).unwrap_or(&[])) {
            let lf = from + i;
            if lf > 0 && rest.get(lf - 1) == Some(&b'\r') {
                self.rest = rest.get(lf + 1..);
                return rest.get(..lf - 1);
            }
            from = lf + 1;
        }
        self.rest = None;
        Some(rest)
    }
}

/// `Message.set_body_reader` (+ `Request`'s: no framing means no body).
/// Returns the framing and whether a transfer-coding forces a close.
fn body_framing(headers: &[Header], version: (u8, u8)) -> Result<(BodyFraming, bool), HttpError> {
    let te_error = || HttpError::InvalidHeader("TRANSFER-ENCODING".to_owned());
    let cl_error = || HttpError::InvalidHeader("CONTENT-LENGTH".to_owned());
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut must_close = false;
    let mut content_length: Option<&[u8]> = None;

    for h in headers {
        if h.name == "CONTENT-LENGTH" {
            if content_length.is_some() {
                return Err(cl_error());
            }
            content_length = Some(&h.value);
        } else if h.name == "TRANSFER-ENCODING" {
            transfer_encoding = true;
            for coding in h.value.split(|&b| b == b',') {
                let coding = trim_sp_tab(coding);
                if coding.eq_ignore_ascii_case(b"chunked") {
                    // Stacked chunking is never intended.
                    if chunked {
                        return Err(te_error());
                    }
                    chunked = true;
                } else if coding.eq_ignore_ascii_case(b"identity") {
                    if chunked {
                        return Err(te_error());
                    }
                } else if [&b"compress"[..], b"deflate", b"gzip"].iter().any(|c| coding.eq_ignore_ascii_case(c)) {
                    // chunked must come last
                    if chunked {
                        return Err(te_error());
                    }
                    must_close = true;
                } else {
                    return Err(HttpError::UnsupportedTransferCoding(latin1_to_string(&h.value)));
                }
            }
        }
    }

    // RFC 9112 6.3: a request whose codings do not end in chunked has no
    // determinable length.
    if transfer_encoding && !chunked {
        return Err(te_error());
    }
    if chunked {
        // Chunked HTTP/1.0 is always faulty; CL + TE means the framing we
        // see may not be the one a proxy in front saw.
        if version < (1, 1) {
            return Err(te_error());
        }
        if content_length.is_some() {
            return Err(cl_error());
        }
        return Ok((BodyFraming::Chunked, must_close));
    }
    match content_length {
        None => Ok((BodyFraming::Empty, must_close)),
        Some(v) => {
            // str.isnumeric() then int(): only ASCII digits get through both
            // (latin-1's numeric extras like "²" fail int()).
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err(cl_error());
            }
            let n = v.iter().fold(0u64, |acc, &d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0')));
            Ok((BodyFraming::Length(n), must_close))
        }
    }
}

#[cfg(test)]
// Tests start from the default policy and change the one rule they exercise.
#[allow(clippy::field_reassign_with_default)]
pub(crate) mod tests {
    use super::*;
    use crate::http::policy::AllowList;

    pub(crate) fn local() -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, 1]))
    }

    /// Parses all at once, then one byte at a time, one byte at a time with
    /// a shared [`HeadParser`], and at every split point; all must agree.
    pub(crate) fn parse_all_ways(raw: &[u8], policy: &HttpPolicy) -> Result<Parsed<RequestHead>, HttpError> {
        let whole = parse_request_head(raw, policy, local());
        // Growing prefixes, stateless: each must be Partial until the
        // answer, and the first decision must equal the whole-buffer one.
        let mut first_decision = None;
        let mut resumable = HeadParser::new();
        let mut resumable_decision = None;
        for end in 0..=raw.len() {
            let r = parse_request_head(&raw[..end], policy, local());
            if first_decision.is_none() && r != Ok(Parsed::Partial) {
                first_decision = Some(r);
            }
            if resumable_decision.is_none() {
                let r = resumable.parse(&raw[..end], policy, local());
                if r != Ok(Parsed::Partial) {
                    resumable_decision = Some(r);
                }
            }
        }
        let first_decision = first_decision.unwrap_or(Ok(Parsed::Partial));
        assert_eq!(first_decision, whole, "byte-at-a-time differs for {raw:?}");
        let resumable_decision = resumable_decision.unwrap_or(Ok(Parsed::Partial));
        assert_eq!(resumable_decision, whole, "resumable parser differs for {raw:?}");
        whole
    }

    fn head(raw: &[u8]) -> RequestHead {
        head_with(raw, &HttpPolicy::default())
    }

    fn head_with(raw: &[u8], p: &HttpPolicy) -> RequestHead {
        match parse_all_ways(raw, p) {
            Ok(Parsed::Complete(h, n)) => {
                assert!(n <= raw.len());
                h
            }
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn err(raw: &[u8]) -> HttpError {
        err_with(raw, &HttpPolicy::default())
    }

    fn err_with(raw: &[u8], p: &HttpPolicy) -> HttpError {
        match parse_all_ways(raw, p) {
            Err(e) => e,
            other => panic!("{raw:?}: expected an error, got {other:?}"),
        }
    }

    fn names(h: &RequestHead) -> Vec<(&str, &[u8])> {
        h.headers.iter().map(|h| (h.name.as_str(), h.value.as_slice())).collect()
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /a/b?x=1#f HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\nrest";
        let (h, n) = match parse_request_head(raw, &HttpPolicy::default(), local()) {
            Ok(Parsed::Complete(h, n)) => (h, n),
            other => panic!("{other:?}"),
        };
        assert_eq!(n, raw.len() - 4);
        assert_eq!(h.method, "GET");
        assert_eq!(h.uri, "/a/b?x=1#f");
        assert_eq!((h.path.as_str(), h.query.as_str(), h.fragment.as_str()), ("/a/b", "x=1", "f"));
        assert_eq!(h.version, (1, 1));
        assert_eq!(names(&h), vec![("HOST", &b"example.com"[..]), ("ACCEPT", b"*/*")]);
        assert_eq!(h.body, BodyFraming::Empty);
        assert_eq!(h.scheme, Scheme::Http);
        assert!(!h.should_close());
        assert_eq!(h.server_protocol(), "HTTP/1.1");
        head(raw);
    }

    #[test]
    fn no_headers_and_leading_crlf() {
        let h = head(b"\r\nGET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.version, (1, 0));
        assert!(h.should_close());
        assert_eq!(
            parse_request_head(b"\r\nGET / HTTP/1.0\r\n\r\nX", &HttpPolicy::default(), local()),
            Ok(Parsed::Complete(h, 20))
        );
        // Only one empty line is skipped.
        assert_eq!(err(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), HttpError::InvalidRequestLine(String::new()));
        assert_eq!(parse_request_head(b"\r", &HttpPolicy::default(), local()), Ok(Parsed::Partial));
        assert!(matches!(err(b"\rGET / HTTP/1.1\r\n\r\n"), HttpError::InvalidRequestMethod(_)));
    }

    #[test]
    fn request_line_errors() {
        use HttpError::*;
        assert_eq!(err(b"GET HTTP/1.1\r\n\r\n"), InvalidRequestLine("GET HTTP/1.1".into()));
        assert_eq!(err(b"GET\n/\nHTTP/1.1\r\n\r\n"), InvalidRequestLine("bare LF as line terminator".into()));
        assert_eq!(err(b"GET / HTTP/1.1\n\r\n"), InvalidRequestLine("bare LF as line terminator".into()));
        assert_eq!(err(b"-bl /foo HTTP/1.1\r\n\r\n"), InvalidRequestMethod("-bl".into()));
        assert_eq!(err(b"get / HTTP/1.1\r\n\r\n"), InvalidRequestMethod("get".into()));
        assert_eq!(err(b"GE / HTTP/1.1\r\n\r\n"), InvalidRequestMethod("GE".into()));
        assert_eq!(err(b"G#T / HTTP/1.1\r\n\r\n"), InvalidRequestMethod("G#T".into()));
        assert_eq!(
            err(b"ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\n\r\n"),
            InvalidRequestMethod("ABCDEFGHIJKLMNOPQRSTU".into())
        );
        assert_eq!(err(b"GET\x00 /foo HTTP/1.1\r\n\r\n"), InvalidRequestMethod("GET\0".into()));
        assert_eq!(err(b"GET\xc3\x9f /g HTTP/1.1\r\n\r\n"), InvalidRequestMethod("GET\u{c3}\u{9f}".into()));
        assert_eq!(err(b"GET /foo FTP/1.1\r\n\r\n"), InvalidHttpVersion("FTP/1.1".into()));
        assert_eq!(err(b"GET /test HTTP/111\r\n\r\n"), InvalidHttpVersion("HTTP/111".into()));
        assert_eq!(err(b"GET / HTTP/1.1 x\r\n\r\n"), InvalidHttpVersion("HTTP/1.1 x".into()));
        assert_eq!(err(b"GET /foo HTTP/2.0\r\n\r\n"), UnsupportedHttpVersion { major: 2, minor: 0 });
        assert_eq!(err(b"GET /foo HTTP/0.9\r\n\r\n"), UnsupportedHttpVersion { major: 0, minor: 9 });
        assert_eq!(err(b"GET  / HTTP/1.1\r\n\r\n"), InvalidRequestLine("GET  / HTTP/1.1".into()));
        assert_eq!(err(b"GET /\xc3\xa0 HTTP/1.0\r\n\r\n"), InvalidRequestLine("GET /\u{c3}\u{a0} HTTP/1.0".into()));
        assert_eq!(err(b"GET * HTTP/1.1\r\n\r\n"), InvalidRequestLine("GET * HTTP/1.1".into()));
        assert_eq!(err(b"GET a.com:443 HTTP/1.1\r\n\r\n"), InvalidRequestLine("GET a.com:443 HTTP/1.1".into()));
        assert_eq!(err(b"PUT s://]ufd/: HTTP/1.1\r\n\r\n"), InvalidRequestLine("PUT s://]ufd/: HTTP/1.1".into()));
        // The request line is judged as soon as its CRLF is in, headers or not.
        assert!(parse_request_head(b"GET / FTP/1.1\r\nHost", &HttpPolicy::default(), local()).is_err());
    }

    #[test]
    fn request_line_forms() {
        let h = head(b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "*");
        let h = head(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n");
        assert_eq!((h.uri.as_str(), h.path.as_str()), ("example.com:443", "443"));
        assert!(h.should_close());
        let h = head(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "[::1]:443");
        let h = head(b"GET http://h/p?q HTTP/1.1\r\n\r\n");
        assert_eq!((h.path.as_str(), h.query.as_str()), ("/p", "q"));
        let h = head(b"GET //x?y HTTP/1.1\r\n\r\n");
        assert_eq!((h.path.as_str(), h.query.as_str()), ("//x", "y"));
    }

    #[test]
    fn unconventional_settings() {
        let mut p = HttpPolicy::default();
        p.permit_unconventional_http_method = true;
        p.casefold_http_method = true;
        let h = head_with(b"-blargh /foo HTTP/1.1\r\n\r\n", &p);
        assert_eq!(h.method, "-BLARGH");
        let h = head_with(b"options * HTTP/1.1\r\n\r\n", &p);
        assert_eq!(h.method, "OPTIONS");
        // Still a token.
        assert!(matches!(err_with(b"G\"T / HTTP/1.1\r\n\r\n", &p), HttpError::InvalidRequestMethod(_)));
        let mut p = HttpPolicy::default();
        p.permit_unconventional_http_version = true;
        assert_eq!(head_with(b"GET / HTTP/2.0\r\n\r\n", &p).version, (2, 0));
        assert!(head_with(b"GET / HTTP/0.9\r\n\r\n", &p).should_close());
    }

    #[test]
    fn request_line_limit() {
        let mut p = HttpPolicy::default();
        p.limit_request_line = 10;
        // "GET /12345 HTTP/1.1" is 19 bytes.
        let raw = b"GET /12345 HTTP/1.1\r\n\r\n";
        assert_eq!(parse_request_head(raw, &p, local()), Err(HttpError::LimitRequestLine { size: 19, max: 10 }));
        // Before its CRLF arrives: rejected once len - 2 > limit.
        assert_eq!(parse_request_head(&raw[..12], &p, local()), Ok(Parsed::Partial));
        assert_eq!(parse_request_head(&raw[..13], &p, local()), Err(HttpError::LimitRequestLine { size: 13, max: 10 }));
        // Exactly at the limit passes.
        p.limit_request_line = 19;
        head_with(raw, &p);
        // 0 is unlimited.
        p.limit_request_line = 0;
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20000));
        head_with(long.as_bytes(), &p);
        assert_eq!(max_head_bytes(&p), usize::MAX);
        p.limit_request_line = 4094;
        assert_eq!(max_head_bytes(&p), 2 + 4094 + 3 + 819204 + 1);
    }

    #[test]
    fn header_rules() {
        use HttpError::*;
        let h = head(b"GET / HTTP/1.1\r\naaaaaaaaaaaaa:++++++++++\r\nX-Value:\tabc\t\r\nE: \r\n\r\n");
        assert_eq!(names(&h), vec![("AAAAAAAAAAAAA", &b"++++++++++"[..]), ("X-VALUE", b"abc"), ("E", b"")]);
        let h = head(b"GET / HTTP/1.1\r\nX-Value: caf\xc3\xa9\r\n\r\n");
        assert_eq!(h.header("X-VALUE"), Some(&b"caf\xc3\xa9"[..]));
        assert_eq!(err(b"GET / HTTP/1.1\r\nContent-Length : 3\r\n\r\n"), InvalidHeaderName("Content-Length ".into()));
        assert_eq!(err(b"GET / HTTP/1.1\r\n: x\r\n\r\n"), InvalidHeader(": x".into()));
        assert_eq!(err(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n"), InvalidHeader("nocolon".into()));
        assert_eq!(err(b"GET / HTTP/1.1\r\nA\xc3\x9f: 3\r\n\r\n"), InvalidHeaderName("A\u{c3}\u{9f}".into()));
        assert_eq!(err(b"GET / HTTP/1.1\r\nX: a\x07b\r\n\r\n"), InvalidHeader("X".into()));
        assert_eq!(err(b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n"), InvalidHeader("X".into()));
        assert_eq!(err(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), InvalidHeader("X".into()));
        assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), InvalidHeader("HOST".into()));
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nContent-Type: a\r\ncontent-type: b\r\n\r\n"),
            InvalidHeader("CONTENT-TYPE".into())
        );
        assert_eq!(err(b"GET / HTTP/1.1\r\nLong: one\r\n two\r\n\r\n"), ObsoleteFolding("LONG".into()));
        assert_eq!(err(b"GET / HTTP/1.1\r\n X: one\r\n\r\n"), InvalidHeaderName(" X".into()));
    }

    #[test]
    fn bare_lf_in_headers() {
        // Before the head is complete: Gunicorn refuses as soon as it sees it.
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nX: a\nY", &HttpPolicy::default(), local()),
            Err(HttpError::InvalidHeader("bare LF as line terminator".into()))
        );
        // A complete head with a bare LF fails in parse_headers instead.
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nX: a\nb\r\n\r\n", &HttpPolicy::default(), local()),
            Err(HttpError::InvalidHeader("X".into()))
        );
    }

    #[test]
    fn strip_and_fold_settings() {
        let mut p = HttpPolicy::default();
        p.strip_header_spaces = true;
        let h = head_with(b"GET / HTTP/1.1\r\nContent-Length \t: 0\r\n\r\n", &p);
        assert_eq!(h.body, BodyFraming::Length(0));
        let mut p = HttpPolicy::default();
        p.permit_obsolete_folding = true;
        let h = head_with(b"GET / HTTP/1.1\r\nLong: one\r\n two \r\n\t three\r\nHost: x\r\n\r\n", &p);
        assert_eq!(names(&h), vec![("LONG", &b"one two three"[..]), ("HOST", b"x")]);
        // Continuation lines count against the field size.
        p.limit_request_field_size = 16;
        assert_eq!(
            err_with(b"GET / HTTP/1.1\r\nLong: one\r\n two two two\r\n\r\n", &p),
            HttpError::LimitRequestHeaders("limit request headers fields size")
        );
    }

    #[test]
    fn field_limits() {
        let mut p = HttpPolicy::default();
        p.limit_request_field_size = 10;
        // "Accept: */*" + CRLF is 13 bytes.
        assert_eq!(
            err_with(b"GET /test HTTP/1.1\r\nAccept: */*\r\n\r\n", &p),
            HttpError::LimitRequestHeaders("limit request headers fields size")
        );
        p.limit_request_field_size = 13;
        head_with(b"GET /test HTTP/1.1\r\nAccept: */*\r\n\r\n", &p);
        let mut p = HttpPolicy::default();
        p.limit_request_fields = 2;
        head_with(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", &p);
        assert_eq!(
            err_with(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &p),
            HttpError::LimitRequestHeaders("limit request headers fields")
        );
        // Dropped fields do not count.
        head_with(b"GET / HTTP/1.1\r\nA: 1\r\nX_Y: 1\r\nB: 2\r\n\r\n", &p);
    }

    #[test]
    fn max_buffer_headers() {
        let mut p = HttpPolicy::default();
        p.limit_request_fields = 1;
        p.limit_request_field_size = 10;
        // max_buffer_headers = 1 * 12 + 4 = 16
        assert_eq!(p.max_buffer_headers(), 16);
        let raw = b"GET / HTTP/1.1\r\nX: 0123456789abcdef";
        assert_eq!(parse_request_head(&raw[..32], &p, local()), Ok(Parsed::Partial));
        assert_eq!(
            parse_request_head(&raw[..33], &p, local()),
            Err(HttpError::LimitRequestHeaders("max buffer headers"))
        );
    }

    #[test]
    fn expect_handling() {
        let h = head(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
        assert!(h.expect_continue);
        let h = head(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.expect_continue);
        assert_eq!(
            err(b"PUT / HTTP/1.1\r\nExpect: 101-whatever\r\n\r\n"),
            HttpError::ExpectationFailed("101-whatever".into())
        );
        let e = err(b"PUT / HTTP/1.0\r\nExpect: nope\r\n\r\n");
        assert_eq!(e.response().unwrap().status, 417);
    }

    #[test]
    fn scheme_headers() {
        let h = head(b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\n\r\n");
        assert_eq!(h.scheme, Scheme::Https);
        let h = head(b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\n\r\n");
        assert_eq!(h.scheme, Scheme::Https);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n"),
            HttpError::InvalidSchemeHeaders
        );
        let h = head(b"GET / HTTP/1.1\r\nX-Forwarded-Proto: HTTPS\r\n\r\n");
        assert_eq!(h.scheme, Scheme::Http);
        // Untrusted peers are ignored altogether, even contradictory ones.
        let p = HttpPolicy::default();
        let r = parse_request_head(
            b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n",
            &p,
            Some(IpAddr::from([10, 0, 0, 1])),
        );
        assert!(matches!(r, Ok(Parsed::Complete(ref h, _)) if h.scheme == Scheme::Http));
        // Unix sockets are trusted.
        let r = parse_request_head(b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\n\r\n", &p, None);
        assert!(matches!(r, Ok(Parsed::Complete(ref h, _)) if h.scheme == Scheme::Https));
        // A trusted "http" overrides a TLS listener.
        let mut p = HttpPolicy::default();
        p.is_ssl = true;
        assert_eq!(head_with(b"GET / HTTP/1.1\r\n\r\n", &p).scheme, Scheme::Https);
        assert_eq!(head_with(b"GET / HTTP/1.1\r\nX-Forwarded-Ssl: off\r\n\r\n", &p).scheme, Scheme::Http);
    }

    #[test]
    fn underscore_headers() {
        let raw = b"GET / HTTP/1.0\r\nTransfer_Encoding: tricked\r\nContent-Length: 7\r\nContent_Length: -1E23\r\n\r\n";
        let h = head(raw);
        assert_eq!(names(&h), vec![("CONTENT-LENGTH", &b"7"[..])]);
        let mut p = HttpPolicy::default();
        p.header_map = HeaderMapPolicy::Dangerous;
        assert_eq!(head_with(raw, &p).headers.len(), 3);
        p.header_map = HeaderMapPolicy::Refuse;
        assert_eq!(err_with(raw, &p), HttpError::InvalidHeaderName("TRANSFER_ENCODING".into()));
        // Forwarder headers from a trusted peer survive any header_map.
        let h = head_with(b"GET /app/x HTTP/1.1\r\nScript_Name: /app\r\n\r\n", &p);
        assert_eq!(h.header("SCRIPT_NAME"), Some(&b"/app"[..]));
        let r = parse_request_head(
            b"GET /app/x HTTP/1.1\r\nScript_Name: /app\r\n\r\n",
            &p,
            Some(IpAddr::from([10, 0, 0, 1])),
        );
        assert_eq!(r, Err(HttpError::InvalidHeaderName("SCRIPT_NAME".into())));
        let mut p = HttpPolicy::default();
        p.forwarder_headers = vec!["*".into()];
        p.forwarded_allow = AllowList::parse(&["*".into()]).unwrap();
        p.header_map = HeaderMapPolicy::Refuse;
        let r = parse_request_head(b"GET / HTTP/1.1\r\nA_B: 1\r\n\r\n", &p, Some(IpAddr::from([10, 0, 0, 1])));
        assert!(matches!(r, Ok(Parsed::Complete(..))));
    }

    #[test]
    fn body_framing_rules() {
        use HttpError::*;
        let te = || InvalidHeader("TRANSFER-ENCODING".into());
        let cl = || InvalidHeader("CONTENT-LENGTH".into());
        assert_eq!(head(b"POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n").body, BodyFraming::Length(7));
        assert_eq!(head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").body, BodyFraming::Chunked);
        let h = head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.body, BodyFraming::Chunked);
        assert!(h.must_close && h.should_close());
        assert_eq!(head(b"POST / HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n").body, BodyFraming::Chunked);
        assert_eq!(err(b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\n"), te());
        assert_eq!(err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n"), te());
        assert_eq!(err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), te());
        assert_eq!(err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), te());
        assert_eq!(err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), te());
        assert_eq!(err(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), cl());
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nTransfer-Encoding: foo, chunked\r\n\r\n"),
            UnsupportedTransferCoding("foo, chunked".into())
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n"),
            UnsupportedTransferCoding("chunked,".into())
        );
        assert_eq!(err(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"), cl());
        for bad in [&b"-1"[..], b"+1", b"3 1", b"5, 5", b"", b"\xb2", b"1_0", b"0x1"] {
            let raw = [&b"POST / HTTP/1.1\r\nContent-Length: "[..], bad, b"\r\n\r\n"].concat();
            assert_eq!(err(&raw), cl(), "{bad:?}");
        }
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(head(raw).body, BodyFraming::Length(u64::MAX));
        // Errors come in header order: the unknown coding is seen first here.
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nTransfer-Encoding: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            UnsupportedTransferCoding("x".into())
        );
    }

    #[test]
    fn connection_header() {
        assert!(head(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").should_close());
        assert!(!head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").should_close());
        // Only the first one is read.
        assert!(!head(b"GET / HTTP/1.1\r\nConnection: upgrade\r\nConnection: close\r\n\r\n").should_close());
        assert!(head(b"GET / HTTP/1.0\r\nConnection: upgrade\r\n\r\n").should_close());
    }

    #[test]
    fn partial_heads_stay_partial() {
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let p = HttpPolicy::default();
        let end = raw.len() - 5;
        for n in 0..end {
            assert_eq!(parse_request_head(&raw[..n], &p, local()), Ok(Parsed::Partial), "{n}");
        }
        match parse_request_head(raw, &p, local()) {
            Ok(Parsed::Complete(h, used)) => {
                assert_eq!(used, end);
                assert_eq!(h.body, BodyFraming::Length(5));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_leading_crlf_after_an_exhausted_proxy_header() {
        let p = HttpPolicy::default();
        let mut hp = HeadParser::without_leading_crlf();
        assert_eq!(hp.parse(b"", &p, local()), Ok(Parsed::Partial));
        assert_eq!(
            hp.parse(b"\r\nGET / HTTP/1.1\r\n\r\n", &p, local()),
            Err(HttpError::InvalidRequestLine(String::new()))
        );
        // The next request on the connection gets the allowance back.
        let mut hp = HeadParser::without_leading_crlf();
        assert!(matches!(hp.parse(b"GET / HTTP/1.1\r\n\r\n", &p, local()), Ok(Parsed::Complete(..))));
        assert!(matches!(hp.parse(b"\r\nGET / HTTP/1.1\r\n\r\n", &p, local()), Ok(Parsed::Complete(..))));
    }

    #[test]
    fn waiting_for_headers_then_over_max_buffer() {
        let mut p = HttpPolicy::default();
        p.limit_request_fields = 1;
        p.limit_request_field_size = 10;
        let raw = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        // All in one read: the buffer size is never measured.
        assert_eq!(
            parse_request_head(raw, &p, local()),
            Err(HttpError::LimitRequestHeaders("limit request headers fields"))
        );
        // After waiting once, the next read is measured first.
        let mut hp = HeadParser::new();
        assert_eq!(hp.parse(&raw[..20], &p, local()), Ok(Parsed::Partial));
        assert_eq!(hp.parse(raw, &p, local()), Err(HttpError::LimitRequestHeaders("max buffer headers")));
    }

    #[test]
    fn resumable_parser_restarts_on_shrink() {
        let p = HttpPolicy::default();
        let mut hp = HeadParser::new();
        assert_eq!(hp.parse(b"GET / HTTP/1.1\r\nA: b", &p, local()), Ok(Parsed::Partial));
        // A different, shorter buffer: must not trust the old scan.
        assert!(matches!(hp.parse(b"GET /x HTTP/1.1\r\n\r\n", &p, local()), Ok(Parsed::Complete(..))));
    }
}
