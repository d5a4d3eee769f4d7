//! The opening handshake, server side (RFC 6455 §4.2): recognising an
//! upgrade request, validating it, and the bytes of the answer, either
//! `101 Switching Protocols` or a rejection.
//!
//! Headers come as the HTTP layer stores them: uppercased names, raw values
//! with surrounding whitespace removed, repeated headers as separate entries.

use std::fmt;

use crate::util::base64;
use crate::ws::sha1;

/// RFC 6455 §1.3: appended to the client's key before hashing.
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this server speaks.
pub const VERSION: &str = "13";

/// A request that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key` as sent; the input to [`accept_value`].
    pub key: String,
    /// `Sec-WebSocket-Protocol` entries in order, across repeated headers;
    /// the ASGI scope's `subprotocols`.
    pub subprotocols: Vec<String>,
}

/// Why a handshake is refused; each maps to one status and message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    NotGet,
    HttpVersion,
    Host,
    UpgradeHeader,
    ConnectionHeader,
    /// Missing, repeated or other than 13: answered 426 naming version 13.
    UnsupportedVersion,
    Key,
    Subprotocols,
}

impl HandshakeError {
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    pub fn reason_phrase(&self) -> &'static str {
        match self {
            HandshakeError::UnsupportedVersion => "Upgrade Required",
            _ => "Bad Request",
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            HandshakeError::NotGet => "WebSocket handshake must use GET",
            HandshakeError::HttpVersion => "WebSocket handshake requires HTTP/1.1 or later",
            HandshakeError::Host => "Missing or repeated Host header",
            HandshakeError::UpgradeHeader => "Upgrade header must include websocket",
            HandshakeError::ConnectionHeader => "Connection header must include upgrade",
            HandshakeError::UnsupportedVersion => "Unsupported Sec-WebSocket-Version: only 13 is supported",
            HandshakeError::Key => "Missing, repeated or invalid Sec-WebSocket-Key",
            HandshakeError::Subprotocols => "Invalid Sec-WebSocket-Protocol header",
        }
    }

    /// The complete answer, after which the connection is closed.
    pub fn response(&self, server: &[u8], date: &[u8]) -> Vec<u8> {
        let extra: &[(&[u8], &[u8])] = match self {
            // RFC 6455 §4.4 names the versions understood; RFC 9110 §15.5.22
            // wants Upgrade on a 426, and Upgrade needs a Connection token.
            HandshakeError::UnsupportedVersion => {
                &[(b"Upgrade", b"websocket"), (b"Sec-WebSocket-Version", VERSION.as_bytes())]
            }
            _ => &[],
        };
        let connection: &[u8] =
            if matches!(self, HandshakeError::UnsupportedVersion) { b"Upgrade, close" } else { b"close" };
        reject_response(self.status(), self.reason_phrase(), connection, extra, self.message().as_bytes(), server, date)
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for HandshakeError {}

/// Request headers as the HTTP layer gives them: (UPPERCASED name, raw value).
pub type Headers<'a> = [(&'a str, &'a [u8])];

fn values<'h>(headers: &'h Headers<'_>, name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Elements of a comma-separated list header (RFC 9110 §5.6.1), across
/// repeated headers, empty elements skipped.
fn list_items<'h>(headers: &'h Headers<'_>, name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
    values(headers, name).flat_map(|v| v.split(|&b| b == b',')).map(trim).filter(|t| !t.is_empty())
}

fn has_token(headers: &Headers<'_>, name: &str, token: &str) -> bool {
    list_items(headers, name).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// The single value of a header that must appear exactly once.
fn single<'h>(headers: &'h Headers<'_>, name: &'h str) -> Option<&'h [u8]> {
    let mut it = values(headers, name);
    match (it.next(), it.next()) {
        (Some(v), None) => Some(trim(v)),
        _ => None,
    }
}

