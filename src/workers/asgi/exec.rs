//! Where the asgi worker runs the application: one asyncio task per request
//! or WebSocket (an application call, Gunicorn's and uvicorn's "cycle"),
//! its state on the server, and what happens when it ends (500 page, cut
//! connection, access log, `post_request`).

use super::engine::AsgiServer;
use super::websocket::WsState;
use crate::bridge::asgi::awaitable::Ready;
use crate::bridge::asgi::response::AsgiResponse;
use crate::http::error::HttpError;
use crate::http::request::RequestHead;
use crate::net::stream::Peer;
use crate::workers::core::slab::{ConnToken, CycleKey, Slab};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::time::Instant;

/// Body bytes read ahead of the app's `receive()` calls, per request; past
/// it the connection is not read until the app takes them.
pub(super) const BODY_HIGH: usize = 64 * 1024;

/// How an application call ended.
pub(super) enum CallEnd {
    Returned,
    Raised(PyErr),
    Cancelled,
    /// SystemExit or KeyboardInterrupt went through the app (a timeout's
    /// ABRT, QUIT): the worker is going, the client gets no answer, as
    /// with Gunicorn's workers.
    Exiting,
}

/// One application call's state on the server.
pub(super) struct CycleState {
    pub(super) conn: ConnToken,
    pub(super) head: RequestHead,
    pub(super) peer: Peer,
    /// Body bytes read and not yet given to the app.
    pub(super) body: Vec<u8>,
    /// The whole body has been read (the app may not have taken it all).
    pub(super) body_read: bool,
    /// A framing error met while the engine read the body ahead.
    pub(super) body_error: Option<HttpError>,
    /// The body cannot be completed (framing error, truncated, the wait for
    /// it timed out): `receive()` says http.disconnect.
    pub(super) body_failed: bool,
    /// The app got `more_body: False`.
    pub(super) body_finished: bool,
    /// `receive()` calls waiting, oldest first.
    waiters: Vec<Py<PyAny>>,
    pub(super) wait_deadline: Option<Instant>,
    pub(super) response: AsgiResponse,
    pub(super) body_warned: bool,
    /// `send()` waiting for the client to take what is queued.
    drain: Option<Py<PyAny>>,
    pub(super) disconnected: bool,
    pub(super) task: Option<Py<PyAny>>,
    pub(super) cancel_at: Option<Instant>,
    pub(super) started: Instant,
    pub(super) hook_req: Option<Py<PyAny>>,
    pub(super) ws: Option<Box<WsState>>,
    /// HTTP/2: the call's stream.
    pub(super) h2: Option<std::sync::Arc<crate::http2::stream::StreamShared>>,
    /// HTTP/2: trailers announced by `http.response.start` (and those
    /// sent so far, with `more_trailers`).
    pub(super) h2_trailers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// HTTP/2: the stream's end was queued.
    pub(super) h2_ended: bool,
    /// HTTP/2: the request asked for `100-continue` and none went yet; the
    /// first `receive()` that finds no body answers it (as on HTTP/1).
    pub(super) h2_continue: bool,
    /// `--request-timeout`'s deadline (HTTP calls only), until it passes.
    timeout_at: Option<Instant>,
    /// The watchdog's copy, for a loop that never gets to the deadline.
    timeout_armed: Option<crate::workers::timeout::Armed>,
    /// The task was cancelled for running past `--request-timeout`.
    pub(super) timed_out: bool,
}

/// What a new application call starts with.
pub(super) struct CallStart {
    pub(super) conn: ConnToken,
    pub(super) head: RequestHead,
    pub(super) peer: Peer,
    pub(super) body: Vec<u8>,
    pub(super) body_read: bool,
    pub(super) body_error: Option<HttpError>,
    pub(super) now: Instant,
}

impl CycleState {
    pub(super) fn new(start: CallStart) -> CycleState {
        CycleState {
            conn: start.conn,
            head: start.head,
            peer: start.peer,
            body: start.body,
            body_read: start.body_read,
            body_error: start.body_error,
            body_failed: false,
            body_finished: false,
            waiters: Vec::new(),
            wait_deadline: None,
            response: AsgiResponse::default(),
            body_warned: false,
            drain: None,
            disconnected: false,
            task: None,
            cancel_at: None,
            started: start.now,
            hook_req: None,
            ws: None,
            h2: None,
            h2_trailers: None,
            h2_ended: false,
            h2_continue: false,
            timeout_at: None,
            timeout_armed: None,
            timed_out: false,
        }
    }

