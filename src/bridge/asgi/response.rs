//! How an ASGI response goes on the wire, with the rules of Gunicorn's own
//! ASGI worker (`gunicorn/asgi/protocol.py`): the app's headers are sent as
//! given (validated, not filtered), `Server` and `Date` are added when the
//! app did not set them, `Connection: close` only when the connection ends,
//! chunked framing for HTTP/1.1 without a length, no body for HEAD, 1xx,
//! 204 and 304, and never more bytes than the declared Content-Length.

use crate::http::text::is_token;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    InvalidHeaderName(String),
    InvalidHeaderValue(String),
    InvalidStatus(i64),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::InvalidHeaderName(n) => write!(f, "Invalid response header name from the application: {n}"),
            StartError::InvalidHeaderValue(n) => write!(f, "Invalid response header from the application: {n}"),
            StartError::InvalidStatus(s) => write!(f, "Invalid response status: {s}"),
        }
    }
}

/// How a response starts, beside what the app gave.
pub struct StartOptions<'a> {
    /// The connection ends after this response (`Connection: close`).
    pub close: bool,
    pub server: &'a [u8],
    pub date: &'a [u8],
    /// Keep the headers as sent (access log, hooks).
    pub keep_headers: bool,
}

/// The request facts a response depends on.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts {
    pub is_head: bool,
    pub version: (u8, u8),
    /// The response goes on an HTTP/2 stream: fields, no chunked framing.
    pub http2: bool,
    /// The answer to a uwsgi packet: no chunked framing, and no
    /// Transfer-Encoding from the app (the front end frames the body for
    /// its client; markers would reach it as body).
    pub uwsgi: bool,
}

/// One body message's bytes on the wire, around `take` bytes of its data.
pub struct Framed {
    pub prefix: Vec<u8>,
    pub take: usize,
    pub suffix: &'static [u8],
}

#[derive(Debug, Default)]
pub struct AsgiResponse {
    pub started: bool,
    pub complete: bool,
    pub status: u16,
    chunked: bool,
    omits_body: bool,
    /// The app's Content-Length: never send more.
    length: Option<u64>,
    pub sent: u64,
    /// `Connection: close` was announced.
    pub close: bool,
    /// Head bytes waiting to leave with the first body bytes.
    head: Vec<u8>,
    /// The headers as sent (for the access log).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// HTTP/2: the head as fields, until the first body message takes it.
    h2_head: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// HEADER_VALUE_RE: SP, HTAB, VCHAR and obs-text.
fn valid_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b) || b >= 0x80)
}

