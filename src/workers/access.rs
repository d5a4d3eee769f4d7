//! One access-log line per request, with the atoms read back from the
//! environ after the app ran (so middleware that rewrote REMOTE_ADDR, as
//! ProxyFix does, is honoured, as in Gunicorn); and the other per-request
//! records: statsd metrics, or a Python logger's `access()`.

use crate::http::error::ErrorResponse;
use crate::http::request::RequestHead;
use crate::log::{AccessFormat, AccessRecord, EnvValue, EnvironLookup, Text};
use crate::net::stream::Peer;
use crate::settings::Settings;
use crate::wsgi::response::WsgiResponse;
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

impl RequestLog {
    pub fn new(settings: &Settings) -> Result<RequestLog, String> {
        let python = crate::log::python::active();
        let format = if !python && crate::log::access_wanted() {
            Some(AccessFormat::parse(&settings.access_log_format)?)
        } else {
            None
        };
        Ok(RequestLog { format, python, statsd: crate::log::statsd::enabled() })
    }

    pub fn record(&self, py: Python<'_>, done: &Finished<'_, '_>) {
        if let Some(format) = &self.format {
            log_request(format, done.environ, done.head, done.response, done.error, done.elapsed);
        }
        if self.python {
            python_access(py, done);
        }
        if self.statsd {
            let status = match done.error {
                Some(e) => Some(e.status),
                None => done.response.borrow().lock().state().map(|s| s.status_code()),
            };
            if let Some(status) = status {
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
        let delta = py.import("datetime")?.getattr("timedelta")?.call((), Some(&{
            let kw = PyDict::new(py);
            kw.set_item("microseconds", micros)?;
            kw
        }))?;
        logger.call_method1("access", (resp, req, done.environ, delta))?;
        Ok(())
    })();
    if let Err(e) = called {
        crate::log::error!("{}", crate::python::format_exception(py, &e));
    }
}

pub fn log_request(
    format: &AccessFormat,
    environ: &Bound<'_, PyDict>,
    head: &RequestHead,
    response: &Bound<'_, WsgiResponse>,
    error: Option<&ErrorResponse>,
    elapsed: Duration,
) {
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
    let text = |s: &Option<Bound<'_, PyString>>| -> Option<String> { s.as_ref().and_then(|s| s.to_str().ok().map(str::to_owned)) };
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

fn text_of(s: &Option<String>) -> Option<Text<'_>> {
    s.as_deref().map(Text::Str)
}
