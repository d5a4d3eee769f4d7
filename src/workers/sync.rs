//! The `sync` worker: one connection at a time on the worker's main thread,
//! `Connection: close` after every response (Gunicorn's semantics), a
//! heartbeat at least every timeout/2 while idle. The GIL is held only to
//! run the app and its I/O callbacks.

use super::conn::{self, read_head, ConnError, Incoming, Lingerer, ReadBuf, SocketBody, SocketSink};
use super::{signals, WorkerCtx};
use crate::http::body::BodyDecoder;
use crate::http::date::DateCache;
use crate::http::error::{ErrorResponse, HttpError};
use crate::http::policy::HttpPolicy;
use crate::http::response::RequestInfo;
use crate::net::listener::Listener;
use crate::net::proxy_protocol::ProxyMode;
use crate::net::stream::{Peer, Stream};
use crate::wsgi::call::{self, Failure};
use crate::wsgi::environ::{EnvironBuilder, EnvironError, RequestView, TemplateOptions};
use crate::wsgi::input::InputStream;
use crate::wsgi::response::WsgiResponse;
use pyo3::prelude::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn serve(py: Python<'_>, ctx: &WorkerCtx, app: Py<PyAny>, policy: HttpPolicy, wakeup: signals::Wakeup) -> PyResult<()> {
    let mut worker = SyncWorker::new(py, ctx, app, policy)?;
    // Gunicorn waits timeout/2 between beats; with no timeout, 0.5 s keeps
    // the loop from spinning.
    let wait = match ctx.settings.timeout {
        0 => Duration::from_millis(500),
        t => Duration::from_millis(t as u64 * 500),
    };
    let mut fds: Vec<libc::pollfd> = ctx
        .listeners
        .iter()
        .map(|l| libc::pollfd { fd: l.fd(), events: libc::POLLIN, revents: 0 })
        .chain(std::iter::once(libc::pollfd { fd: wakeup.read_fd, events: libc::POLLIN, revents: 0 }))
        .collect();
    let fixed = fds.len();
    let mut linger = Lingerer::new();
    let result = (|| -> PyResult<()> {
        while signals::alive() {
            ctx.slot.beat();
            let mut served = false;
            for listener in &ctx.listeners {
                if let Some((stream, peer)) = listener.accept()? {
                    worker.handle(py, stream, peer, listener, &mut linger)?;
                    served = true;
                    ctx.slot.beat();
                    if !signals::alive() {
                        break;
                    }
                }
            }
            // Keep accepting while clients are waiting, without polling.
            if served {
                if linger.due() {
                    linger.service_now();
                }
                continue;
            }
            // SAFETY: getppid cannot fail.
            if ctx.ppid != unsafe { libc::getppid() } {
                crate::log::info!("Parent changed, shutting down: <Worker {}>", std::process::id());
                break;
            }
            fds.truncate(fixed);
            let linger_wait = linger.poll_set(&mut fds);
            let timeout = linger_wait.map_or(wait, |l| l.min(wait));
            let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
            let fds_ptr = fds.as_mut_ptr() as usize;
            let nfds = fds.len() as libc::nfds_t;
            // SAFETY: `fds` outlives the call and is not touched meanwhile.
            py.detach(|| unsafe { libc::poll(fds_ptr as *mut libc::pollfd, nfds, ms) });
            if !linger.is_empty() {
                linger.service(&fds[fixed..]);
            }
            wakeup.drain();
            py.check_signals()?;
        }
        Ok(())
    })();
    // Responses already sent still get their graceful close.
    py.detach(|| linger.finish());
    result
}

struct SyncWorker<'a> {
    ctx: &'a WorkerCtx,
    app: Py<PyAny>,
    policy: HttpPolicy,
    proxy_mode: ProxyMode,
    environ: EnvironBuilder,
    request_log: super::access::RequestLog,
    request_hooks: Option<crate::hooks::RequestHooks>,
    date: DateCache,
    served: u64,
}

impl<'a> SyncWorker<'a> {
    fn new(py: Python<'_>, ctx: &'a WorkerCtx, app: Py<PyAny>, policy: HttpPolicy) -> PyResult<Self> {
        let environ = EnvironBuilder::new(
            py,
            TemplateOptions { multithread: false, multiprocess: ctx.settings.workers > 1 },
        )?;
        let request_log =
            super::access::RequestLog::new(&ctx.settings).map_err(pyo3::exceptions::PyValueError::new_err)?;
        let request_hooks = crate::hooks::RequestHooks::for_this_worker(py);
        let proxy_mode = policy.proxy_protocol;
        Ok(SyncWorker { ctx, app, policy, proxy_mode, environ, request_log, request_hooks, date: DateCache::new(), served: 0 })
    }

    fn handle(
        &mut self,
        py: Python<'_>,
        stream: Stream,
        peer: Peer,
        listener: &Listener,
        linger: &mut Lingerer,
    ) -> PyResult<()> {
        let stream = Arc::new(stream);
        let mut buf = ReadBuf::new();
        let result = match read_head(py, &stream, &mut buf, &self.policy, peer, self.proxy_mode) {
            Ok(Some(incoming)) => self.handle_request(py, &stream, peer, listener, incoming, buf),
            Ok(None) => {
                crate::log::debug!("Closing connection.");
                Ok(())
            }
            Err(ConnError::Http(HttpError::NoMoreData)) => {
                crate::log::debug!("Ignored premature client disconnection. No more data after: b''");
                Ok(())
            }
            Err(ConnError::Http(e)) => {
                reject(py, &stream, peer, &e);
                Ok(())
            }
            Err(ConnError::Io(e)) => {
                log_socket_error(&e);
                Ok(())
            }
            Err(ConnError::Interrupted(e)) => Err(e),
        };
        linger.close(stream);
        result
    }

