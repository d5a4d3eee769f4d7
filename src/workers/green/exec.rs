//! Where the green worker runs the application: one greenlet per request,
//! spawned on the hub by the engine. The greenlet runs the request through
//! the shared WSGI path (`wsgi_request::Runner`), gives the connection back
//! to the engine, and serves a pipelined request at once if one is there.
//!
//! A greenlet may switch away whenever the app waits on patched I/O, and
//! another greenlet then runs a request of its own through here: nothing is
//! borrowed across the app call (each request takes a `Runner` from the
//! pool and the server is borrowed only to give the connection back).

use super::engine::{dispatch, GreenServer, Shared, Start};
use super::h2::serve_stream;
use super::io::{GreenBody, GreenSink};
use crate::bridge::wsgi::environ::{EnvironBuilder, TemplateOptions};
use crate::http::conn::Request;
use crate::net::proxy_protocol::ProxyInfo;
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use crate::workers::core::conn::{Conn, Inbound};
use crate::workers::core::signals;
use crate::workers::wsgi_request::{Exchange, Runner, Served};
use pyo3::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

/// Response bytes a finished app may leave for the engine to send to a
/// slow client (per connection); past it the greenlet waits for the client.
pub const OUT_CAP: usize = 256 * 1024;

/// The request runners not in use: a greenlet takes one for a request and
/// puts it back after, so requests in progress at once each have their own
/// (a runner is one request's environ template, hooks and access log).
pub struct Runners {
    idle: RefCell<Vec<Runner>>,
    app: Py<PyAny>,
    settings: std::sync::Arc<Settings>,
    slot: SlotHandle,
}

impl Runners {
    pub fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        settings: &std::sync::Arc<Settings>,
        slot: SlotHandle,
    ) -> PyResult<Runners> {
        let runners = Runners { idle: RefCell::new(Vec::new()), app, settings: settings.clone(), slot };
        // One made now, so a broken access-log format fails at boot.
        let first = runners.make(py)?;
        runners.idle.borrow_mut().push(first);
        Ok(runners)
    }

    fn make(&self, py: Python<'_>) -> PyResult<Runner> {
        // Gunicorn's async workers set wsgi.multithread: requests of one
        // worker run concurrently.
        let options = TemplateOptions { multithread: true, multiprocess: self.settings.workers > 1 };
        let environ = EnvironBuilder::new(py, options)?;
        Runner::new(py, self.app.clone_ref(py), environ, &self.settings, self.slot.clone())
    }

    pub(super) fn take(&self, py: Python<'_>) -> PyResult<Runner> {
        let idle = self.idle.borrow_mut().pop();
        match idle {
            Some(r) => Ok(r),
            None => self.make(py),
        }
    }

    pub(super) fn put(&self, runner: Runner) {
        self.idle.borrow_mut().push(runner);
    }
}

/// A request and its connection, handed to a new greenlet.
#[pyclass(module = "ferrocorn._ferrocorn", unsendable)]
pub struct Job {
    server: Py<GreenServer>,
    shared: Rc<Shared>,
    start: Option<Start>,
}

impl Job {
    pub fn new(server: Py<GreenServer>, shared: Rc<Shared>, start: Start) -> Job {
        Job { server, shared, start: Some(start) }
    }
}

#[pymethods]
impl Job {
    /// Runs the request, and any pipelined ones after it, in the calling
    /// greenlet. Err only when a signal handler raised (ABRT's SystemExit)
    /// or the greenlet was killed while it waited.
    fn run(&mut self, py: Python<'_>) -> PyResult<()> {
        let mut next = self.start.take();
        while let Some(start) = next.take() {
            let (mut conn, inbound) = match start {
                Start::Http1 { conn, inbound } => (conn, inbound),
                // The engine drives the stream's connection: nothing to
                // give back.
                Start::Stream(stream) => return serve_stream(py, &self.shared, *stream),
            };
            let outcome = serve_one(py, &self.shared, &mut conn, inbound);
            let server = self.server.bind(py);
            // Only this greenlet runs now, and the engine never switches
            // while borrowed, so the borrow cannot fail; if it did, the
            // connection is dropped (closed) rather than the worker.
            next = match server.try_borrow_mut() {
                Ok(mut server) => server.give_back(conn),
                Err(e) => {
                    crate::log::error!("connection lost: {e}");
                    None
                }
            };
            // A stop the connection's return began may have made work.
            dispatch(py, server);
            outcome?;
        }
        Ok(())
    }
}