fn is_token(t: &[u8]) -> bool {
    !t.is_empty() && t.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Does this request ask for a WebSocket? (`GET`, an `Upgrade` list with
/// `websocket` and a `Connection` list with `upgrade`, any case.) Whether it
/// is a *valid* handshake is [`validate`]'s question; a request that is not
/// an upgrade goes to the application as plain HTTP.
pub fn is_upgrade(method: &str, headers: &Headers<'_>) -> bool {
    method == "GET" && has_token(headers, "UPGRADE", "websocket") && has_token(headers, "CONNECTION", "upgrade")
}

/// RFC 6455 §4.2.1, checked in an order that gives a client of another
/// protocol version the 426 that tells it which version to use.
pub fn validate(method: &str, version: (u8, u8), headers: &Headers<'_>) -> Result<Upgrade, HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if version < (1, 1) {
        return Err(HandshakeError::HttpVersion);
    }
    if single(headers, "HOST").is_none() {
        return Err(HandshakeError::Host);
    }
    if !has_token(headers, "UPGRADE", "websocket") {
        return Err(HandshakeError::UpgradeHeader);
    }
    if !has_token(headers, "CONNECTION", "upgrade") {
        return Err(HandshakeError::ConnectionHeader);
    }
    if single(headers, "SEC-WEBSOCKET-VERSION") != Some(VERSION.as_bytes()) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = single(headers, "SEC-WEBSOCKET-KEY").ok_or(HandshakeError::Key)?;
    if base64::decode(key).map(|k| k.len()) != Some(16) {
        return Err(HandshakeError::Key);
    }
    // Valid base64 is ASCII, so this cannot fail.
    let key = String::from_utf8(key.to_vec()).map_err(|_| HandshakeError::Key)?;
    let mut subprotocols = Vec::new();
    for item in list_items(headers, "SEC-WEBSOCKET-PROTOCOL") {
        if !is_token(item) {
            return Err(HandshakeError::Subprotocols);
        }
        subprotocols.push(String::from_utf8(item.to_vec()).map_err(|_| HandshakeError::Subprotocols)?);
    }
    Ok(Upgrade { key, subprotocols })
}

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)).
pub fn accept_value(key: &str) -> String {
    base64::encode(&sha1::digest(&[key.as_bytes(), ACCEPT_GUID.as_bytes()]))
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `101 Switching Protocols` answer. `extra_headers` are the ones the
/// application gave in `websocket.accept`, already validated by the caller;
/// an empty `server` or `date` leaves that header out.
pub fn accept_response(
    key: &str,
    subprotocol: Option<&str>,
    extra_headers: &[(&[u8], &[u8])],
    server: &[u8],
    date: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + extra_headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>());
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    push_header(&mut out, b"Upgrade", b"websocket");
    push_header(&mut out, b"Connection", b"Upgrade");
    push_header(&mut out, b"Sec-WebSocket-Accept", accept_value(key).as_bytes());
    if let Some(p) = subprotocol {
        push_header(&mut out, b"Sec-WebSocket-Protocol", p.as_bytes());
    }
    if !server.is_empty() {
        push_header(&mut out, b"Server", server);
    }
    if !date.is_empty() {
        push_header(&mut out, b"Date", date);
    }
    for (name, value) in extra_headers {
        push_header(&mut out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A complete plain-text refusal of an upgrade (also usable for the 403 ASGI
/// asks for when the application closes before accepting). `connection` is
/// the `Connection` value, normally `close`.
pub fn reject_response(
    status: u16,
    reason: &str,
    connection: &[u8],
    extra_headers: &[(&[u8], &[u8])],
    body: &[u8],
    server: &[u8],
    date: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(200 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    if !server.is_empty() {
        push_header(&mut out, b"Server", server);
    }
    if !date.is_empty() {
        push_header(&mut out, b"Date", date);
    }
    push_header(&mut out, b"Connection", connection);
    for (name, value) in extra_headers {
        push_header(&mut out, name, value);
    }
    push_header(&mut out, b"Content-Type", b"text/plain; charset=utf-8");
    push_header(&mut out, b"Content-Length", body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn good() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("HOST", b"server.example.com"),
            ("UPGRADE", b"websocket"),
            ("CONNECTION", b"Upgrade"),
            ("SEC-WEBSOCKET-KEY", KEY.as_bytes()),
            ("ORIGIN", b"http://example.com"),
            ("SEC-WEBSOCKET-PROTOCOL", b"chat, superchat"),
            ("SEC-WEBSOCKET-VERSION", b"13"),
        ]
    }

    fn without(name: &str) -> Vec<(&'static str, &'static [u8])> {
        good().into_iter().filter(|(n, _)| *n != name).collect()
    }

    fn with(name: &'static str, value: &'static [u8]) -> Vec<(&'static str, &'static [u8])> {
        let mut h = without(name);
        h.push((name, value));
        h
    }

    #[test]
    fn rfc_accept_value() {
        assert_eq!(accept_value(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn rfc_example_request_validates() {
        let up = validate("GET", (1, 1), &good()).unwrap();
        assert_eq!(up, Upgrade { key: KEY.into(), subprotocols: vec!["chat".into(), "superchat".into()] });
        assert!(is_upgrade("GET", &good()));
    }

    #[test]
    fn is_upgrade_tokens() {
        let h = with("CONNECTION", b"keep-alive, UPGRADE");
        assert!(is_upgrade("GET", &h));
        let mut h = with("UPGRADE", b"h2c");
        h.push(("UPGRADE", b"WebSocket"));
        assert!(is_upgrade("GET", &h));
        assert!(!is_upgrade("POST", &good()));
        assert!(!is_upgrade("GET", &without("UPGRADE")));
        assert!(!is_upgrade("GET", &without("CONNECTION")));
        assert!(!is_upgrade("GET", &with("UPGRADE", b"websockets")));
        assert!(!is_upgrade("GET", &with("CONNECTION", b"upgraded")));
        assert!(!is_upgrade("GET", &with("CONNECTION", b"keep-alive")));
    }

    #[test]
    fn validation_failures() {
        use HandshakeError::*;
        type Case = (&'static str, (u8, u8), Vec<(&'static str, &'static [u8])>, HandshakeError);
        let cases: Vec<Case> = vec![
            ("POST", (1, 1), good(), NotGet),
            ("GET", (1, 0), good(), HttpVersion),
            ("GET", (1, 1), without("HOST"), Host),
            ("GET", (1, 1), [good(), vec![("HOST", &b"other"[..])]].concat(), Host),
            ("GET", (1, 1), without("UPGRADE"), UpgradeHeader),
            ("GET", (1, 1), with("UPGRADE", b"h2c"), UpgradeHeader),
            ("GET", (1, 1), without("CONNECTION"), ConnectionHeader),
            ("GET", (1, 1), without("SEC-WEBSOCKET-VERSION"), UnsupportedVersion),
            ("GET", (1, 1), with("SEC-WEBSOCKET-VERSION", b"8"), UnsupportedVersion),
            ("GET", (1, 1), with("SEC-WEBSOCKET-VERSION", b"13, 8"), UnsupportedVersion),
            ("GET", (1, 1), [good(), vec![("SEC-WEBSOCKET-VERSION", &b"13"[..])]].concat(), UnsupportedVersion),
            ("GET", (1, 1), without("SEC-WEBSOCKET-KEY"), Key),
            ("GET", (1, 1), with("SEC-WEBSOCKET-KEY", b""), Key),
            ("GET", (1, 1), with("SEC-WEBSOCKET-KEY", b"dGhlIHNhbXBsZSBub25jZQ"), Key),
            ("GET", (1, 1), with("SEC-WEBSOCKET-KEY", b"dGhlIHNhbXBsZSBub25jZXM="), Key), // 17 bytes
            ("GET", (1, 1), with("SEC-WEBSOCKET-KEY", b"dGhlIHNhbXBsZSBub25j"), Key),     // 15 bytes
            ("GET", (1, 1), with("SEC-WEBSOCKET-KEY", b"dGhlIHNhbXBsZSBub25jZQ=!"), Key),
            ("GET", (1, 1), [good(), vec![("SEC-WEBSOCKET-KEY", KEY.as_bytes())]].concat(), Key),
            ("GET", (1, 1), with("SEC-WEBSOCKET-PROTOCOL", b"chat, sup er"), Subprotocols),
            ("GET", (1, 1), with("SEC-WEBSOCKET-PROTOCOL", "ch\u{e9}t".as_bytes()), Subprotocols),
        ];
        for (method, version, headers, expected) in cases {
            assert_eq!(validate(method, version, &headers), Err(expected), "{headers:?}");
            let status = if expected == UnsupportedVersion { 426 } else { 400 };
            assert_eq!(expected.status(), status);
        }
    }

    #[test]
    fn later_http_versions_and_lenient_forms() {
        assert!(validate("GET", (2, 0), &good()).is_ok());
        let h = with("CONNECTION", b"keep-alive,  Upgrade ");
        assert!(validate("GET", (1, 1), &h).is_ok());
        let h = with("SEC-WEBSOCKET-KEY", b"  dGhlIHNhbXBsZSBub25jZQ== ");
        assert_eq!(validate("GET", (1, 1), &h).unwrap().key, KEY);
    }

    #[test]
    fn subprotocols_across_headers_in_order() {
        let mut h = with("SEC-WEBSOCKET-PROTOCOL", b" a ,b,, ");
        h.push(("SEC-WEBSOCKET-PROTOCOL", b"c"));
        assert_eq!(validate("GET", (1, 1), &h).unwrap().subprotocols, ["a", "b", "c"]);
        assert!(validate("GET", (1, 1), &without("SEC-WEBSOCKET-PROTOCOL")).unwrap().subprotocols.is_empty());
    }

    #[test]
    fn accept_response_bytes() {
        let extra: [(&[u8], &[u8]); 1] = [(b"Set-Cookie", b"a=b")];
        let r = accept_response(KEY, Some("chat"), &extra, b"ferrocorn", b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\
             Server: ferrocorn\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Set-Cookie: a=b\r\n\
             \r\n"
        );
        let r = accept_response(KEY, None, &[], b"", b"");
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn rejection_responses() {
        let r = HandshakeError::Key.response(b"ferrocorn", b"D");
        let body = HandshakeError::Key.message();
        assert_eq!(
            String::from_utf8(r).unwrap(),
            format!(
                "HTTP/1.1 400 Bad Request\r\nServer: ferrocorn\r\nDate: D\r\nConnection: close\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        );
        let r = String::from_utf8(HandshakeError::UnsupportedVersion.response(b"ferrocorn", b"D")).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{r}");
        assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(r.contains("\r\nUpgrade: websocket\r\n"));
        assert!(r.contains("\r\nConnection: Upgrade, close\r\n"));
        let r = String::from_utf8(reject_response(403, "Forbidden", b"close", &[], b"", b"", b"")).unwrap();
        assert_eq!(
            r,
            "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
