//! The uwsgi protocol (`--protocol uwsgi`), what nginx's `uwsgi_pass`
//! speaks: a request is one binary packet, parsed here without I/O into the
//! same [`RequestHead`] an HTTP/1 request becomes, so the environ, scope,
//! access log, hooks and limits that follow are the HTTP ones. The answer
//! is an HTTP/1.1 response, never chunked (nginx passes the bytes on as the
//! body, so chunk markers would reach the client): without a length, the
//! connection's end delimits it.
//!
//! A packet: `modifier1` (0, a WSGI request), the vars block's size (16-bit
//! little-endian), `modifier2` (ignored); the vars block, key/value pairs
//! each prefixed by a 16-bit little-endian length; then `CONTENT_LENGTH`
//! bytes of body. Vars are CGI's: `HTTP_*` become header fields (`_` read
//! as `-`, which CGI cannot tell apart), `PATH_INFO`, `QUERY_STRING`,
//! `REQUEST_METHOD` and `REQUEST_URI` the request line; the others (the
//! front end's `REMOTE_ADDR`, `SERVER_NAME`, ...) are not passed on, as in
//! Gunicorn, whose reading of each field this follows.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::http::policy::AllowList;
use crate::http::request::{BodyFraming, Header, Parsed, RequestHead, Scheme};
use crate::http::text::{latin1_to_string, py_int, py_repr};

/// Vars per packet at most (Gunicorn's bound; a 64 KiB block could
/// otherwise hold 16,000 empty ones).
pub const MAX_VARS: usize = 1000;
/// The packet header: modifier1, the vars block size (16 bits), modifier2.
pub const HEADER_LEN: usize = 4;

/// A packet Gunicorn refuses, named after its exception.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UwsgiError {
    InvalidHeader(&'static str),
    UnsupportedModifier(u8),
    /// The peer's address, not in `--uwsgi-allow-from`.
    Forbidden(String),
}

impl fmt::Display for UwsgiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UwsgiError::InvalidHeader(what) => write!(f, "Invalid uWSGI header: {what}"),
            UwsgiError::UnsupportedModifier(m) => write!(f, "Unsupported uWSGI modifier1: {m}"),
            UwsgiError::Forbidden(ip) => write!(f, "uWSGI request from {} not allowed", py_repr(ip)),
        }
    }
}

impl std::error::Error for UwsgiError {}

impl UwsgiError {
    /// Gunicorn's exception class, as its error log names it.
    pub fn class_name(&self) -> &'static str {
        match self {
            UwsgiError::InvalidHeader(_) => "gunicorn.uwsgi.errors.InvalidUWSGIHeader",
            UwsgiError::UnsupportedModifier(_) => "gunicorn.uwsgi.errors.UnsupportedModifier",
            UwsgiError::Forbidden(_) => "gunicorn.uwsgi.errors.ForbiddenUWSGIRequest",
        }
    }
}

/// What only a uwsgi request has: the ASGI scope takes its paths from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UwsgiFacts {
    /// `REQUEST_URI` up to its `?` (the target as the client sent it), or
    /// `PATH_INFO` without one.
    pub raw_path: Vec<u8>,
}

/// `--protocol uwsgi` against the rest of the settings, at start: what
/// could only fail on every request stops the start instead.
pub fn check_settings(s: &crate::settings::Settings, kind: crate::workers::WorkerKind) -> Result<(), String> {
    if s.protocol != "uwsgi" {
        return Ok(());
    }
    if kind == crate::workers::WorkerKind::Python {
        return Err(format!(
            "--protocol uwsgi is served by ferrocorn's workers (sync, gthread, asgi, gevent, eventlet, tornado); \
             the worker class {} reads its own requests",
            s.worker_class
        ));
    }
    if s.proxy_protocol != crate::net::proxy_protocol::ProxyMode::Off {
        return Err("--proxy-protocol cannot be used with --protocol uwsgi: a uwsgi front end sends no PROXY \
                    header (the client's address is in its REMOTE_ADDR var)"
            .to_owned());
    }
    if crate::http2::enabled(s) {
        return Err(format!(
            "http_protocols = {} cannot be used with --protocol uwsgi: the front end speaks uwsgi, not HTTP/2",
            s.http_protocols
        ));
    }
    Ok(())
}

/// `--uwsgi-allow-from`: a Unix-socket peer has no address and is allowed.
pub fn check_peer(allow: &AllowList, peer: Option<IpAddr>) -> Result<(), UwsgiError> {
    match peer {
        Some(ip) if !allow.allows(ip) => Err(UwsgiError::Forbidden(ip.to_string())),
        _ => Ok(()),
    }
}

