//! One access-log line per request, with the atoms read back from the
//! environ after the app ran (so middleware that rewrote REMOTE_ADDR, as
//! ProxyFix does, is honoured, as in Gunicorn); and the other per-request
//! records: the worker's scoreboard counters (status class, latency), statsd
//! metrics, or a Python logger's `access()`. Every worker type records
//! through here, so the master's metrics count what the access log shows.

use crate::bridge::wsgi::response::WsgiResponse;
use crate::http::error::ErrorResponse;
use crate::http::request::RequestHead;
use crate::log::{AccessFormat, AccessRecord, EnvValue, EnvironLookup, Text};
use crate::net::stream::Peer;
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::time::Duration;

/// What a worker records after each request, decided once per worker.
pub struct RequestLog {
    /// Rendered by Rust (no GIL needed): for the access log file or syslog.
    format: Option<AccessFormat>,
    /// A Python logger gets every request through its `access()`.
    python: bool,
    /// statsd request metrics are on.
    statsd: bool,
    /// The worker's scoreboard slot: every request is counted there.
    slot: SlotHandle,
}

/// A request the app is running, counted in the slot's in-flight gauge
/// until dropped (on every way out of the request).
pub struct InFlight<'a>(&'a SlotHandle);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One finished request, for [`RequestLog::record`].
pub struct Finished<'a, 'py> {
    pub environ: &'a Bound<'py, PyDict>,
    pub head: &'a RequestHead,
    pub peer: Peer,
    pub response: &'a Bound<'py, WsgiResponse>,
    pub error: Option<&'a ErrorResponse>,
    pub elapsed: Duration,
}

/// One finished ASGI request: no environ, the request head and what the
/// response was (Gunicorn's ASGI worker logs from the same facts).
pub struct AsgiFinished<'a> {
    pub head: &'a RequestHead,
    pub peer: Peer,
    pub status: u16,
    pub headers: &'a [(Vec<u8>, Vec<u8>)],
    pub sent: u64,
    pub elapsed: Duration,
}

impl RequestLog {
    /// Response headers must be kept: `{name}o` atoms or a Python logger.
    pub fn needs_response_headers(&self) -> bool {
        self.python || self.format.as_ref().is_some_and(|f| f.needs_response_headers())
    }

    pub fn record_asgi(&self, py: Python<'_>, done: &AsgiFinished<'_>) {
        if let Some(format) = &self.format {
            log_asgi_request(format, done);
        }
        if self.python {
            let called = (|| -> PyResult<()> {
                let Some(logger) = crate::log::python::logger(py) else { return Ok(()) };
                let req = crate::hooks::objects::request(py, done.head, done.peer)?;
                let resp = asgi_response_object(py, done)?;
                let environ = asgi_environ(done).into_dict(py)?;
                let micros = done.elapsed.as_micros().min(i64::MAX as u128) as i64;
                let kw = PyDict::new(py);
                kw.set_item("microseconds", micros)?;
                let delta = py.import("datetime")?.getattr("timedelta")?.call((), Some(&kw))?;
                logger.call_method1("access", (resp, req, environ, delta))?;
                Ok(())
            })();
            if let Err(e) = called {
                crate::log::error!("{}", crate::python::format_exception(py, &e));
            }
        }
        self.slot.record(done.status, done.elapsed);
        if self.statsd {
            crate::log::statsd::request(done.status, done.elapsed);
        }
    }

    pub fn new(settings: &Settings, slot: SlotHandle) -> Result<RequestLog, String> {
        let python = crate::log::python::active();
        let format = if !python && crate::log::access_wanted() {
            Some(AccessFormat::configured(
                &settings.access_log_format,
                settings.access_log_json,
                &settings.access_log_json_headers,
            )?)
        } else {
            None
        };
        Ok(RequestLog { format, python, statsd: crate::log::statsd::enabled(), slot })
    }

    /// The request is handed to the app (sync and gthread; the asgi server
    /// counts its cycles itself).
    pub fn begin(&self) -> InFlight<'_> {
        self.slot.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(&self.slot)
    }

    pub fn record(&self, py: Python<'_>, done: &Finished<'_, '_>) {
        if let Some(format) = &self.format {
            log_request(format, done);
        }
        if self.python {
            python_access(py, done);
        }
        // A request that ended without a status (the client left before
        // the app started a response) is in no status class, as statsd
        // leaves it out too.
        let status = match done.error {
            Some(e) => Some(e.status),
            None => done.response.borrow().lock().state().map(|s| s.status_code()),
        };
        if let Some(status) = status {
            self.slot.record(status, done.elapsed);
            if self.statsd {
                crate::log::statsd::request(status, done.elapsed);
            }
        }
    }
}