/// One request. Err only when a signal handler raised or the hub threw
/// into the greenlet; the connection is then given up.
fn serve_one(py: Python<'_>, shared: &Shared, conn: &mut Conn, inbound: Inbound) -> PyResult<()> {
    let Some(hub) = shared.hub.get() else {
        conn.abandon();
        return Ok(());
    };
    shared.budget.count(&shared.slot);
    let must_close = !signals::alive()
        || shared.settings.keepalive.is_zero()
        || shared.budget.exhausted()
        || shared.shed.replace(shared.shed.get().saturating_sub(1)) > 0;
    let stream = conn.stream.clone();
    let continue_ = conn.http.take_continue();
    let Inbound { request, body, error } = inbound;
    let Request { head, proxy } = *request;
    let proxy = remembered_proxy(shared, conn.token.index(), proxy);
    // Copied: the cache must not stay borrowed while the app may switch.
    let date = shared.date.borrow_mut().get().to_vec();
    // The connection's HTTP state goes with the body to the app, and back.
    let http = std::mem::take(&mut conn.http);
    let exchange = Exchange {
        head: &head,
        peer: conn.peer,
        proxy: proxy.as_ref(),
        listener: &shared.listeners[conn.listener].address,
        stream: &stream,
        source: Box::new(GreenBody::new(http, body, error, stream.clone(), hub.waits.clone_ref(py))),
        sink: Box::new(GreenSink::new(
            stream.clone(),
            OUT_CAP,
            // sendfile(2) cannot encrypt: over TLS the file is read and sent.
            shared.settings.sendfile && stream.tls().is_none(),
            hub.waits.write.clone_ref(py),
        )),
        must_close,
        date: &date,
        continue_,
    };
    let mut runner = shared.runners.take(py)?;
    let served = runner.serve(py, exchange);
    shared.runners.put(runner);
    match served {
        Ok(Some(served)) => {
            take_back(conn, &served);
            Ok(())
        }
        Ok(None) => {
            // Ended before the app (an answer was sent instead): the
            // connection's state stayed with the request; close.
            conn.http.end();
            Ok(())
        }
        Err(e) => {
            conn.abandon();
            Err(e)
        }
    }
}

/// The PROXY header of this request, or the one the connection began with
/// (Gunicorn's async workers keep it for the connection's later requests).
fn remembered_proxy(shared: &Shared, slot: usize, proxy: Option<ProxyInfo>) -> Option<ProxyInfo> {
    let mut proxies = shared.proxies.borrow_mut();
    let Some(kept) = proxies.get_mut(slot) else { return proxy };
    match proxy {
        Some(p) => {
            *kept = Some(p.clone());
            Some(p)
        }
        None => kept.clone(),
    }
}

/// After the app: the connection takes back its HTTP state and what the
/// client has not taken yet, and learns whether it can be reused.
fn take_back(conn: &mut Conn, served: &Served<'_>) {
    match served.input.borrow().take_source().into_any().downcast::<GreenBody>() {
        Ok(body) => {
            let body = *body;
            conn.http = body.http;
            if body.read_socket {
                conn.edge.readable = true;
            }
        }
        Err(_) => conn.http.end(),
    }
    let (leftover, should_close) = {
        let resp = served.response.borrow();
        let mut core = resp.lock();
        let leftover = core.take_sink().into_any().downcast::<GreenSink>().ok().map(|sink| sink.pending);
        (leftover, core.should_close())
    };
    conn.http.response_complete(!served.broken && !should_close);
    if let Some(queue) = leftover.filter(|q| !q.is_empty()) {
        // The sink keeps bytes only when the socket said EAGAIN: the
        // engine waits for the next writable edge.
        conn.edge.writable = false;
        conn.out = queue;
    }
}
