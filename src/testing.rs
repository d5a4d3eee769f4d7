//! Test support, not used by the server: `ferrocorn._ferrocorn.testing`
//! exposes the sans-I/O HTTP/1 connection to Python so that
//! `tests/fuzz/http_diff.py` can feed the same reads to ferrocorn and to
//! Gunicorn's own parser and compare what each makes of them.
//!
//! The connection is driven as a keep-alive worker drives it (one
//! `http::conn::ServerConn`, the parser called once per read, each body read
//! to its end before the next request), with the settings parsed from
//! Gunicorn command-line flags by the real settings code, so what is
//! compared is what a worker would do with those bytes.

use std::net::IpAddr;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::http::conn::{BodyRead, Event, ServerConn};
use crate::http::error::HttpError;
use crate::http::policy::HttpPolicy;
use crate::http::request::Header;
use crate::settings::{cli, Settings};

/// The policy a worker started with these command-line flags would use.
fn policy_from_flags(py: Python<'_>, flags: &[String]) -> PyResult<HttpPolicy> {
    let argv = std::iter::once("ferrocorn".to_owned()).chain(flags.iter().cloned());
    let args = cli::parse(argv).map_err(|e| PyValueError::new_err(e.message))?;
    let mut settings = Settings::defaults(py).map_err(|e| PyValueError::new_err(e.to_string()))?;
    for (name, value) in &args.settings {
        settings.set(py, name, value).map_err(|e| PyValueError::new_err(e.to_string()))?;
    }
    // Gunicorn's is_ssl: the flags name a certificate or a key.
    let tls = settings.certfile.is_some() || settings.keyfile.is_some();
    Ok(crate::workers::http_policy(&settings, tls))
}

/// Gunicorn's exception class for each refusal.
fn gunicorn_class(e: &HttpError) -> &'static str {
    use HttpError::*;
    match e {
        InvalidRequestLine(_) => "InvalidRequestLine",
        InvalidRequestMethod(_) => "InvalidRequestMethod",
        InvalidHttpVersion(_) | UnsupportedHttpVersion { .. } => "InvalidHTTPVersion",
        InvalidHeader(_) => "InvalidHeader",
        InvalidHeaderName(_) => "InvalidHeaderName",
        ObsoleteFolding(_) => "ObsoleteFolding",
        LimitRequestLine { .. } => "LimitRequestLine",
        LimitRequestHeaders(_) => "LimitRequestHeaders",
        UnsupportedTransferCoding(_) => "UnsupportedTransferCoding",
        ExpectationFailed(_) => "ExpectationFailed",
        InvalidSchemeHeaders => "InvalidSchemeHeaders",
        InvalidProxyLine(_) => "InvalidProxyLine",
        InvalidProxyHeader(_) => "InvalidProxyHeader",
        ForbiddenProxyRequest(_) => "ForbiddenProxyRequest",
        InvalidChunkSize(_) => "InvalidChunkSize",
        ChunkMissingTerminator(_) => "ChunkMissingTerminator",
        InvalidChunkExtension(_) => "InvalidChunkExtension",
        NoMoreData => "NoMoreData",
        ConfigurationProblem(_) => "ConfigurationProblem",
        InvalidH2cPreface(_) => "InvalidH2CPreface",
        Uwsgi { error, .. } => match error {
            crate::uwsgi::UwsgiError::InvalidHeader(_) => "InvalidUWSGIHeader",
            crate::uwsgi::UwsgiError::UnsupportedModifier(_) => "UnsupportedModifier",
            crate::uwsgi::UwsgiError::Forbidden(_) => "ForbiddenUWSGIRequest",
        },
    }
}

fn error_event<'py>(py: Python<'py>, e: &HttpError) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("event", "error")?;
    d.set_item("kind", gunicorn_class(e))?;
    d.set_item("text", e.to_string())?;
    match e.response() {
        Some(r) => d.set_item("wire", PyBytes::new(py, &r.to_bytes()))?,
        None => d.set_item("wire", py.None())?,
    }
    Ok(d)
}

fn headers_list<'py>(py: Python<'py>, headers: &[Header]) -> PyResult<Bound<'py, PyList>> {
    let items: Vec<(String, Bound<'py, PyBytes>)> =
        headers.iter().map(|h| (h.name.clone(), PyBytes::new(py, &h.value))).collect();
    PyList::new(py, items)
}

