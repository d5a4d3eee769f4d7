//! One request through the WSGI app, the same for every WSGI worker type:
//! the 100-continue answer, environ, calling the app, Gunicorn's answers to
//! failures (400/500 pages, cut connections), the access-log line (and
//! statsd, or a Python logger's `access()`) and the `pre_request` and
//! `post_request` hooks. The worker supplies the body source and sink and
//! decides what happens to the connection afterwards.

use super::core::blocking;
use super::core::conn::log_refused;
use crate::bridge::wsgi::call::{self, Failure};
use crate::bridge::wsgi::environ::{EnvironBuilder, EnvironError, RequestView};
use crate::bridge::wsgi::input::{BodyError, BodySource, InputStream};
use crate::bridge::wsgi::response::{Sink, SinkError, WsgiResponse};
use crate::http::conn::{BodyRead, ServerConn};
use crate::http::error::{ErrorResponse, HttpError};
use crate::http::request::RequestHead;
use crate::http::response::RequestInfo;
use crate::net::listener::Address;
use crate::net::proxy_protocol::ProxyInfo;
use crate::net::stream::{Peer, Stream};
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// What a worker (or one of its threads) keeps across requests.
pub struct Runner {
    pub app: Py<PyAny>,
    pub environ: EnvironBuilder,
    /// The access line, statsd metrics or a Python logger's `access()`.
    pub log: super::core::access::RequestLog,
    /// `pre_request`/`post_request`, `None` when neither is set.
    pub hooks: Option<crate::hooks::RequestHooks>,
}

/// One request and where its bytes come from and go.
pub struct Exchange<'a> {
    pub head: &'a RequestHead,
    pub peer: Peer,
    pub proxy: Option<&'a ProxyInfo>,
    pub listener: &'a Address,
    pub stream: &'a Arc<Stream>,
    pub source: Box<dyn BodySource>,
    pub sink: Box<dyn Sink>,
    /// Answer with `Connection: close` whatever the request asked.
    pub must_close: bool,
    pub date: &'a [u8],
    /// `100 Continue` to send before the app is called (the request asked
    /// for it: `http::conn::ServerConn::take_continue`).
    pub continue_: Option<&'static [u8]>,
}

/// A request the app was called for.
pub struct Served<'py> {
    pub input: Bound<'py, InputStream>,
    pub response: Bound<'py, WsgiResponse>,
    /// The exchange failed (an error was answered, the client left, the app
    /// broke off a response): the connection must not carry another one.
    pub broken: bool,
}

