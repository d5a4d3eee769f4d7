//! Calls between callers and lanes: routing a request to a free thread of
//! a worker that loads its app (or queueing it), relaying what the worker
//! sends back to the caller, and ending a call: answered, timed out, its
//! worker gone, or its caller gone (the worker is told to stop a stream).

use super::callers::{CallerState, Pending};
use super::relay::Piece;
use super::sockio::{self, Read};
use super::{answers, Arbiter, CallerKey};
use crate::dirty::wire::frame::{self, Header, Kind, HEADER_LEN};
use crate::dirty::wire::tlv::Value;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A lane's caller may have this much of its answer waiting to be sent
/// before the lane stops being read (the worker's thread then waits).
const CALLER_HIGH_WATER: usize = 256 * 1024;
/// Reads from one lane per turn, at most, so one busy stream cannot hold
/// the loop.
const READS_PER_TURN: usize = 16;

pub enum LaneState {
    Idle,
    Busy(Call),
    /// Its caller went away: what the worker still sends for this call is
    /// read and dropped.
    Draining {
        call: u64,
        app: String,
        started: Instant,
        /// When the worker last sent something for it: a call left behind
        /// that hangs is timed out like any other.
        last: Instant,
    },
    /// The worker's thread is stuck or gone: nothing is sent to it again.
    Dead,
}

pub struct Call {
    pub caller: CallerKey,
    /// The caller's request id (the lane carries the arbiter's number).
    pub id: u64,
    pub seq: u64,
    pub app: String,
    pub action: String,
    pub started: Instant,
    /// When the worker last sent something for it.
    pub last: Instant,
    /// Part of a frame has been passed to the caller: nothing else may be
    /// written to the caller until the frame is complete.
    pub mid_frame: bool,
}

impl Arbiter {
    pub(super) fn lane_interest(&self, lane: &super::pool::Lane) -> Option<i16> {
        let mut events = 0;
        if lane.out.pending() > 0 {
            events |= libc::POLLOUT;
        }
        match &lane.state {
            LaneState::Dead => {}
            LaneState::Busy(call) => {
                let backed_up = self.callers.get(call.caller).is_some_and(|c| c.out.pending() > CALLER_HIGH_WATER);
                if !backed_up {
                    events |= libc::POLLIN;
                }
            }
            _ => events |= libc::POLLIN,
        }
        (events != 0).then_some(events)
    }

