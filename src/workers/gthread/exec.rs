//! What a Python thread of the gthread worker does with a request: run it
//! through the app, then decide what becomes of the connection — serve a
//! pipelined request right away, or hand it back to the engine to wait for
//! the next one, flush what is left of the response, drain an unread body,
//! or close it gracefully.

use super::io::{ConnBody, ConnSink};
use super::{Job, Shared};
use crate::http::date::DateCache;
use crate::workers::evconn::{After, Conn, Pending, Phase, Step, DRAIN_MAX};
use crate::workers::wsgi_request::{Exchange, Runner};
use crate::wsgi::environ::{EnvironBuilder, TemplateOptions};
use pyo3::prelude::*;
use std::sync::atomic::Ordering;

/// Response bytes a finished app may leave for the engine to send to a
/// slow client (per connection); past it the thread waits for the client.
pub const OUT_CAP: usize = 256 * 1024;

pub struct ThreadState {
    runner: Runner,
    date: DateCache,
}

impl ThreadState {
    pub fn new(py: Python<'_>, shared: &Shared) -> PyResult<ThreadState> {
        let environ =
            EnvironBuilder::new(py, TemplateOptions { multithread: true, multiprocess: shared.settings.workers > 1 })?;
        let runner = Runner::new(py, shared.app.clone_ref(py), environ, &shared.settings, shared.slot.clone())?;
        Ok(ThreadState { runner, date: DateCache::new() })
    }
}

/// Runs the job's request and any pipelined ones after it, then gives the
/// connection back to the engine.
pub fn run_job(py: Python<'_>, shared: &Shared, ts: &mut ThreadState, job: Job) {
    let Job { mut conn, pending } = job;
    let mut pending = Some(pending);
    while let Some(p) = pending.take() {
        if !serve_one(py, shared, ts, &mut conn, p) {
            break;
        }
        match conn.advance(&shared.policy) {
            Step::Dispatch(next) => pending = Some(next),
            Step::NeedRead => {}
            Step::Reject(e) => conn.reject(&e),
            Step::Done => conn.phase = Phase::Close,
        }
    }
    shared.give_back(conn);
}

/// One request. True when the connection is ready for the next request
/// (phase Head); otherwise its phase says what the engine must do.
fn serve_one(py: Python<'_>, shared: &Shared, ts: &mut ThreadState, conn: &mut Conn, pending: Box<Pending>) -> bool {
    let Pending { head, decoder, body, error } = *pending;
    conn.requests += 1;
    shared.slot.requests.fetch_add(1, Ordering::Relaxed);
    let served = shared.served.fetch_add(1, Ordering::Relaxed) + 1;
    if served >= shared.max_requests && !shared.draining.swap(true, Ordering::SeqCst) {
        crate::log::info!("Autorestarting worker after current request.");
        shared.slot.set_exit_reason(crate::scoreboard::counts::ExitReason::MaxRequests);
    }
    let must_close = shared.draining.load(Ordering::Relaxed)
        || shared.settings.keepalive <= 0
        || shared.idle.load(Ordering::Relaxed) >= shared.max_keepalived;
    let stream = conn.stream.clone();
    let buf = std::mem::take(&mut conn.buf);
    let exchange = Exchange {
        head: &head,
        peer: conn.peer,
        // The PROXY header speaks for the first request only, as in Gunicorn.
        proxy: if conn.requests == 1 { conn.proxy.as_ref() } else { None },
        listener: &shared.listeners[conn.listener].address,
        stream: &stream,
        source: Box::new(ConnBody::new(decoder, body, error, buf, stream.clone(), conn.eof)),
        sink: Box::new(ConnSink::new(stream.clone(), OUT_CAP, shared.settings.sendfile)),
        must_close,
        date: ts.date.get(),
    };
    let served = match ts.runner.serve(py, exchange) {
        Ok(Some(s)) => s,
        Ok(None) => {
            conn.start_linger();
            return false;
        }
        Err(e) => {
            // Only a signal handler raises here, and signals run on the
            // main thread: log and give up the connection.
            crate::log::error!("Error handling request\n{}", crate::python::format_exception(py, &e));
            conn.phase = Phase::Close;
            return false;
        }
    };

    // Take back the connection's bytes and what the client has not taken yet.
    let mut body_done = false;
    let mut body_failed = true;
    let mut decoder = None;
    if let Ok(body) = served.input.borrow().take_source().into_any().downcast::<ConnBody>() {
        let body = *body;
        conn.buf = body.buf;
        conn.eof = body.eof;
        if body.read_socket {
            conn.edge.readable = true;
        }
        body_failed = body.failed;
        body_done = body.decoder.is_done();
        decoder = Some(body.decoder);
    }
    let (leftover, should_close) = {
        let resp = served.response.borrow();
        let mut core = resp.lock();
        let leftover = match core.take_sink().into_any().downcast::<ConnSink>() {
            Ok(sink) => sink.pending,
            Err(_) => Vec::new(),
        };
        (leftover, core.should_close())
    };
    let mut keep_alive = !served.broken && !should_close && !body_failed && !conn.eof;

    // A body the app did not finish reading is discarded before the next
    // request can be parsed (Gunicorn's finish_body), within limits.
    let mut drain = None;
    if keep_alive && !body_done {
        match decoder {
            Some(mut d) => {
                let mut drained = 0;
                match conn.discard_body(&mut d, &mut drained) {
                    Ok(true) => {}
                    Ok(false) if drained <= DRAIN_MAX => drain = Some((d, drained)),
                    _ => keep_alive = false,
                }
            }
            None => keep_alive = false,
        }
    }

    if !leftover.is_empty() {
        // The sink keeps bytes only when the socket said EAGAIN: the
        // engine waits for the next writable edge.
        conn.edge.writable = false;
        conn.out = leftover;
        conn.out_pos = 0;
        // The engine sends the rest; a body still to drain after that is
        // not worth keeping the connection for.
        let after = if keep_alive && drain.is_none() { After::KeepAlive } else { After::Linger };
        conn.phase = Phase::Flush(after);
        return false;
    }
    if !keep_alive {
        conn.start_linger();
        return false;
    }
    if let Some((decoder, drained)) = drain {
        conn.phase = Phase::Drain { decoder: Box::new(decoder), drained };
        return false;
    }
    conn.phase = Phase::Head;
    true
}