pub fn status_line(version: (u8, u8), status: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/");
    out.push(b'0' + version.0.min(9));
    out.push(b'.');
    out.push(b'0' + version.1.min(9));
    out.push(b' ');
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

impl AsgiResponse {
    /// `http.response.start`.
    pub fn start(
        &mut self,
        req: RequestFacts,
        status: i64,
        headers: &[(&[u8], &[u8])],
        opts: &StartOptions<'_>,
    ) -> Result<(), StartError> {
        let StartOptions { close, server, date, keep_headers } = *opts;
        let status =
            u16::try_from(status).ok().filter(|s| (100..=999).contains(s)).ok_or(StartError::InvalidStatus(status))?;
        let mut has_length = None;
        let mut has_te = false;
        let (mut has_date, mut has_server, mut has_connection) = (false, false, false);
        check_headers(headers)?;
        for (name, value) in headers {
            if name.eq_ignore_ascii_case(b"content-length") {
                has_length = Some(*value);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                has_te = true;
            } else if name.eq_ignore_ascii_case(b"date") {
                has_date = true;
            } else if name.eq_ignore_ascii_case(b"server") {
                has_server = true;
            } else if name.eq_ignore_ascii_case(b"connection") {
                has_connection = true;
            }
        }
        let omits_body = req.is_head || status == 204 || status == 304 || (100..200).contains(&status);
        let forbids_length = status == 204 || (100..200).contains(&status);
        if req.http2 {
            self.start_h2(status, headers, omits_body, forbids_length, opts);
            return Ok(());
        }
        let mut out = Vec::with_capacity(160 + headers.len() * 32);
        status_line(req.version, status, &mut out);
        for (name, value) in headers {
            // A no-body response never carries Transfer-Encoding, and 1xx/204
            // no Content-Length either (RFC 9110 §6.4.2).
            let is_te = name.eq_ignore_ascii_case(b"transfer-encoding");
            if ((omits_body || req.uwsgi) && is_te)
                || (omits_body && forbids_length && name.eq_ignore_ascii_case(b"content-length"))
            {
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
            if keep_headers {
                self.headers.push((name.to_vec(), value.to_vec()));
            }
        }
        let length = if omits_body && forbids_length { None } else { has_length };
        self.chunked = !omits_body && !req.uwsgi && (has_te || (length.is_none() && req.version >= (1, 1)));
        if self.chunked && !has_te {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if !has_server {
            out.extend_from_slice(b"Server: ");
            out.extend_from_slice(server);
            out.extend_from_slice(b"\r\n");
        }
        if !has_date {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(date);
            out.extend_from_slice(b"\r\n");
        }
        self.length = if self.chunked || omits_body {
            None
        } else {
            length.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.trim().parse().ok())
        };
        // An HTTP/1.0 body without a length ends when the connection does.
        let close = close || (!omits_body && !self.chunked && self.length.is_none());
        if close && !has_connection {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.omits_body = omits_body;
        self.started = true;
        self.status = status;
        self.close = close;
        self.head = out;
        Ok(())
    }

    /// `http.response.start` on an HTTP/2 stream: the same rules, as fields
    /// (lower-case names; connection-specific ones, which HTTP/2 forbids,
    /// dropped); the stream's end delimits the body.
    fn start_h2(
        &mut self,
        status: u16,
        headers: &[(&[u8], &[u8])],
        omits_body: bool,
        forbids_length: bool,
        opts: &StartOptions<'_>,
    ) {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(headers.len() + 2);
        let mut length = None;
        let (mut has_server, mut has_date) = (false, false);
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if crate::http2::connection_specific(&lower) {
                continue;
            }
            match lower.as_slice() {
                b"content-length" if omits_body && forbids_length => continue,
                b"content-length" => length = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok()),
                b"server" => has_server = true,
                b"date" => has_date = true,
                _ => {}
            }
            if opts.keep_headers {
                self.headers.push((name.to_vec(), value.to_vec()));
            }
            fields.push((lower, value.to_vec()));
        }
        if !has_server {
            fields.push((b"server".to_vec(), opts.server.to_vec()));
        }
        if !has_date {
            fields.push((b"date".to_vec(), opts.date.to_vec()));
        }
        self.chunked = false;
        self.length = if omits_body { None } else { length };
        self.omits_body = omits_body;
        self.started = true;
        self.status = status;
        self.close = false;
        self.h2_head = Some(fields);
    }

    /// HTTP/2: the head's fields, the first time they are asked for.
    pub fn take_h2_head(&mut self) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        self.h2_head.take()
    }

    /// `http.response.body` (or a pathsend file) of `len` bytes: what goes
    /// on the wire around them, and how many of them may go (never more
    /// than the declared Content-Length, none for a body-less response).
    /// The caller writes `prefix`, then `take` bytes of the data, then
    /// `suffix`, so the data itself is never copied to frame it.
    pub fn frame(&mut self, len: usize, more: bool) -> Framed {
        let mut prefix = std::mem::take(&mut self.head);
        let mut take = if self.omits_body { 0 } else { len };
        if let Some(limit) = self.length {
            take = take.min(limit.saturating_sub(self.sent).try_into().unwrap_or(usize::MAX));
        }
        let suffix: &'static [u8] = if self.chunked {
            if take > 0 {
                prefix.extend_from_slice(format!("{take:x}\r\n").as_bytes());
            }
            match (take > 0, more) {
                (true, true) => b"\r\n",
                (true, false) => b"\r\n0\r\n\r\n",
                (false, true) => b"",
                (false, false) => b"0\r\n\r\n",
            }
        } else {
            b""
        };
        self.sent += take as u64;
        if !more {
            self.complete = true;
        }
        Framed { prefix, take, suffix }
    }

    /// [`frame`](Self::frame) with everything appended to `out`.
    pub fn body(&mut self, data: &[u8], more: bool, out: &mut Vec<u8>) -> u64 {
        let f = self.frame(data.len(), more);
        out.extend_from_slice(&f.prefix);
        out.extend_from_slice(&data[..f.take]);
        out.extend_from_slice(f.suffix);
        f.take as u64
    }

    /// HEAD, 1xx, 204 and 304 responses carry no body.
    pub fn omits_body(&self) -> bool {
        self.omits_body
    }

    /// Whether the connection can carry another request after this one: a
    /// body shorter than its declared length leaves the client waiting.
    pub fn reusable(&self) -> bool {
        self.complete && !self.close && self.length.is_none_or(|l| self.sent >= l)
    }
}

pub fn check_headers(headers: &[(&[u8], &[u8])]) -> Result<(), StartError> {
    for (name, value) in headers {
        if !is_token(name) {
            return Err(StartError::InvalidHeaderName(crate::http::text::py_repr_bytes(name)));
        }
        if !valid_value(value) {
            return Err(StartError::InvalidHeaderValue(crate::http::text::py_repr_bytes(name)));
        }
    }
    Ok(())
}