fn end_event<'py>(py: Python<'py>, how: &str) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("event", "end")?;
    d.set_item("how", how)?;
    Ok(d)
}

/// Feeds `reads` (one element per `recv()`) to a fresh connection from
/// `peer` (an IP address, or `None` for a Unix socket), the client closing
/// its side after the last one when `eof`. Returns the events in order:
/// `head` (the parsed request), `body` (its decoded bytes), `error` (the
/// refusal: Gunicorn's exception class and text, and the error page put on
/// the wire, if any) and a final `end` (`eof`: closed without an answer;
/// `waiting`: the server waits for more bytes).
#[pyfunction]
#[pyo3(signature = (reads, flags, peer=Some("127.0.0.1".to_owned()), eof=true))]
fn http_exchange<'py>(
    py: Python<'py>,
    reads: Vec<Vec<u8>>,
    flags: Vec<String>,
    peer: Option<String>,
    eof: bool,
) -> PyResult<Bound<'py, PyList>> {
    let policy = policy_from_flags(py, &flags)?;
    let peer: Option<IpAddr> = match peer {
        Some(p) => Some(p.parse().map_err(|_| PyValueError::new_err(format!("not an IP address: {p}")))?),
        None => None,
    };
    let events = PyList::empty(py);
    let mut conn = ServerConn::new(policy.proxy_protocol);
    let mut reads = reads.into_iter().filter(|r| !r.is_empty());
    // The request whose body is being read, if any, and the body so far.
    let mut reading: Option<(bool, Vec<u8>)> = None;
    loop {
        let need_data = if let Some((should_close, body)) = reading.as_mut() {
            match conn.read_body(body, usize::MAX) {
                Ok(BodyRead::Data) => false,
                Ok(BodyRead::NeedData) => true,
                Ok(BodyRead::Complete) => {
                    let d = PyDict::new(py);
                    d.set_item("event", "body")?;
                    d.set_item("data", PyBytes::new(py, body))?;
                    events.append(d)?;
                    // A response goes out, then the connection goes on
                    // (or not) as the request asked.
                    conn.response_started();
                    conn.response_complete(!*should_close);
                    reading = None;
                    false
                }
                Err(e) => {
                    events.append(error_event(py, &e)?)?;
                    return Ok(events);
                }
            }
        } else {
            match conn.next_event(&policy, peer) {
                Event::Request(req) => {
                    let head = &req.head;
                    let d = PyDict::new(py);
                    d.set_item("event", "head")?;
                    d.set_item("method", &head.method)?;
                    d.set_item("uri", &head.uri)?;
                    d.set_item("path", &head.path)?;
                    d.set_item("query", &head.query)?;
                    d.set_item("fragment", &head.fragment)?;
                    d.set_item("version", head.version)?;
                    d.set_item("headers", headers_list(py, &head.headers)?)?;
                    d.set_item("scheme", head.scheme.as_str())?;
                    d.set_item("expect_continue", head.expect_continue)?;
                    d.set_item("should_close", head.should_close())?;
                    match &req.proxy {
                        Some(info) => d.set_item("proxy", (info.protocol, info.client.clone(), info.proxy.clone()))?,
                        None => d.set_item("proxy", py.None())?,
                    }
                    events.append(d)?;
                    reading = Some((head.should_close(), Vec::new()));
                    false
                }
                Event::NeedData => true,
                Event::Reject(HttpError::NoMoreData) | Event::Close => {
                    events.append(end_event(py, "eof")?)?;
                    return Ok(events);
                }
                Event::Reject(e) => {
                    events.append(error_event(py, &e)?)?;
                    return Ok(events);
                }
                Event::Paused | Event::Http2 => {
                    // Every body is read to its end and answered here, so
                    // the connection can never be paused; no HTTP/2 is offered.
                    events.append(end_event(py, "paused")?)?;
                    return Ok(events);
                }
            }
        };
        if need_data {
            if let Some(read) = reads.next() {
                conn.buffer().extend(&read);
            } else if eof && !conn.peer_closed() {
                conn.received_eof();
            } else {
                events.append(end_event(py, "waiting")?)?;
                return Ok(events);
            }
        }
    }
}

pub fn register(parent: &Bound<'_, PyModule>) -> PyResult<()> {
    let m = PyModule::new(parent.py(), "testing")?;
    m.add_function(wrap_pyfunction!(http_exchange, &m)?)?;
    parent.add_submodule(&m)?;
    Ok(())
}