    /// The whole body arrived intact (the app may not have taken it all).
    pub(super) fn body_done(&self) -> bool {
        self.body_read && !self.body_failed && self.body_error.is_none()
    }

    /// The engine should read more of the body for the app.
    pub(super) fn wants_body(&self) -> bool {
        !self.body_read && !self.body_failed && self.body_error.is_none() && self.body.len() < BODY_HIGH
    }

    pub(super) fn add_waiter(&mut self, fut: Py<PyAny>) {
        self.waiters.push(fut);
    }

    pub(super) fn take_waiters(&mut self) -> Vec<Py<PyAny>> {
        self.wait_deadline = None;
        std::mem::take(&mut self.waiters)
    }

    pub(super) fn has_waiter(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// The first waiter still waiting (an app may cancel its receive()).
    pub(super) fn next_waiter(&mut self, py: Python<'_>) -> Option<Py<PyAny>> {
        while !self.waiters.is_empty() {
            let fut = self.waiters.remove(0);
            if !is_done(py, &fut) {
                if self.waiters.is_empty() {
                    self.wait_deadline = None;
                }
                return Some(fut);
            }
        }
        self.wait_deadline = None;
        None
    }

    pub(super) fn take_drain_waiter(&mut self) -> Option<Py<PyAny>> {
        self.drain.take()
    }

    pub(super) fn set_drain_waiter(&mut self, fut: Py<PyAny>) {
        self.drain = Some(fut);
    }

    pub(super) fn task_running(&self, py: Python<'_>) -> bool {
        self.task.as_ref().is_some_and(|t| !is_done(py, t))
    }

    pub(super) fn cancel(&mut self, py: Python<'_>) {
        self.cancel_at = None;
        if let Some(task) = &self.task {
            if let Err(e) = task.bind(py).call_method0("cancel") {
                crate::log::error!("{}", crate::python::format_exception(py, &e));
            }
        }
    }

    /// Resolves every waiting `receive()` with `message`.
    pub(super) fn answer_waiters(&mut self, py: Python<'_>, message: &Bound<'_, PyAny>) {
        for fut in self.take_waiters() {
            resolve(py, &fut, message.clone());
        }
    }
}

/// The application calls of one worker, by key, so that a `receive` or
/// `send` the app kept after its call ended finds nothing.
#[derive(Default)]
pub(super) struct Cycles {
    calls: Slab<CycleKey, CycleState>,
}

impl Cycles {
    pub(super) fn insert(&mut self, mut st: CycleState) -> CycleKey {
        // A WebSocket lives as long as its client wants: no deadline.
        if st.ws.is_none() {
            if let Some(limit) = crate::workers::timeout::limit() {
                st.timeout_at = Some(st.started + limit);
                st.timeout_armed = crate::workers::timeout::arm_task(&st.head);
            }
        }
        self.calls.insert(st)
    }

    pub(super) fn get(&self, key: CycleKey) -> Option<&CycleState> {
        self.calls.get(key)
    }

    pub(super) fn get_mut(&mut self, key: CycleKey) -> Option<&mut CycleState> {
        self.calls.get_mut(key)
    }

    pub(super) fn remove(&mut self, py: Python<'_>, key: CycleKey) -> Option<CycleState> {
        let mut st = self.calls.remove(key)?;
        if let Some(armed) = st.timeout_armed.take() {
            crate::workers::timeout::disarm(py, armed);
        }
        Some(st)
    }