/// `http.response.informational`: a 1xx head (103 Early Hints...), sent
/// only to HTTP/1.1 clients, as Gunicorn does (`None` for HTTP/1.0).
pub fn informational(
    version: (u8, u8),
    status: i64,
    headers: &[(&[u8], &[u8])],
) -> Result<Option<Vec<u8>>, StartError> {
    let status =
        u16::try_from(status).ok().filter(|s| (100..200).contains(s)).ok_or(StartError::InvalidStatus(status))?;
    check_headers(headers)?;
    if version < (1, 1) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(64);
    status_line(version, status, &mut out);
    for (name, value) in headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(out))
}

/// Gunicorn's ASGI error page: plain text, `Connection: close`.
/// Header fields as owned (name, value) pairs.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// `http.response.informational` on an HTTP/2 stream: its status and
/// fields, with the same checks as on HTTP/1.
pub fn informational_fields(status: i64, headers: &[(&[u8], &[u8])]) -> Result<(u16, Fields), StartError> {
    let status =
        u16::try_from(status).ok().filter(|s| (100..200).contains(s)).ok_or(StartError::InvalidStatus(status))?;
    check_headers(headers)?;
    let fields = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
        .filter(|(n, _)| !crate::http2::connection_specific(n))
        .collect();
    Ok((status, fields))
}

pub fn error_response(status: u16, message: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    out.extend_from_slice(b"Content-Type: text/plain\r\n");
    out.extend_from_slice(format!("Content-Length: {}\r\n", message.len()).as_bytes());
    for (n, v) in extra {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(message.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET11: RequestFacts = RequestFacts { is_head: false, version: (1, 1), http2: false, uwsgi: false };

    fn opts(close: bool) -> StartOptions<'static> {
        StartOptions { close, server: b"ferrocorn", date: b"D", keep_headers: false }
    }

    fn run(
        req: RequestFacts,
        status: i64,
        headers: &[(&[u8], &[u8])],
        bodies: &[(&[u8], bool)],
    ) -> (AsgiResponse, Vec<u8>) {
        let mut r = AsgiResponse::default();
        r.start(req, status, headers, &opts(false)).expect("start");
        let mut out = Vec::new();
        for (b, more) in bodies {
            r.body(b, *more, &mut out);
        }
        (r, out)
    }

    #[test]
    fn content_length_response_in_one_piece() {
        let (r, out) = run(GET11, 200, &[(b"content-length", b"5")], &[(b"hello", false)]);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nServer: ferrocorn\r\nDate: D\r\n\r\nhello".to_vec());
        assert!(r.reusable());
    }

    #[test]
    fn chunked_without_length_and_truncation_with_it() {
        let (_, out) = run(GET11, 200, &[], &[(b"ab", true), (b"c", false)]);
        assert!(out.ends_with(
            b"transfer-encoding: chunked\r\nServer: ferrocorn\r\nDate: D\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"
        ));
        let (r, out) = run(GET11, 200, &[(b"content-length", b"3")], &[(b"abcdef", false)]);
        assert!(out.ends_with(b"\r\n\r\nabc"));
        assert_eq!(r.sent, 3);
        let (r, _) = run(GET11, 200, &[(b"content-length", b"10")], &[(b"abc", false)]);
        assert!(!r.reusable());
    }

    #[test]
    fn http10_is_close_delimited_and_head_has_no_body() {
        let (_, out) = run(
            RequestFacts { is_head: false, version: (1, 0), http2: false, uwsgi: false },
            200,
            &[],
            &[(b"x", false)],
        );
        assert!(out.starts_with(b"HTTP/1.0 200 OK\r\n") && out.ends_with(b"\r\n\r\nx"));
        let head = RequestFacts { is_head: true, version: (1, 1), http2: false, uwsgi: false };
        let (_, out) = run(head, 200, &[(b"content-length", b"5")], &[(b"hello", false)]);
        assert!(out.ends_with(b"content-length: 5\r\nServer: ferrocorn\r\nDate: D\r\n\r\n"));
        let (_, out) =
            run(GET11, 204, &[(b"content-length", b"5"), (b"transfer-encoding", b"chunked")], &[(b"hello", false)]);
        assert!(!out.windows(14).any(|w| w.eq_ignore_ascii_case(b"content-length")));
    }

    #[test]
    fn app_headers_win_and_invalid_ones_fail() {
        let (_, out) = run(GET11, 200, &[(b"Server", b"mine"), (b"Date", b"then")], &[(b"", false)]);
        assert!(!out.windows(9).any(|w| w == b"ferrocorn"));
        let mut r = AsgiResponse::default();
        assert!(r.start(GET11, 200, &[(b"bad name", b"x")], &opts(false)).is_err());
        assert!(r.start(GET11, 200, &[(b"x", b"a\r\nb")], &opts(false)).is_err());
        assert!(r.start(GET11, 42, &[], &opts(false)).is_err());
        let mut r = AsgiResponse::default();
        r.start(GET11, 200, &[], &opts(true)).expect("start");
        let mut out = Vec::new();
        r.body(b"", false, &mut out);
        assert!(out.windows(19).any(|w| w == b"Connection: close\r\n"));
    }
}