/// `logger.access(resp, req, environ, request_time)` on the Python logger.
fn python_access(py: Python<'_>, done: &Finished<'_, '_>) {
    let called = (|| -> PyResult<()> {
        let Some(logger) = crate::log::python::logger(py) else { return Ok(()) };
        let req = crate::hooks::objects::request(py, done.head, done.peer)?;
        let resp = crate::hooks::objects::response(py, done.response)?;
        if let Some(e) = done.error {
            resp.setattr("status", format!("{} {}", e.status, e.reason))?;
            resp.setattr("status_code", e.status)?;
        }
        let micros = done.elapsed.as_micros().min(i64::MAX as u128) as i64;
        let delta = py.import("datetime")?.getattr("timedelta")?.call(
            (),
            Some(&{
                let kw = PyDict::new(py);
                kw.set_item("microseconds", micros)?;
                kw
            }),
        )?;
        logger.call_method1("access", (resp, req, done.environ, delta))?;
        Ok(())
    })();
    if let Err(e) = called {
        crate::log::error!("{}", crate::python::format_exception(py, &e));
    }
}

pub fn log_request(format: &AccessFormat, done: &Finished<'_, '_>) {
    let Finished { environ, head, response, error, elapsed, .. } = *done;
    let get = |key: &str| -> Option<Bound<'_, PyString>> {
        environ.get_item(key).ok().flatten().and_then(|v| v.cast_into::<PyString>().ok())
    };
    let remote_addr = get("REMOTE_ADDR");
    let method = get("REQUEST_METHOD");
    let raw_uri = get("RAW_URI");
    let protocol = get("SERVER_PROTOCOL");
    let path_info = get("PATH_INFO");
    let query = get("QUERY_STRING");
    let referer = get("HTTP_REFERER");
    let user_agent = get("HTTP_USER_AGENT");
    let authorization = get("HTTP_AUTHORIZATION");
    let scheme = get("wsgi.url_scheme");
    let text = |s: &Option<Bound<'_, PyString>>| -> Option<String> {
        s.as_ref().and_then(|s| crate::stable_abi::utf8(s).ok().map(str::to_owned))
    };
    let scheme = text(&scheme);
    let (remote_addr, method, raw_uri, protocol, path_info, query, referer, user_agent, authorization) = (
        text(&remote_addr),
        text(&method),
        text(&raw_uri),
        text(&protocol),
        text(&path_info),
        text(&query),
        text(&referer),
        text(&user_agent),
        text(&authorization),
    );

    let resp = response.borrow();
    let core = resp.lock();
    let (status, sent): (String, u64) = match (error, core.state()) {
        (Some(e), _) => (format!("{} {}", e.status, e.reason), 0),
        (None, Some(state)) => (String::from_utf8_lossy(state.status()).into_owned(), state.sent()),
        (None, None) => ("-".to_owned(), 0),
    };
    let response_headers: Vec<(&[u8], &[u8])> = match core.state() {
        Some(state) if format.needs_response_headers() => state.headers().collect(),
        _ => Vec::new(),
    };
    let request_headers: Vec<(&[u8], &[u8])> = if format.needs_request_headers() {
        head.headers.iter().map(|h| (h.name.as_bytes(), h.value.as_slice())).collect()
    } else {
        Vec::new()
    };
    let env = if format.needs_environ() { OwnedEnviron::from_dict(environ) } else { OwnedEnviron(Vec::new()) };

    let record = AccessRecord {
        remote_addr: text_of(&remote_addr),
        method: text_of(&method),
        raw_uri: text_of(&raw_uri),
        protocol: text_of(&protocol),
        path_info: text_of(&path_info),
        query: text_of(&query),
        sent,
        referer: text_of(&referer),
        user_agent: text_of(&user_agent),
        authorization: text_of(&authorization),
        request_headers: &request_headers,
        response_headers: &response_headers,
        environ: &env,
        scheme: text_of(&scheme),
        peer: tcp_peer(done.peer),
        ..AccessRecord::new(Text::Str(&status), elapsed)
    };
    // Everything the line needs is Rust data now: render and write it
    // without the GIL.
    response.py().detach(|| crate::log::access(format, &record));
}

/// The environ's values, copied out for `{name}e` atoms.
struct OwnedEnviron(Vec<(String, Owned)>);

enum Owned {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Other { text: String, type_name: String },
}

impl OwnedEnviron {
    fn from_dict(environ: &Bound<'_, PyDict>) -> OwnedEnviron {
        let mut items = Vec::with_capacity(environ.len());
        for (k, v) in environ.iter() {
            let Ok(key) = k.extract::<String>() else { continue };
            let value = if v.is_none() {
                Owned::None
            } else if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
                Owned::Bool(b.is_true())
            } else if let Ok(s) = v.cast::<PyString>() {
                Owned::Str(s.to_string_lossy().into_owned())
            } else if let Ok(i) = v.extract::<i128>() {
                Owned::Int(i)
            } else {
                Owned::Other {
                    text: v.str().map(|s| s.to_string()).unwrap_or_default(),
                    type_name: v.get_type().name().map(|n| n.to_string()).unwrap_or_default(),
                }
            };
            items.push((key, value));
        }
        OwnedEnviron(items)
    }
}