    /// Cancels the calls past `--request-timeout`, logging where each was.
    pub(super) fn time_out_due(&mut self, py: Python<'_>, now: Instant, slot: &crate::scoreboard::SlotHandle) {
        let Some(limit) = crate::workers::timeout::limit() else { return };
        for (_, st) in self.calls.iter_mut() {
            if st.timeout_at.is_none_or(|d| d > now) {
                continue;
            }
            st.timeout_at = None;
            let Some(task) = st.task.as_ref().filter(|t| !is_done(py, t)) else { continue };
            let stack = crate::workers::timeout::task_stack(py, task.bind(py));
            crate::workers::timeout::log_timeout(&crate::workers::timeout::describe(&st.head), limit, &stack);
            crate::workers::timeout::count(slot);
            if let Some(armed) = &st.timeout_armed {
                crate::workers::timeout::task_fired(armed);
            }
            st.timed_out = true;
            st.cancel(py);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.calls.len()
    }

    /// Calls whose `receive()` waited too long for body bytes.
    pub(super) fn expired_waits(&self, now: Instant) -> Vec<CycleKey> {
        self.calls.keys_where(|st| st.wait_deadline.is_some_and(|d| d <= now))
    }

    /// Cancels the calls whose client left longer than the grace period ago.
    pub(super) fn cancel_due(&mut self, py: Python<'_>, now: Instant) {
        for (_, st) in self.calls.iter_mut() {
            if st.cancel_at.is_some_and(|d| d <= now) {
                st.cancel(py);
            }
        }
    }

    pub(super) fn cancel_all(&mut self, py: Python<'_>) {
        for (_, st) in self.calls.iter_mut() {
            if st.task_running(py) {
                st.cancel(py);
            }
        }
    }
}

pub(super) fn is_done(py: Python<'_>, fut: &Py<PyAny>) -> bool {
    fut.bind(py).call_method0(pyo3::intern!(py, "done")).and_then(|d| d.is_truthy()).unwrap_or(true)
}

/// Completes a future the app awaits, unless it is already done (an app
/// may cancel a wait, as anyio's cancel scopes do).
pub(super) fn resolve(py: Python<'_>, fut: &Py<PyAny>, value: Bound<'_, PyAny>) {
    if is_done(py, fut) {
        return;
    }
    if let Err(e) = fut.bind(py).call_method1(pyo3::intern!(py, "set_result"), (value,)) {
        crate::log::error!("{}", crate::python::format_exception(py, &e));
    }
}

/// An awaitable that is already complete with `value`.
pub(super) fn ready(py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    if value.is_none() {
        return crate::bridge::asgi::awaitable::done(py);
    }
    Ok(Py::new(py, Ready::new(value.unbind()))?.into_any())
}

/// The exception classes `send()` raises once the client is gone (ASGI
/// 2.4: a subclass of OSError).
pub(super) struct Errors {
    pub(super) client_disconnected: Py<PyAny>,
    pub(super) websocket_disconnected: Py<PyAny>,
}

impl Errors {
    pub(super) fn new(py: Python<'_>) -> PyResult<Errors> {
        let m = py.import("ferrocorn.errors")?;
        Ok(Errors {
            client_disconnected: m.getattr("ClientDisconnected")?.unbind(),
            websocket_disconnected: m.getattr("WebSocketDisconnected")?.unbind(),
        })
    }

    fn raise(class: &Py<PyAny>, py: Python<'_>, message: &str) -> PyErr {
        match class.bind(py).call1((message,)) {
            Ok(e) => PyErr::from_value(e),
            Err(e) => e,
        }
    }

    pub(super) fn client_gone(&self, py: Python<'_>) -> PyErr {
        Errors::raise(&self.client_disconnected, py, "client disconnected")
    }

    pub(super) fn websocket_gone(&self, py: Python<'_>) -> PyErr {
        Errors::raise(&self.websocket_disconnected, py, "WebSocket closed")
    }
}

/// An application call to start once the server is no longer borrowed
/// (the app's call may do anything, including calling back into it).
pub(super) struct TaskStart {
    pub(super) key: CycleKey,
    pub(super) scope: Py<PyDict>,
}

/// The app's `receive` and `send` for one call.
#[pyclass(module = "ferrocorn._ferrocorn", freelist = 64)]
pub struct Cycle {
    server: Py<AsgiServer>,
    key: CycleKey,
}

#[pymethods]
impl Cycle {
    fn receive(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let server = self.server.bind(py);
        let mut starts = Vec::new();
        let result = server.borrow_mut().receive(py, self.key, &mut starts);
        run_starts(py, server, starts);
        schedule_h2_flush(py, server);
        result
    }

    fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let server = self.server.bind(py);
        let mut starts = Vec::new();
        let result = server.borrow_mut().send(py, self.key, message, &mut starts);
        run_starts(py, server, starts);
        schedule_h2_flush(py, server);
        result
    }
}

/// The coroutine asyncio's task runs for one call: it drives the app's
/// coroutine and, when that ends, finishes the call on the spot (no done
/// callback, no extra trip through the loop). An app's exception ends here
/// too, logged as Gunicorn logs it, so the task itself completes normally;
/// a cancellation is passed on, so the task is cancelled as it should be.
#[pyclass(module = "ferrocorn._ferrocorn", freelist = 64)]
pub struct AppCall {
    server: Py<AsgiServer>,
    key: CycleKey,
    coro: Option<Py<PyAny>>,
}

/// What one step of the app's coroutine gave.
enum Stepped {
    Yielded(Py<PyAny>),
    Ended,
}

impl AppCall {
    fn step(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Stepped> {
        let Some(coro) = &self.coro else { return Ok(Stepped::Ended) };
        match crate::stable_abi::send(coro.bind(py), value) {
            crate::stable_abi::Sent::Yielded(v) => Ok(Stepped::Yielded(v.unbind())),
            crate::stable_abi::Sent::Returned => {
                self.end(py, CallEnd::Returned);
                Ok(Stepped::Ended)
            }
            crate::stable_abi::Sent::Raised(e) => self.failed(py, e),
        }
    }

    fn failed(&mut self, py: Python<'_>, err: PyErr) -> PyResult<Stepped> {
        if err.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>(py) {
            self.end(py, CallEnd::Cancelled);
            return Err(err);
        }
        if !err.is_instance_of::<pyo3::exceptions::PyException>(py) {
            // SystemExit, KeyboardInterrupt: the worker is stopping.
            self.end(py, CallEnd::Exiting);
            return Err(err);
        }
        self.end(py, CallEnd::Raised(err));
        Ok(Stepped::Ended)
    }

    fn end(&mut self, py: Python<'_>, end: CallEnd) {
        self.coro = None;
        complete(py, self.server.bind(py), self.key, end);
    }
}

#[pymethods]
impl AppCall {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The task's step (`PyIter_Send(coro, None)` takes this path).
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.step(py, &py.None().into_bound(py))? {
            Stepped::Yielded(v) => Ok(Some(v)),
            Stepped::Ended => Ok(None),
        }
    }

    fn send(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.step(py, value)? {
            Stepped::Yielded(v) => Ok(v),
            Stepped::Ended => Err(pyo3::exceptions::PyStopIteration::new_err(())),
        }
    }

    /// A cancellation (or another exception) thrown into the app.
    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        &mut self,
        py: Python<'_>,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let Some(coro) = self.coro.as_ref().map(|c| c.clone_ref(py)) else {
            return Err(pyo3::exceptions::PyStopIteration::new_err(()));
        };
        let args = match (val, tb) {
            (Some(v), Some(t)) => vec![typ.clone(), v.clone(), t.clone()],
            (Some(v), None) => vec![typ.clone(), v.clone()],
            _ => vec![typ.clone()],
        };
        let args = pyo3::types::PyTuple::new(py, args)?;
        match coro.bind(py).call_method1(pyo3::intern!(py, "throw"), args) {
            Ok(v) => Ok(v.unbind()),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => {
                self.end(py, CallEnd::Returned);
                Err(e)
            }
            Err(e) => match self.failed(py, e)? {
                Stepped::Yielded(v) => Ok(v),
                Stepped::Ended => Err(pyo3::exceptions::PyStopIteration::new_err(())),
            },
        }
    }

    /// The app's coroutine, for `--request-timeout`'s log of where the
    /// app waits (the task's own coroutine is this object, which has no
    /// frame).
    #[getter]
    fn app_coroutine(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.coro.as_ref().map(|c| c.clone_ref(py))
    }

    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(coro) = self.coro.take() {
            coro.bind(py).call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        if let Some(c) = &self.coro {
            visit.call(c)?;
        }
        visit.call(&self.server)
    }

    fn __clear__(&mut self) {
        self.coro = None;
    }
}

/// The end of an application call: the server's part, then the logs and
/// hooks.
fn complete(py: Python<'_>, server: &Bound<'_, AsgiServer>, key: CycleKey, end: CallEnd) {
    let mut starts = Vec::new();
    let st = server.borrow_mut().finished(py, key, &end, &mut starts);
    if let Some(st) = st {
        log_end(py, server, &st, &end);
        let is_ws = st.ws.is_some();
        if !is_ws && !matches!(end, CallEnd::Exiting) {
            server.borrow().log_request(py, &st);
        }
    }
    run_starts(py, server, starts);
    schedule_h2_flush(py, server);
}

