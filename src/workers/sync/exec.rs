//! Where the sync worker runs the application: on its main thread, one
//! request per connection (Gunicorn's sync worker closes every connection
//! after one response).

use super::io::{SocketBody, SocketSink};
use crate::bridge::wsgi::environ::{EnvironBuilder, TemplateOptions};
use crate::http::conn::{Request, ServerConn};
use crate::http::date::DateCache;
use crate::net::listener::Address;
use crate::net::stream::{Peer, Stream};
use crate::scoreboard::SlotHandle;
use crate::workers::core::life::RequestBudget;
use crate::workers::wsgi_request::{Exchange, Runner};
use crate::workers::WorkerCtx;
use pyo3::prelude::*;
use std::sync::Arc;

pub struct Exec {
    runner: Runner,
    budget: RequestBudget,
    slot: SlotHandle,
    date: DateCache,
    sendfile: bool,
}

impl Exec {
    pub fn new(py: Python<'_>, ctx: &WorkerCtx, app: Py<PyAny>) -> PyResult<Exec> {
        let options = TemplateOptions { multithread: false, multiprocess: ctx.settings.workers > 1 };
        let environ = EnvironBuilder::new(py, options)?;
        let runner = Runner::new(py, app, environ, &ctx.settings, ctx.slot.clone())?;
        Ok(Exec {
            runner,
            budget: RequestBudget::new(ctx.max_requests),
            slot: ctx.slot.clone(),
            date: DateCache::new(),
            sendfile: ctx.settings.sendfile,
        })
    }

    /// Runs one request; the connection closes after it whatever happens.
    pub fn serve(
        &mut self,
        py: Python<'_>,
        stream: &Arc<Stream>,
        peer: Peer,
        listener: &Address,
        request: Box<Request>,
        mut http: ServerConn,
    ) -> PyResult<()> {
        self.budget.count(&self.slot);
        let continue_ = http.take_continue();
        let Request { head, proxy } = *request;
        let exchange = Exchange {
            head: &head,
            peer,
            proxy: proxy.as_ref(),
            listener,
            stream,
            source: Box::new(SocketBody::new(stream.clone(), http)),
            sink: Box::new(SocketSink::new(stream.clone(), self.sendfile && stream.tls().is_none())),
            must_close: true,
            date: self.date.get(),
            continue_,
        };
        self.runner.serve(py, exchange).map(|_| ())
    }
}