    fn app_index(&self, path: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.path == path)
    }

    /// A worker serving now loads the app (it may still be booting).
    fn servable(&self, bit: u64) -> bool {
        self.workers.values().any(|w| w.serving() && w.mask & bit != 0)
    }

    /// A request read whole from a caller.
    pub(super) fn route(&mut self, key: CallerKey, id: u64, frame: Vec<u8>) {
        let fields = match crate::dirty::wire::tlv::call_fields(&frame[HEADER_LEN..]) {
            Ok(f) => (f.app_path.map(str::to_owned), f.action.unwrap_or_default().to_owned()),
            Err(e) => {
                // Gunicorn drops a connection that sends what it cannot read.
                crate::log::error!("Dirty client connection error: {e}");
                self.drop_caller(key);
                return;
            }
        };
        let (app_path, action) = fields;
        if self.stopping.is_some() {
            self.reply(key, Kind::Error, id, &answers::error_payload(answers::shutting_down()));
            return;
        }
        let Some(path) = app_path else {
            self.reply(key, Kind::Error, id, &answers::error_payload(answers::app_not_found(None)));
            return;
        };
        let bit = self.app_index(&path).map_or(0, |i| 1u64 << i);
        if bit == 0 || !self.servable(bit) {
            self.board.head().unrouted.fetch_add(1, Ordering::Relaxed);
            let err = if self.workers.values().any(|w| w.serving()) {
                answers::no_workers_for(&path)
            } else {
                answers::no_workers()
            };
            self.reply(key, Kind::Error, id, &answers::error_payload(err));
            return;
        }
        let pending = Pending { frame, id, app: path, action, since: Instant::now() };
        match self.free_lane(bit) {
            Some((pid, lane)) => self.start_call(key, pid, lane, pending),
            None => {
                self.board.head().queued.fetch_add(1, Ordering::Relaxed);
                self.buffered += pending.frame.len();
                if let Some(c) = self.callers.get_mut(key) {
                    c.state = CallerState::Queued(pending);
                }
                self.queue.push_back(key);
            }
        }
    }

    /// A free thread of a worker that loads the app: the new generation
    /// before the old after a HUP, round-robin among workers.
    fn free_lane(&mut self, bit: u64) -> Option<(i32, usize)> {
        let pids = self.worker_pids_by_age();
        let app = bit.trailing_zeros() as usize;
        let start = self.rr.get(app).copied().unwrap_or(0);
        for outdated in [false, true] {
            for n in 0..pids.len() {
                let at = (start + n) % pids.len();
                let Some(w) = self.workers.get(&pids[at]) else { continue };
                if !w.serving() || w.outdated != outdated || w.mask & bit == 0 {
                    continue;
                }
                if let Some(i) = w.lanes.iter().position(|l| l.ready && matches!(l.state, LaneState::Idle)) {
                    if let Some(r) = self.rr.get_mut(app) {
                        *r = at + 1;
                    }
                    return Some((pids[at], i));
                }
            }
        }
        None
    }

    fn start_call(&mut self, key: CallerKey, pid: i32, lane_index: usize, p: Pending) {
        let seq = self.next_call;
        self.next_call += 1;
        let mut frame = p.frame;
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&frame[..HEADER_LEN]);
        frame::set_id(&mut head, seq);
        frame[..HEADER_LEN].copy_from_slice(&head);
        let now = Instant::now();
        let app_slot = self.app_index(&p.app);
        let Some(w) = self.workers.get_mut(&pid) else { return };
        let slot = w.slot;
        let Some(lane) = w.lanes.get_mut(lane_index) else { return };
        lane.out.push(&frame);
        let flushed = lane.out.flush(lane.fd());
        lane.state = LaneState::Busy(Call {
            caller: key,
            id: p.id,
            seq,
            app: p.app,
            action: p.action,
            started: p.since,
            last: now,
            mid_frame: false,
        });
        if let Some(c) = self.callers.get_mut(key) {
            c.state = CallerState::Calling { pid, lane: lane_index };
        }
        if let Some(s) = self.board.worker(slot) {
            s.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(a) = app_slot.and_then(|i| self.board.app(i)) {
            a.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        if flushed.is_err() {
            self.lane_closed(pid, lane_index, "its socket failed");
        }
    }

    /// Queued calls to free threads, oldest first.
    pub(super) fn dispatch(&mut self) {
        let mut i = 0;
        while i < self.queue.len() {
            let key = self.queue[i];
            let bit = match self.callers.get(key).map(|c| &c.state) {
                Some(CallerState::Queued(p)) => self.app_index(&p.app).map_or(0, |i| 1u64 << i),
                _ => {
                    // Gone, or no longer waiting.
                    self.queue.remove(i);
                    continue;
                }
            };
            match self.free_lane(bit) {
                Some((pid, lane)) => {
                    self.queue.remove(i);
                    self.board.head().queued.fetch_sub(1, Ordering::Relaxed);
                    let pending = match self
                        .callers
                        .get_mut(key)
                        .map(|c| std::mem::replace(&mut c.state, CallerState::Reading))
                    {
                        Some(CallerState::Queued(p)) => p,
                        _ => continue,
                    };
                    self.buffered = self.buffered.saturating_sub(pending.frame.len());
                    self.start_call(key, pid, lane, pending);
                }
                None => i += 1,
            }
        }
    }

    /// Queued calls end with an error where `why` gives one.
    pub(super) fn fail_queue(&mut self, why: impl Fn(&Pending) -> Option<Value>) {
        let mut keep = std::collections::VecDeque::with_capacity(self.queue.len());
        while let Some(key) = self.queue.pop_front() {
            let err = match self.callers.get(key).map(|c| &c.state) {
                Some(CallerState::Queued(p)) => why(p).map(|e| (p.id, p.frame.len(), e)),
                _ => continue,
            };
            match err {
                Some((id, len, e)) => {
                    self.board.head().queued.fetch_sub(1, Ordering::Relaxed);
                    self.buffered = self.buffered.saturating_sub(len);
                    if let Some(c) = self.callers.get_mut(key) {
                        c.state = CallerState::Reading;
                    }
                    self.reply(key, Kind::Error, id, &answers::error_payload(e));
                }
                None => keep.push_back(key),
            }
        }
        self.queue = keep;
    }

    /// After a worker went: calls waiting for an app no worker serves now
    /// are answered at once rather than left to time out.
    pub(super) fn fail_unservable(&mut self) {
        let servable: Vec<bool> = (0..self.apps.len()).map(|i| self.servable(1u64 << i)).collect();
        let index = |path: &str| self.apps.iter().position(|a| a.path == path);
        let dead: Vec<String> = self
            .apps
            .iter()
            .filter(|a| !index(&a.path).and_then(|i| servable.get(i).copied()).unwrap_or(false))
            .map(|a| a.path.clone())
            .collect();
        if dead.is_empty() {
            return;
        }
        self.fail_queue(|p| dead.contains(&p.app).then(|| answers::no_workers_for(&p.app)));
    }

    pub(super) fn lane_ready(&mut self, pid: i32, index: usize, revents: i16) {
        if revents & libc::POLLOUT != 0 {
            let failed = self
                .workers
                .get_mut(&pid)
                .and_then(|w| w.lanes.get_mut(index))
                .is_some_and(|l| l.out.flush(l.fd()).is_err());
            if failed {
                self.lane_closed(pid, index, "its socket failed");
                return;
            }
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            self.read_lane(pid, index);
        }
    }

    fn read_lane(&mut self, pid: i32, index: usize) {
        let mut buf = std::mem::take(&mut self.scratch);
        for _ in 0..READS_PER_TURN {
            let (fd, paused) = match self.workers.get(&pid).and_then(|w| w.lanes.get(index)) {
                Some(l) => (l.fd(), self.lane_interest(l).is_none_or(|e| e & libc::POLLIN == 0)),
                None => break,
            };
            if paused {
                break;
            }
            match sockio::read(fd, &mut buf) {
                Ok(Read::Data(n)) => self.relay(pid, index, &buf[..n]),
                Ok(Read::Blocked) => break,
                Ok(Read::Eof) => {
                    self.lane_closed(pid, index, "it closed the connection");
                    break;
                }
                Err(e) => {
                    self.lane_closed(pid, index, &e.to_string());
                    break;
                }
            }
        }
        self.scratch = buf;
    }

    fn relay(&mut self, pid: i32, index: usize, bytes: &[u8]) {
        let mut at = 0;
        loop {
            let step = match self.workers.get_mut(&pid).and_then(|w| w.lanes.get_mut(index)) {
                Some(l) => l.relay.step(&bytes[at..]),
                None => return,
            };
            let (n, piece) = match step {
                Ok(s) => s,
                Err(e) => {
                    self.misbehaved(pid, index, &e.to_string());
                    return;
                }
            };
            at += n;
            match piece {
                None => return,
                Some(Piece::Head(h, raw)) => {
                    if !self.lane_head(pid, index, h, raw) {
                        return;
                    }
                }
                Some(Piece::Body(b)) => self.lane_body(pid, index, b),
                Some(Piece::End(h)) => self.lane_end(pid, index, h),
            }
        }
    }

    /// A frame begins on a lane; false when the worker broke the protocol.
    fn lane_head(&mut self, pid: i32, index: usize, h: Header, mut raw: [u8; HEADER_LEN]) -> bool {
        let Some(lane) = self.workers.get_mut(&pid).and_then(|w| w.lanes.get_mut(index)) else { return false };
        if h.kind == Kind::Ready {
            lane.ready = true;
            return true;
        }
        if !matches!(h.kind, Kind::Chunk | Kind::Response | Kind::Error | Kind::End) {
            self.misbehaved(pid, index, &format!("it sent a {} message", h.kind.name()));
            return false;
        }
        match &mut lane.state {
            LaneState::Busy(call) if call.seq == h.id => {
                call.last = Instant::now();
                call.mid_frame = true;
                frame::set_id(&mut raw, call.id);
                let caller = call.caller;
                self.send_to_caller(caller, &raw);
                true
            }
            LaneState::Draining { call, last, .. } if *call == h.id => {
                *last = Instant::now();
                true
            }
            _ => {
                self.misbehaved(pid, index, &format!("it answered call {} out of turn", h.id));
                false
            }
        }
    }

    fn lane_body(&mut self, pid: i32, index: usize, bytes: &[u8]) {
        let caller = match self.workers.get_mut(&pid).and_then(|w| w.lanes.get_mut(index)).map(|l| &mut l.state) {
            Some(LaneState::Busy(call)) => {
                // A large answer still coming is the worker at work.
                call.last = Instant::now();
                call.caller
            }
            Some(LaneState::Draining { last, .. }) => {
                *last = Instant::now();
                return;
            }
            _ => return,
        };
        self.send_to_caller(caller, bytes);
    }

    fn lane_end(&mut self, pid: i32, index: usize, h: Header) {
        let Some(lane) = self.workers.get_mut(&pid).and_then(|w| w.lanes.get_mut(index)) else { return };
        if let LaneState::Busy(call) = &mut lane.state {
            call.mid_frame = false;
        }
        if !h.kind.ends_call() {
            return;
        }
        let ended = std::mem::replace(&mut lane.state, LaneState::Idle);
        let failed = h.kind == Kind::Error;
        match ended {
            LaneState::Busy(call) => {
                self.account(pid, &call.app, call.started, failed, false);
                if let Some(c) = self.callers.get_mut(call.caller) {
                    c.state = CallerState::Reading;
                }
            }
            LaneState::Draining { app, started, .. } => self.account(pid, &app, started, failed, false),
            other => {
                if let Some(l) = self.workers.get_mut(&pid).and_then(|w| w.lanes.get_mut(index)) {
                    l.state = other;
                }
            }
        }
    }

    /// Bytes for a caller; a caller that cannot take them is dropped.
    fn send_to_caller(&mut self, key: CallerKey, bytes: &[u8]) {
        let failed = match self.callers.get_mut(key) {
            Some(c) => {
                c.out.push(bytes);
                c.out.flush(c.fd()).is_err()
            }
            None => false,
        };
        if failed {
            self.drop_caller(key);
        }
    }

    /// One call ended: the board's counters.
    fn account(&self, pid: i32, app: &str, started: Instant, failed: bool, timed_out: bool) {
        if let Some(w) = self.workers.get(&pid) {
            if let Some(s) = self.board.worker(w.slot) {
                s.in_flight.fetch_sub(1, Ordering::Relaxed);
                s.calls.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(a) = self.app_index(app).and_then(|i| self.board.app(i)) {
            a.in_flight.fetch_sub(1, Ordering::Relaxed);
            a.record(started.elapsed(), failed, timed_out);
        }
    }

    /// A lane broke (its worker exited, or its socket failed): its call
    /// gets an error, and the lane takes no more calls.
    pub(super) fn lane_closed(&mut self, pid: i32, index: usize, why: &str) {
        let Some(lane) = self.workers.get_mut(&pid).and_then(|w| w.lanes.get_mut(index)) else { return };
        let state = std::mem::replace(&mut lane.state, LaneState::Dead);
        lane.ready = false;
        self.lane_lost(pid, state, why);
    }

    /// What was on a lane that is gone.
    pub(super) fn lane_lost(&mut self, pid: i32, state: LaneState, why: &str) {
        match state {
            LaneState::Busy(call) => {
                self.account(pid, &call.app, call.started, true, false);
                let err = answers::worker_failed(pid, &format!("dirty worker {pid} {why}"));
                self.end_call_with(call, err);
            }
            LaneState::Draining { app, started, .. } => self.account(pid, &app, started, true, false),
            LaneState::Idle | LaneState::Dead => {}
        }
    }

    /// Answers a call's caller with an error; a caller already given part
    /// of a frame can only be disconnected.
    fn end_call_with(&mut self, call: Call, err: Value) {
        if call.mid_frame {
            self.drop_caller(call.caller);
            return;
        }
        if let Some(c) = self.callers.get_mut(call.caller) {
            c.state = CallerState::Reading;
        }
        self.reply(call.caller, Kind::Error, call.id, &answers::error_payload(err));
    }

    /// A worker sent what the protocol does not allow: it is killed.
    fn misbehaved(&mut self, pid: i32, index: usize, what: &str) {
        crate::log::error!("Dirty worker (pid:{pid}) broke the protocol: {what}");
        self.lane_closed(pid, index, "broke the protocol");
        super::pool::kill(pid, libc::SIGKILL);
    }

    /// A caller went while its call ran: the worker is told to stop (a
    /// stream stops at its next chunk), and the lane drains the rest.
    pub(super) fn cancel_call(&mut self, pid: i32, index: usize) {
        let Some(lane) = self.workers.get_mut(&pid).and_then(|w| w.lanes.get_mut(index)) else { return };
        let LaneState::Busy(call) = std::mem::replace(&mut lane.state, LaneState::Idle) else {
            return;
        };
        lane.state = LaneState::Draining { call: call.seq, app: call.app, started: call.started, last: Instant::now() };
        lane.out.push(&frame::frame(Kind::Cancel, call.seq, &[]));
        if lane.out.flush(lane.fd()).is_err() {
            self.lane_closed(pid, index, "its socket failed");
        }
    }

    /// The earliest moment a call times out.
    pub(super) fn next_call_deadline(&self) -> Option<Instant> {
        let timeout = self.settings.dirty_timeout;
        if timeout.is_zero() {
            return None;
        }
        self.workers
            .values()
            .flat_map(|w| w.lanes.iter())
            .filter_map(|l| match &l.state {
                LaneState::Busy(call) => Some(call.last + timeout),
                LaneState::Draining { last, .. } => Some(*last + timeout),
                _ => None,
            })
            .min()
    }

    /// Calls the worker has sent nothing for in `dirty_timeout`: the caller
    /// gets DirtyTimeoutError, and the worker, whose thread is stuck in the
    /// app (Python threads cannot be interrupted), is aborted and replaced.
    pub(super) fn expire_calls(&mut self, now: Instant) {
        let timeout = self.settings.dirty_timeout;
        if timeout.is_zero() {
            return;
        }
        let expired: Vec<(i32, usize)> = self
            .workers
            .iter()
            .flat_map(|(pid, w)| {
                w.lanes.iter().enumerate().filter_map(move |(i, l)| match &l.state {
                    LaneState::Busy(call) if now.duration_since(call.last) >= timeout => Some((*pid, i)),
                    LaneState::Draining { last, .. } if now.duration_since(*last) >= timeout => Some((*pid, i)),
                    _ => None,
                })
            })
            .collect();
        for (pid, i) in expired {
            let Some(lane) = self.workers.get_mut(&pid).and_then(|w| w.lanes.get_mut(i)) else { continue };
            if let LaneState::Busy(call) = &lane.state {
                let caller = call.caller;
                if self.callers.get(caller).is_some_and(|c| c.out.pending() > CALLER_HIGH_WATER) {
                    // The worker waits on a caller that stopped reading its
                    // answer: the caller goes (the worker is told to stop),
                    // not the worker.
                    crate::log::warning!("Dirty client stopped reading its answer for {}s: dropped", timeout.as_secs());
                    self.drop_caller(caller);
                    continue;
                }
            }
            let Some(lane) = self.workers.get_mut(&pid).and_then(|w| w.lanes.get_mut(i)) else { continue };
            let secs = timeout.as_secs();
            let call = match std::mem::replace(&mut lane.state, LaneState::Dead) {
                LaneState::Busy(call) => call,
                LaneState::Draining { app, started, .. } => {
                    // Its caller is gone; the thread is still stuck in it.
                    crate::log::warning!("Execution timeout for a call of {app} whose caller left, after {secs}s");
                    self.account(pid, &app, started, true, true);
                    self.abort_worker(pid);
                    continue;
                }
                other => {
                    lane.state = other;
                    continue;
                }
            };
            crate::log::warning!("Execution timeout for {}.{} after {secs}s", call.app, call.action);
            self.account(pid, &call.app, call.started, true, true);
            let err = answers::timed_out(&call.app, &call.action, secs);
            self.end_call_with(call, err);
            self.abort_worker(pid);
        }
    }
}
