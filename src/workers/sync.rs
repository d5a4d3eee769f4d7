//! The `sync` worker: one connection at a time on the worker's main thread,
//! `Connection: close` after every response (Gunicorn's semantics), a
//! heartbeat at least every timeout/2 while idle. The GIL is held only to
//! run the app and its I/O callbacks.

use super::conn::{read_head, ConnError, Incoming, Lingerer, ReadBuf, SocketBody, SocketSink};
use super::wsgi_request::{log_socket_error, reject, Exchange, Runner};
use super::{core::signals, WorkerCtx};
use crate::http::body::BodyDecoder;
use crate::http::date::DateCache;
use crate::http::error::HttpError;
use crate::http::policy::HttpPolicy;
use crate::net::listener::Listener;
use crate::net::proxy_protocol::ProxyMode;
use crate::net::stream::{Peer, Stream};
use crate::scoreboard::counts::ExitReason;
use crate::wsgi::environ::{EnvironBuilder, TemplateOptions};
use pyo3::prelude::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub fn serve(
    py: Python<'_>,
    ctx: &WorkerCtx,
    app: Py<PyAny>,
    policy: HttpPolicy,
    wakeup: signals::Wakeup,
) -> PyResult<()> {
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
    runner: Runner,
    policy: HttpPolicy,
    proxy_mode: ProxyMode,
    date: DateCache,
    served: u64,
}

impl<'a> SyncWorker<'a> {
    fn new(py: Python<'_>, ctx: &'a WorkerCtx, app: Py<PyAny>, policy: HttpPolicy) -> PyResult<Self> {
        let environ =
            EnvironBuilder::new(py, TemplateOptions { multithread: false, multiprocess: ctx.settings.workers > 1 })?;
        let proxy_mode = policy.proxy_protocol;
        let runner = Runner::new(py, app, environ, &ctx.settings, ctx.slot.clone())?;
        Ok(SyncWorker { ctx, runner, policy, proxy_mode, date: DateCache::new(), served: 0 })
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
        self.served += 1;
        self.ctx.slot.requests.fetch_add(1, Ordering::Relaxed);
        if self.served >= self.ctx.max_requests {
            crate::log::info!("Autorestarting worker after current request.");
            self.ctx.slot.set_exit_reason(ExitReason::MaxRequests);
            signals::stop();
        }
        let decoder = BodyDecoder::new(&head.body, &self.policy);
        let exchange = Exchange {
            head: &head,
            peer,
            proxy: proxy.as_ref(),
            listener: &listener.address,
            stream,
            source: Box::new(SocketBody::new(stream.clone(), buf, decoder)),
            sink: Box::new(SocketSink::new(stream.clone(), self.ctx.settings.sendfile)),
            // Gunicorn's sync worker closes every connection after one response.
            must_close: true,
            date: self.date.get(),
        };
        self.runner.serve(py, exchange).map(|_| ())
    }
}