/// HTTP/2 streams queued work (a response, window to give back, an end):
/// the connections are driven once the loop has run this round of tasks,
/// so that the work of many streams goes out together.
fn schedule_h2_flush(py: Python<'_>, server: &Bound<'_, AsgiServer>) {
    let call_soon = {
        let mut s = server.borrow_mut();
        if s.h2_flush_scheduled || !s.h2_work.has_work() {
            return;
        }
        let Ok(refs) = s.refs() else { return };
        let call_soon = refs.call_soon.clone_ref(py);
        s.h2_flush_scheduled = true;
        call_soon
    };
    let scheduled = server.getattr(pyo3::intern!(py, "flush_h2")).and_then(|f| call_soon.bind(py).call1((f,)));
    if let Err(e) = scheduled {
        crate::log::error!("{}", crate::python::format_exception(py, &e));
        server.borrow_mut().h2_flush_scheduled = false;
        // The loop comes back through the wake-up fd instead.
        server.borrow().h2_work.wake.wake();
    }
}

/// The error-log line for how a call ended, as Gunicorn's ASGI worker
/// writes it.
fn log_end(py: Python<'_>, server: &Bound<'_, AsgiServer>, st: &CycleState, end: &CallEnd) {
    let is_ws = st.ws.is_some();
    match end {
        CallEnd::Cancelled if st.timed_out => {}
        CallEnd::Cancelled => crate::log::debug!("Request cancelled (client disconnected)"),
        CallEnd::Exiting | CallEnd::Returned => {}
        CallEnd::Raised(err) => {
            let gone = st.disconnected || err.is_instance(py, server.borrow().errors.client_disconnected.bind(py));
            if gone {
                crate::log::debug!("Exception after the client disconnected");
            } else if !is_ws && st.response.complete {
                crate::log::debug!("Exception after response complete (client disconnected)");
            } else {
                let what = if is_ws { "Error in WebSocket ASGI application" } else { "Error in ASGI application" };
                crate::log::exception!("{what}\n{}", crate::python::format_exception(py, err));
            }
        }
    }
}

impl AsgiServer {
    /// The access-log line (statsd, a Python logger) and `post_request`.
    fn log_request(&self, py: Python<'_>, st: &CycleState) {
        // Gunicorn logs 500 for a request that got no response (an app
        // that failed, returned without one, or was cancelled).
        let status = match (st.response.started, st.timed_out) {
            (true, _) => st.response.status,
            (false, true) => 504,
            (false, false) => 500,
        };
        let done = crate::workers::core::access::AsgiFinished {
            head: &st.head,
            peer: st.peer,
            status,
            headers: &st.response.headers,
            sent: st.response.sent,
            elapsed: st.started.elapsed(),
        };
        self.log.record_asgi(py, &done);
        if let (Some(h), Some(req)) = (&self.hooks, &st.hook_req) {
            h.post_request_asgi(py, req.bind(py), &done);
        }
    }
}

/// Hands requests to the app: `app(scope, receive, send)` in a new task.
/// Called with the server not borrowed (the app's call may do anything).
pub(super) fn run_starts(py: Python<'_>, server: &Bound<'_, AsgiServer>, starts: Vec<TaskStart>) {
    for TaskStart { key, scope } in starts {
        if let Err(e) = start_one(py, server, key, scope) {
            complete(py, server, key, CallEnd::Raised(e));
        }
    }
}

fn start_one(py: Python<'_>, server: &Bound<'_, AsgiServer>, key: CycleKey, scope: Py<PyDict>) -> PyResult<()> {
    let (app, create_task) = {
        let s = server.borrow();
        (s.app.clone_ref(py), s.refs()?.create_task.clone_ref(py))
    };
    let pre = {
        let s = server.borrow();
        match (&s.hooks, s.cycles.get(key)) {
            (Some(h), Some(st)) if st.ws.is_none() => Some(h.pre_request(py, &st.head, st.peer)),
            _ => None,
        }
    };
    if let Some((req, result)) = pre {
        if let Some(st) = server.borrow_mut().cycles.get_mut(key) {
            st.hook_req = req.map(Bound::unbind);
        }
        result?;
    }
    let cycle = Bound::new(py, Cycle { server: server.clone().unbind(), key })?;
    let receive = cycle.getattr(pyo3::intern!(py, "receive"))?;
    let send = cycle.getattr(pyo3::intern!(py, "send"))?;
    let coro = app.bind(py).call1((scope, receive, send))?;
    let call = Py::new(py, AppCall { server: server.clone().unbind(), key, coro: Some(coro.unbind()) })?;
    let task = create_task.bind(py).call1((call,))?;
    if let Some(st) = server.borrow_mut().cycles.get_mut(key) {
        st.task = Some(task.unbind());
    }
    Ok(())
}