    fn handle_request(
        &mut self,
        py: Python<'_>,
        stream: &Arc<Stream>,
        peer: Peer,
        listener: &Listener,
        incoming: Incoming,
        buf: ReadBuf,
    ) -> PyResult<()> {
        let Incoming { head, proxy } = incoming;
        let (hook_req, pre_request) = match &self.request_hooks {
            Some(h) => h.pre_request(py, &head, peer),
            None => (None, Ok(())),
        };
        let started = Instant::now();
        self.served += 1;
        self.ctx.slot.requests.fetch_add(1, Ordering::Relaxed);
        if self.served >= self.ctx.max_requests {
            crate::log::info!("Autorestarting worker after current request.");
            signals::stop();
        }
        if head.expect_continue {
            if let Err(e) = conn::write_all(py, stream, &[b"HTTP/1.1 100 Continue\r\n\r\n"]) {
                return match e {
                    ConnError::Interrupted(e) => Err(e),
                    _ => Ok(()),
                };
            }
        }
        let decoder = BodyDecoder::new(&head.body, &self.policy);
        let input = Bound::new(py, InputStream::new(Box::new(SocketBody::new(stream.clone(), buf, decoder))))?;
        let info = RequestInfo { method_is_head: head.method == "HEAD", version: head.version, should_close: head.should_close() };
        let sink = Box::new(SocketSink::new(stream.clone(), self.ctx.settings.sendfile));
        // Gunicorn's sync worker closes every connection after one response.
        let response = Bound::new(py, WsgiResponse::new(info, true, sink, self.date.get()))?;
        let early_hints = response.getattr(pyo3::intern!(py, "early_hints"))?;
        let view = RequestView { head: &head, peer, proxy: proxy.as_ref(), listener: &listener.address };
        let environ = match self.environ.build(py, &view, input.as_any(), &early_hints) {
            Ok(env) => env,
            Err(EnvironError::Http(e)) => {
                reject(py, stream, peer, &e);
                return Ok(());
            }
            Err(EnvironError::Py(e)) => return Err(e),
        };
        let app = self.app.bind(py).clone();
        let outcome = match pre_request {
            Ok(()) => call::run(py, &app, &environ, &response, &input),
            Err(err) => Err(Failure::App { err, headers_sent: false }),
        };
        let mut error_status: Option<ErrorResponse> = None;
        match outcome {
            Ok(()) => {}
            Err(Failure::Body(HttpError::NoMoreData)) => {
                crate::log::debug!("Ignored premature client disconnection. No more data after: b''");
            }
            Err(Failure::Body(e)) => {
                if !response.borrow().lock().headers_sent() {
                    error_status = e.response();
                    reject(py, stream, peer, &e);
                } else {
                    crate::log::warning!("Invalid request from ip={}: {e}", ip_text(peer));
                }
            }
            Err(Failure::ClientGone) => crate::log::debug!("Ignoring EPIPE"),
            Err(Failure::App { err, headers_sent }) => {
                let tb = crate::python::format_exception(py, &err);
                if headers_sent {
                    crate::log::exception!("Error handling request\n{tb}");
                } else {
                    crate::log::exception!("Error handling request {} {}\n{tb}", head.method, head.uri);
                    error_status = Some(internal_error());
                    send_error(py, stream, error_status.as_ref());
                }
            }
        }
        let done = super::access::Finished {
            environ: &environ,
            head: &head,
            peer,
            response: &response,
            error: error_status.as_ref(),
            elapsed: started.elapsed(),
        };
        self.request_log.record(py, &done);
        if let Some(h) = &self.request_hooks {
            h.post_request(py, hook_req.as_ref(), &environ, &response);
        }
        Ok(())
    }
}

fn internal_error() -> ErrorResponse {
    ErrorResponse { status: 500, reason: "Internal Server Error", message: String::new() }
}

fn send_error(py: Python<'_>, stream: &Stream, error: Option<&ErrorResponse>) {
    if let Some(e) = error {
        if conn::write_all(py, stream, &[&e.to_bytes()]).is_err() {
            crate::log::debug!("Failed to send error message.");
        }
    }
}

fn ip_text(peer: Peer) -> String {
    match peer.ip() {
        Some(ip) => ip.to_string(),
        None => String::new(),
    }
}

/// A request refused before (or instead of) the app: Gunicorn's warning
/// and its error page.
fn reject(py: Python<'_>, stream: &Stream, peer: Peer, e: &HttpError) {
    crate::log::warning!("Invalid request from ip={}: {e}", ip_text(peer));
    send_error(py, stream, e.response().as_ref());
}

fn log_socket_error(e: &std::io::Error) {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => crate::log::debug!("Ignoring connection reset"),
        Some(libc::ENOTCONN) => crate::log::debug!("Ignoring socket not connected"),
        Some(libc::EPIPE) => crate::log::debug!("Ignoring EPIPE"),
        _ => crate::log::error!("Socket error processing request.\n{e}"),
    }
}