/// One packet's head from the start of `buf`: `Partial` until the vars
/// block is whole. The body follows the bytes consumed.
pub fn parse_packet(buf: &[u8], is_ssl: bool) -> Result<Parsed<RequestHead>, UwsgiError> {
    let Some(header) = buf.get(..HEADER_LEN) else { return Ok(Parsed::Partial) };
    if header[0] != 0 {
        return Err(UwsgiError::UnsupportedModifier(header[0]));
    }
    let size = usize::from(u16::from_le_bytes([header[1], header[2]]));
    let Some(block) = buf.get(HEADER_LEN..HEADER_LEN + size) else { return Ok(Parsed::Partial) };
    let vars = Vars::parse(block)?;
    Ok(Parsed::Complete(vars.into_head(is_ssl), HEADER_LEN + size))
}

/// A packet's vars in their first arrival order, a repeated key keeping its
/// last value (a Python dict filled in order).
struct Vars<'a> {
    pairs: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Vars<'a> {
    fn parse(mut block: &'a [u8]) -> Result<Self, UwsgiError> {
        let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        let mut count = 0;
        while !block.is_empty() {
            if count >= MAX_VARS {
                return Err(UwsgiError::InvalidHeader("too many variables"));
            }
            let key = take_prefixed(&mut block, "truncated key size", "truncated key")?;
            let value = take_prefixed(&mut block, "truncated value size", "truncated value")?;
            match index.get(key) {
                Some(&i) => pairs[i].1 = value,
                None => {
                    index.insert(key, pairs.len());
                    pairs.push((key, value));
                }
            }
            count += 1;
        }
        Ok(Vars { pairs })
    }

    fn get(&self, key: &str) -> Option<&'a [u8]> {
        self.pairs.iter().find(|(k, _)| *k == key.as_bytes()).map(|(_, v)| *v)
    }

    fn text(&self, key: &str, default: &str) -> String {
        self.get(key).map_or_else(|| default.to_owned(), latin1_to_string)
    }

    fn into_head(self, is_ssl: bool) -> RequestHead {
        let method = self.text("REQUEST_METHOD", "GET");
        let path = self.text("PATH_INFO", "/");
        let query = self.text("QUERY_STRING", "");
        let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let raw_path = match self.get("REQUEST_URI") {
            Some(target) if !target.is_empty() => target.split(|&b| b == b'?').next().unwrap_or(target).to_vec(),
            _ => crate::http::text::string_to_latin1(&path),
        };
        let scheme = match (self.get("HTTPS"), self.get("wsgi.url_scheme")) {
            (Some(v), _) if [&b"on"[..], b"1", b"true"].iter().any(|t| v.eq_ignore_ascii_case(t)) => Scheme::Https,
            (_, Some(v)) if v == b"https" => Scheme::Https,
            (_, Some(_)) => Scheme::Http,
            _ if is_ssl => Scheme::Https,
            _ => Scheme::Http,
        };
        let mut headers = Vec::new();
        let mut length = None;
        for &(key, value) in &self.pairs {
            let name = match key {
                b"CONTENT_TYPE" => "CONTENT-TYPE".to_owned(),
                b"CONTENT_LENGTH" => {
                    // Python's int(), negatives read as none, anything else
                    // as no body at all.
                    length = Some(py_int(value).map_or(0, |n| u64::try_from(n.max(0)).unwrap_or(u64::MAX)));
                    "CONTENT-LENGTH".to_owned()
                }
                _ => match key.strip_prefix(b"HTTP_") {
                    Some(rest) => latin1_to_string(rest).replace('_', "-"),
                    None => continue,
                },
            };
            headers.push(Header { name, value: value.to_vec() });
        }
        RequestHead {
            method,
            uri,
            path,
            query,
            fragment: String::new(),
            version: (1, 1),
            headers,
            scheme,
            // The front end answered any Expect itself.
            expect_continue: false,
            body: length.map_or(BodyFraming::Empty, BodyFraming::Length),
            must_close: false,
            uwsgi: Some(Box::new(UwsgiFacts { raw_path })),
        }
    }
}

/// One length-prefixed field off the front of `block`.
fn take_prefixed<'a>(
    block: &mut &'a [u8],
    short_size: &'static str,
    short_data: &'static str,
) -> Result<&'a [u8], UwsgiError> {
    let (size, rest) = match block {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => return Err(UwsgiError::InvalidHeader(short_size)),
    };
    let Some(field) = rest.get(..size) else { return Err(UwsgiError::InvalidHeader(short_data)) };
    *block = &rest[size..];
    Ok(field)
}

#[cfg(test)]
mod tests;