impl Runner {
    pub fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        environ: EnvironBuilder,
        settings: &Settings,
        slot: SlotHandle,
    ) -> PyResult<Runner> {
        let log =
            super::core::access::RequestLog::new(settings, slot).map_err(pyo3::exceptions::PyValueError::new_err)?;
        Ok(Runner { app, environ, log, hooks: crate::hooks::RequestHooks::for_this_worker(py) })
    }

    /// Ok(None) when the request ended before the app was called (the
    /// connection must close); Err only when a signal handler raised.
    pub fn serve<'py>(&mut self, py: Python<'py>, ex: Exchange<'_>) -> PyResult<Option<Served<'py>>> {
        let head = ex.head;
        let in_flight = self.log.begin();
        // Gunicorn calls pre_request before anything else of the request;
        // if it raises, the request fails like an application error.
        let (hook_req, pre_request) = match &self.hooks {
            Some(h) => h.pre_request(py, head, ex.peer),
            None => (None, Ok(())),
        };
        let started = Instant::now();
        let mut sink = ex.sink;
        if let Some(answer) = ex.continue_ {
            // Gunicorn answers it before building the environ, whether or not
            // the app will read the body. Through the worker's sink, which
            // knows how to wait for the socket (a gevent worker parks the
            // greenlet; a blocking wait would stall the hub).
            match sink.write_all(py, &[answer]) {
                Ok(()) => {}
                Err(SinkError::Interrupted(e)) => return Err(e),
                Err(SinkError::Io(_)) => return Ok(None),
            }
        }
        let input = Bound::new(py, InputStream::new(ex.source))?;
        let info = RequestInfo {
            method_is_head: head.method == "HEAD",
            version: head.version,
            should_close: head.should_close(),
            http2: sink.takes_fields(),
            uwsgi: head.uwsgi.is_some(),
        };
        let response = Bound::new(py, WsgiResponse::new(info, ex.must_close, sink, ex.date))?;
        let early_hints = response.getattr(pyo3::intern!(py, "early_hints"))?;
        let view = RequestView { head, peer: ex.peer, proxy: ex.proxy, listener: ex.listener, tls: ex.stream.tls() };
        let environ = match self.environ.build(py, &view, input.as_any(), &early_hints) {
            Ok(env) => env,
            Err(EnvironError::Http(e)) => {
                log_refused(ex.peer, &e);
                send_error_page(py, &response, e.response().as_ref());
                return Ok(None);
            }
            Err(EnvironError::Py(e)) => return Err(e),
        };
        let outcome = match pre_request {
            Ok(()) => {
                let armed = super::timeout::arm(py, head);
                let outcome = call::run(py, self.app.bind(py), &environ, &response, &input);
                if let Some(armed) = armed {
                    super::timeout::disarm(py, armed);
                }
                outcome
            }
            Err(err) => Err(Failure::App { err, headers_sent: false }),
        };
        let mut answered: Option<ErrorResponse> = None;
        let broken = match outcome {
            Ok(()) => false,
            Err(Failure::Body(HttpError::NoMoreData)) => {
                crate::log::debug!("Ignored premature client disconnection. No more data after: b''");
                true
            }
            Err(Failure::Body(e)) => {
                if response.borrow().lock().headers_sent() {
                    log_refused(ex.peer, &e);
                } else {
                    answered = e.response();
                    log_refused(ex.peer, &e);
                    send_error_page(py, &response, answered.as_ref());
                }
                true
            }
            Err(Failure::ClientGone) => {
                crate::log::debug!("Ignoring EPIPE");
                true
            }
            Err(Failure::App { err, headers_sent }) if super::timeout::is_timeout(py, &err) => {
                // Where the handler was is logged already, once.
                if !headers_sent {
                    answered = Some(gateway_timeout());
                    send_error_page(py, &response, answered.as_ref());
                }
                true
            }
            Err(Failure::App { err, headers_sent }) => {
                let tb = crate::python::format_exception(py, &err);
                if headers_sent {
                    crate::log::exception!("Error handling request\n{tb}");
                } else {
                    crate::log::exception!("Error handling request {} {}\n{tb}", head.method, head.uri);
                    answered = Some(internal_error());
                    send_error_page(py, &response, answered.as_ref());
                }
                true
            }
        };
        let done = super::core::access::Finished {
            environ: &environ,
            head,
            peer: ex.peer,
            response: &response,
            error: answered.as_ref(),
            elapsed: started.elapsed(),
        };
        // Done before it is counted: a scrape that sees the request counted
        // must not see it in flight.
        drop(in_flight);
        self.log.record(py, &done);
        if let Some(h) = &self.hooks {
            h.post_request(py, hook_req.as_ref(), &environ, &response);
        }
        Ok(Some(Served { input, response, broken }))
    }
}

/// A handler interrupted by `--request-timeout` before it started a
/// response.
pub fn gateway_timeout() -> ErrorResponse {
    ErrorResponse { status: 504, reason: "Gateway Timeout", message: String::new() }
}

pub fn internal_error() -> ErrorResponse {
    ErrorResponse { status: 500, reason: "Internal Server Error", message: String::new() }
}

/// An error page for a request the app was (or was about to be) called
/// for, through the response's sink: the worker's own way of waiting for
/// the socket (a greenlet parks on the hub).
fn send_error_page(py: Python<'_>, response: &Bound<'_, WsgiResponse>, error: Option<&ErrorResponse>) {
    if let Some(e) = error {
        if response.borrow().lock().write_error_page(py, e).is_err() {
            crate::log::debug!("Failed to send error message.");
        }
    }
}

/// An error page written on a blocking socket (the sync worker, before a
/// request has a sink).
pub fn send_error(py: Python<'_>, stream: &Stream, error: Option<&ErrorResponse>) {
    if let Some(e) = error {
        if blocking::write_all(py, stream, &[&e.to_bytes()]).is_err() {
            crate::log::debug!("Failed to send error message.");
        }
    }
}

/// A request refused before (or instead of) the app: Gunicorn's log line
/// and its error page.
pub fn reject(py: Python<'_>, stream: &Stream, peer: Peer, e: &HttpError) {
    log_refused(peer, e);
    send_error(py, stream, e.response().as_ref());
}

/// The next bytes of `wsgi.input` from a connection's HTTP state: what is
/// buffered, decoded into `out`, then what `read_more` reads into its
/// buffer (each worker reads its socket its own way). False once the body
/// has ended.
pub fn fill_body(
    http: &mut ServerConn,
    out: &mut Vec<u8>,
    mut read_more: impl FnMut(&mut ServerConn) -> Result<(), BodyError>,
) -> Result<bool, BodyError> {
    loop {
        match http.read_body(out, usize::MAX).map_err(BodyError::Http)? {
            BodyRead::Data => return Ok(true),
            BodyRead::Complete => return Ok(false),
            BodyRead::NeedData => read_more(http)?,
        }
    }
}
