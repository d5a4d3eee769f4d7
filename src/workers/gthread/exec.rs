//! What a Python thread of the gthread worker does with a request: run it
//! through the app, then settle the connection: serve a pipelined request
//! right away, or hand it back to the engine (to wait for the next request,
//! send what is left of the response, drain an unread body, or close).

use super::io::{ConnBody, ConnSink};
use super::{Job, Shared, StreamJob};
use crate::bridge::wsgi::environ::{EnvironBuilder, TemplateOptions};
use crate::bridge::wsgi::h2::{body_wait, H2Body, H2Sink, ThreadWait, DEFAULT_BODY_WAIT};
use crate::http::conn::Request;
use crate::http::date::DateCache;
use crate::http2::stream::Out;
use crate::workers::core::conn::{BufferPool, Conn, Inbound, Progress};
use crate::workers::core::signals;
use crate::workers::wsgi_request::{Exchange, Runner, Served};
use pyo3::prelude::*;
use std::sync::atomic::Ordering;

/// Response bytes a finished app may leave for the engine to send to a
/// slow client (per connection); past it the thread waits for the client.
pub const OUT_CAP: usize = 256 * 1024;

pub struct ThreadState {
    runner: Runner,
    date: DateCache,
    /// Threads read no buffers ahead: they lend none.
    no_buffers: BufferPool,
}

impl ThreadState {
    pub fn new(py: Python<'_>, shared: &Shared) -> PyResult<ThreadState> {
        let options = TemplateOptions { multithread: true, multiprocess: shared.settings.workers > 1 };
        let environ = EnvironBuilder::new(py, options)?;
        let runner = Runner::new(py, shared.app.clone_ref(py), environ, &shared.settings, shared.slot.clone())?;
        Ok(ThreadState { runner, date: DateCache::new(), no_buffers: BufferPool::default() })
    }
}

/// Runs the job's request and any pipelined ones after it, then gives the
/// connection back to the engine.
pub fn run_job(py: Python<'_>, shared: &Shared, ts: &mut ThreadState, job: Job) {
    let (mut conn, inbound) = match job {
        Job::Http1 { conn, inbound } => (conn, inbound),
        Job::Stream(job) => return serve_stream(py, shared, ts, *job),
    };
    let mut next = Some(inbound);
    while let Some(inbound) = next.take() {
        if !serve_one(py, shared, ts, &mut conn, inbound) {
            break;
        }
        match conn.progress(&shared.policy, &mut ts.no_buffers) {
            Progress::Dispatch(inbound) => next = Some(inbound),
            Progress::Keep => {}
            // HTTP/2 starts before a first request, never after one.
            Progress::Close | Progress::Http2 => conn.abandon(),
        }
    }
    shared.give_back(conn);
}

/// One request. True when the connection can go on to the next request
/// now (nothing left to send).
fn serve_one(py: Python<'_>, shared: &Shared, ts: &mut ThreadState, conn: &mut Conn, inbound: Inbound) -> bool {
    shared.budget.count(&shared.slot);
    let must_close = !signals::alive()
        || shared.settings.keepalive.is_zero()
        || shared.idle.load(Ordering::Relaxed) >= shared.max_keepalived
        || shared.shed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok();
    let stream = conn.stream.clone();
    let continue_ = conn.http.take_continue();
    let Inbound { request, body, error } = inbound;
    let Request { head, proxy } = *request;
    // The connection's HTTP state goes with the body to the app, and back.
    let http = std::mem::take(&mut conn.http);
    let exchange = Exchange {
        head: &head,
        peer: conn.peer,
        proxy: proxy.as_ref(),
        listener: &shared.listeners[conn.listener].address,
        stream: &stream,
        source: Box::new(ConnBody::new(http, body, error, stream.clone())),
        sink: Box::new(ConnSink::new(stream.clone(), OUT_CAP, shared.settings.sendfile && stream.tls().is_none())),
        must_close,
        date: ts.date.get(),
        continue_,
    };
    match ts.runner.serve(py, exchange) {
        Ok(Some(served)) => take_back(conn, &served),
        Ok(None) => {
            // Ended before the app (an answer was sent instead): the
            // connection's state stayed with the request; close.
            conn.http.end();
            false
        }
        Err(e) => {
            // Only a signal handler raises here, and signals run on the
            // main thread: log and give up the connection.
            crate::log::error!("Error handling request\n{}", crate::python::format_exception(py, &e));
            conn.abandon();
            false
        }
    }
}

/// After the app: the connection takes back its HTTP state and what the
/// client has not taken yet, and learns whether it can be reused. True
/// when it can go on to the next request now.
fn take_back(conn: &mut Conn, served: &Served<'_>) -> bool {
    match served.input.borrow().take_source().into_any().downcast::<ConnBody>() {
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
        let leftover = core.take_sink().into_any().downcast::<ConnSink>().ok().map(|sink| sink.pending);
        (leftover, core.should_close())
    };
    conn.http.response_complete(!served.broken && !should_close);
    match leftover {
        Some(queue) if !queue.is_empty() => {
            // The sink keeps bytes only when the socket said EAGAIN: the
            // engine waits for the next writable edge.
            conn.edge.writable = false;
            conn.out = queue;
            false
        }
        _ => !conn.http.is_lingering(),
    }
}

/// One HTTP/2 stream through the app. The connection stays with the engine;
/// the body and the response go through the stream.
fn serve_stream(py: Python<'_>, shared: &Shared, ts: &mut ThreadState, job: StreamJob) {
    shared.budget.count(&shared.slot);
    let StreamJob { stream, head, peer, listener, proxy, socket } = job;
    let settings = &shared.settings;
    let body_wait = body_wait(settings.timeout);
    let stall = shared.h2.as_ref().map_or(DEFAULT_BODY_WAIT, |h2| h2.config.stall);
    let exchange = Exchange {
        head: &head,
        peer,
        proxy: proxy.as_ref(),
        listener: &shared.listeners[listener].address,
        stream: &socket,
        source: Box::new(H2Body::new(stream.clone(), ThreadWait, body_wait, head.expect_continue)),
        sink: Box::new(H2Sink::new(stream.clone(), ThreadWait, stall)),
        must_close: false,
        date: ts.date.get(),
        continue_: None,
    };
    let served = match ts.runner.serve(py, exchange) {
        Ok(Some(served)) => !served.broken,
        Ok(None) => true,
        Err(e) => {
            crate::log::error!("Error handling request\n{}", crate::python::format_exception(py, &e));
            false
        }
    };
    // A response that did not end (the app broke off after its head, or
    // the stream was answered nothing) is cut off, not left open.
    if (!served || !stream.finished()) && stream.gone().is_none() {
        let _ = stream.send([Out::Reset]);
    }
}