impl EnvironLookup for OwnedEnviron {
    fn lookup(&self, lower_key: &str) -> Option<EnvValue<'_>> {
        self.0.iter().rev().find(|(k, _)| k.to_lowercase() == lower_key).map(|(_, v)| match v {
            Owned::Str(s) => EnvValue::Str(Text::Str(s)),
            Owned::Int(i) => EnvValue::Int(*i),
            Owned::Bool(b) => EnvValue::Bool(*b),
            Owned::None => EnvValue::None,
            Owned::Other { text, type_name } => EnvValue::Other { text: text.into(), type_name: type_name.into() },
        })
    }
}

fn tcp_peer(peer: Peer) -> Option<std::net::SocketAddr> {
    match peer {
        Peer::Tcp(addr) => Some(addr),
        Peer::Unix => None,
    }
}

fn text_of(s: &Option<String>) -> Option<Text<'_>> {
    s.as_deref().map(Text::Str)
}

/// What Gunicorn's ASGI worker passes as `resp` to the access log and
/// `post_request` (its `ASGIResponseInfo`): status (an int), headers as
/// str pairs, bytes sent.
pub fn asgi_response_object<'py>(py: Python<'py>, done: &AsgiFinished<'_>) -> PyResult<Bound<'py, PyAny>> {
    let latin1 = |b: &[u8]| -> String { b.iter().map(|&c| char::from(c)).collect() };
    let headers = pyo3::types::PyList::empty(py);
    for (n, v) in done.headers {
        headers.append((latin1(n), latin1(v)))?;
    }
    let cls = py.import(pyo3::intern!(py, "ferrocorn._hooks"))?.getattr(pyo3::intern!(py, "ASGIResponseInfo"))?;
    cls.call1((done.status, headers, done.sent))
}

/// The environ Gunicorn's ASGI worker builds for its access log: method,
/// URI, path, query, protocol, client address and the request headers.
pub struct AsgiEnviron(Vec<(String, String)>);

pub fn asgi_environ(done: &AsgiFinished<'_>) -> AsgiEnviron {
    let head = done.head;
    let path = crate::http::text::unquote_to_bytes(head.path.as_bytes());
    let mut items = vec![
        ("REQUEST_METHOD".to_owned(), head.method.clone()),
        ("RAW_URI".to_owned(), head.uri.clone()),
        ("PATH_INFO".to_owned(), path.iter().map(|&c| char::from(c)).collect()),
        ("QUERY_STRING".to_owned(), head.query.clone()),
        ("SERVER_PROTOCOL".to_owned(), head.server_protocol()),
        ("REMOTE_ADDR".to_owned(), done.peer.ip().map_or_else(|| "-".to_owned(), |ip| ip.to_string())),
        ("wsgi.url_scheme".to_owned(), head.scheme.as_str().to_owned()),
    ];
    for h in &head.headers {
        items.push((format!("HTTP_{}", h.name.replace('-', "_")), h.value.iter().map(|&c| char::from(c)).collect()));
    }
    AsgiEnviron(items)
}

impl AsgiEnviron {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn into_dict(self, py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.0 {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
}

impl EnvironLookup for AsgiEnviron {
    fn lookup(&self, lower_key: &str) -> Option<EnvValue<'_>> {
        self.0.iter().rev().find(|(k, _)| k.to_lowercase() == lower_key).map(|(_, v)| EnvValue::Str(Text::Str(v)))
    }
}

fn log_asgi_request(format: &AccessFormat, done: &AsgiFinished<'_>) {
    let env = asgi_environ(done);
    let status = done.status.to_string();
    let request_headers: Vec<(&[u8], &[u8])> = if format.needs_request_headers() {
        done.head.headers.iter().map(|h| (h.name.as_bytes(), h.value.as_slice())).collect()
    } else {
        Vec::new()
    };
    let text = |key: &str| env.get(key).map(Text::Str);
    let record = AccessRecord {
        remote_addr: text("REMOTE_ADDR"),
        method: text("REQUEST_METHOD"),
        raw_uri: text("RAW_URI"),
        protocol: text("SERVER_PROTOCOL"),
        path_info: text("PATH_INFO"),
        query: text("QUERY_STRING"),
        sent: done.sent,
        referer: text("HTTP_REFERER"),
        user_agent: text("HTTP_USER_AGENT"),
        authorization: text("HTTP_AUTHORIZATION"),
        request_headers: &request_headers,
        response_headers: &done.headers,
        environ: &env,
        scheme: text("wsgi.url_scheme"),
        peer: tcp_peer(done.peer),
        ..AccessRecord::new(Text::Str(&status), done.elapsed)
    };
    crate::log::access(format, &record);
}
