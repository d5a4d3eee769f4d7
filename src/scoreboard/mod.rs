//! Worker liveness and counters in one anonymous shared mapping made before
//! the first fork: each worker beats into its slot and counts its requests
//! there with relaxed atomics, the master reads every slot (timeouts,
//! metrics, the control socket). No temp files, so a slow disk cannot stall
//! a heartbeat (Gunicorn's `utime` on a temp file can), and no per-request
//! IPC.

pub mod counts;

use counts::{ExitReason, RequestCounts, BUCKETS, STATUS_CLASSES};
use std::io;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One worker's slot, a whole number of cache lines so workers never share
/// one. Only the worker writes its counters; the master reads them, and
/// resets the slot between workers.
#[repr(C, align(64))]
pub struct Slot {
    pub pid: AtomicI32,
    /// 1 once the app is loaded and the worker serves (Gunicorn's `booted`).
    booted: AtomicU32,
    /// CLOCK_MONOTONIC milliseconds of the last beat (system-wide clock).
    pub last_beat_ms: AtomicU64,
    pub requests: AtomicU64,
    pub in_flight: AtomicU64,
    /// An `ExitReason`, written just before the worker stops by itself.
    exit_reason: AtomicU32,
    /// Finished requests by status class, and their latency histogram.
    status: [AtomicU64; STATUS_CLASSES.len()],
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    /// Requests interrupted by `--request-timeout`.
    request_timeouts: AtomicU64,
    /// 1 once a handler outlived `--request-timeout` and its grace: the
    /// master replaces the worker gracefully.
    replace_asked: AtomicU32,
    /// 1 + the connections the worker holds while it takes new ones; 0
    /// while it does not (full, stopping, or a worker type that does not
    /// share them out). Its siblings read it (see `least_accepting`).
    accepting: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Slot>() % 64 == 0);

impl Slot {
    pub fn beat(&self) {
        self.last_beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn silent_for_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_beat_ms.load(Ordering::Relaxed))
    }

    /// One finished request: three relaxed increments on the worker's own
    /// cache lines, whatever the worker type.
    /// Release: whoever sees the request counted (an Acquire load in
    /// `counts`) also sees what the worker did before, such as leaving the
    /// in-flight gauge.
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.status[counts::status_class(status)].fetch_add(1, Ordering::Release);
        self.buckets[counts::bucket(elapsed)].fetch_add(1, Ordering::Release);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The request counters as they are now. Each is read on its own, so a
    /// request finishing meanwhile may show in one and not yet in another;
    /// every counter only grows.
    pub fn counts(&self) -> RequestCounts {
        let mut c = RequestCounts::default();
        for (out, a) in c.status.iter_mut().zip(&self.status) {
            *out = a.load(Ordering::Acquire);
        }
        for (out, a) in c.buckets.iter_mut().zip(&self.buckets) {
            *out = a.load(Ordering::Acquire);
        }
        c.sum_us = self.sum_us.load(Ordering::Relaxed);
        c.timeouts = self.request_timeouts.load(Ordering::Relaxed);
        c
    }

    pub fn count_request_timeout(&self) {
        self.request_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// A handler cannot be interrupted: the worker asks to be replaced.
    pub fn ask_replacement(&self) {
        self.replace_asked.store(1, Ordering::Relaxed);
    }

    pub fn replacement_asked(&self) -> bool {
        self.replace_asked.load(Ordering::Relaxed) != 0
    }

    pub fn mark_booted(&self) {
        self.booted.store(1, Ordering::Relaxed);
    }

    pub fn booted(&self) -> bool {
        self.booted.load(Ordering::Relaxed) != 0
    }

    /// The worker tells the master why it is about to stop by itself.
    pub fn set_exit_reason(&self, reason: ExitReason) {
        self.exit_reason.store(reason as u32, Ordering::Relaxed);
    }

    pub fn exit_reason(&self) -> ExitReason {
        ExitReason::from_u32(self.exit_reason.load(Ordering::Relaxed))
    }

    /// The worker takes new connections holding `held`, or (None) takes
    /// none now.
    pub fn publish_accepting(&self, held: Option<usize>) {
        let v = held.map_or(0, |n| u64::try_from(n).unwrap_or(u64::MAX - 1).saturating_add(1));
        self.accepting.store(v, Ordering::Relaxed);
    }

    /// What the worker published, if it takes connections now.
    pub fn accepting(&self) -> Option<u64> {
        self.accepting.load(Ordering::Relaxed).checked_sub(1)
    }

    fn reset(&self) {
        self.pid.store(0, Ordering::Relaxed);
        self.accepting.store(0, Ordering::Relaxed);
        self.booted.store(0, Ordering::Relaxed);
        self.last_beat_ms.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.in_flight.store(0, Ordering::Relaxed);
        self.exit_reason.store(0, Ordering::Relaxed);
        for a in self.status.iter().chain(&self.buckets) {
            a.store(0, Ordering::Relaxed);
        }
        self.sum_us.store(0, Ordering::Relaxed);
        self.request_timeouts.store(0, Ordering::Relaxed);
        self.replace_asked.store(0, Ordering::Relaxed);
    }
}

/// The shared mapping itself; unmapped when the last handle goes, so a
/// worker keeps its slot valid after the master's structures are dropped in
/// the forked child.
struct Mapping {
    base: *mut Slot,
    len: usize,
}

// SAFETY: slots are only touched through atomics; the mapping lives as long
// as any handle to it.
unsafe impl Send for Mapping {}
// SAFETY: as for Send: shared access goes through atomics only.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `Scoreboard::new` mapped.
        unsafe { libc::munmap(self.base.cast(), self.len * std::mem::size_of::<Slot>()) };
    }
}

pub struct Scoreboard {
    map: Arc<Mapping>,
    free: Vec<usize>,
}

/// One worker's view of its own slot.
#[derive(Clone)]
pub struct SlotHandle {
    map: Arc<Mapping>,
    index: usize,
}

impl std::ops::Deref for SlotHandle {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        // SAFETY: `index` was checked when the handle was made.
        unsafe { &*self.map.base.add(self.index) }
    }
}

impl SlotHandle {
    /// The fewest connections a sibling worker holds among those that take
    /// new ones now and beat within `fresh_ms` (a sibling whose loop is
    /// stuck, or that is gone, does not count). Slots are handed out
    /// lowest first and reused first, so the scan stops after a run of
    /// empty ones.
    pub fn least_accepting(&self, fresh_ms: u64) -> Option<u64> {
        const EMPTY_RUN: usize = 16;
        let now = now_ms();
        let mut least: Option<u64> = None;
        let mut empty = 0;
        for index in 0..self.map.len {
            if empty >= EMPTY_RUN {
                break;
            }
            // SAFETY: index < len; shared access goes through atomics.
            let slot = unsafe { &*self.map.base.add(index) };
            if slot.pid.load(Ordering::Relaxed) == 0 {
                empty += 1;
                continue;
            }
            empty = 0;
            if index == self.index || slot.silent_for_ms(now) > fresh_ms {
                continue;
            }
            if let Some(n) = slot.accepting() {
                least = Some(least.map_or(n, |l| l.min(n)));
            }
        }
        least
    }
}

/// The most workers one master supervises at once; TTIN past it is refused.
/// Pages are only backed once touched, so the reservation costs nothing.
pub const MAX_WORKERS: usize = 4096;

impl Scoreboard {
    pub fn new() -> io::Result<Scoreboard> {
        let bytes = MAX_WORKERS * std::mem::size_of::<Slot>();
        // SAFETY: a fresh anonymous shared mapping; zero-filled by the kernel,
        // which is a valid state for atomics.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = Arc::new(Mapping { base: ptr.cast(), len: MAX_WORKERS });
        Ok(Scoreboard { map, free: (0..MAX_WORKERS).rev().collect() })
    }

    pub fn slot(&self, index: usize) -> &Slot {
        assert!(index < self.map.len, "scoreboard slot out of range");
        // SAFETY: index checked; the mapping is valid for `len` slots.
        unsafe { &*self.map.base.add(index) }
    }

    pub fn handle(&self, index: usize) -> SlotHandle {
        assert!(index < self.map.len, "scoreboard slot out of range");
        SlotHandle { map: self.map.clone(), index }
    }

    /// Takes a free slot for a worker about to be forked; its beat starts
    /// now, so a worker gets `timeout` seconds to boot, as in Gunicorn.
    pub fn claim(&mut self) -> Option<usize> {
        let index = self.free.pop()?;
        let slot = self.slot(index);
        slot.reset();
        slot.beat();
        Some(index)
    }

    pub fn release(&mut self, index: usize) {
        self.slot(index).reset();
        self.free.push(index);
    }
}

pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_with_a_forked_child() {
        let mut board = Scoreboard::new().expect("mmap");
        let i = board.claim().expect("slot");
        board.slot(i).requests.store(0, Ordering::Relaxed);
        // SAFETY: the child only touches atomics and exits with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            board.slot(i).requests.store(42, Ordering::Relaxed);
            // SAFETY: ends the forked child at once, running nothing else.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a local.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(board.slot(i).requests.load(Ordering::Relaxed), 42);
        board.release(i);
        assert_eq!(board.slot(i).requests.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_forked_worker_records_and_the_slot_resets() {
        let mut board = Scoreboard::new().expect("mmap");
        let i = board.claim().expect("slot");
        // SAFETY: the child only touches atomics and exits with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let slot = board.slot(i);
            slot.record(200, Duration::from_millis(3));
            slot.record(404, Duration::from_millis(30));
            slot.record(503, Duration::from_secs(60));
            slot.set_exit_reason(ExitReason::MaxRequests);
            slot.mark_booted();
            // SAFETY: ends the forked child at once, running nothing else.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a local.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let slot = board.slot(i);
        let c = slot.counts();
        assert_eq!(c.status, [0, 1, 0, 1, 1, 0]);
        assert_eq!(c.count(), 3);
        assert_eq!((c.buckets[0], c.buckets[3], c.buckets[BUCKETS - 1]), (1, 1, 1));
        assert_eq!(c.sum_us, 3_000 + 30_000 + 60_000_000);
        assert_eq!(slot.exit_reason(), ExitReason::MaxRequests);
        assert!(slot.booted());
        board.release(i);
        let slot = board.slot(i);
        assert_eq!(slot.counts(), RequestCounts::default());
        assert_eq!(slot.exit_reason(), ExitReason::None);
        assert!(!slot.booted());
    }

    #[test]
    fn siblings_that_accept_are_seen_and_the_others_are_not() {
        let mut board = Scoreboard::new().expect("mmap");
        let slots: Vec<usize> = (0..4).map(|_| board.claim().expect("slot")).collect();
        for (n, &i) in slots.iter().enumerate() {
            board.slot(i).pid.store(100 + n as i32, Ordering::Relaxed);
        }
        let me = board.handle(slots[0]);
        // Nobody publishes: nobody to compare with.
        assert_eq!(me.least_accepting(1000), None);
        me.publish_accepting(Some(0));
        assert_eq!(me.accepting(), Some(0));
        assert_eq!(me.least_accepting(1000), None, "its own slot is not a sibling");
        board.slot(slots[1]).publish_accepting(Some(7));
        board.slot(slots[2]).publish_accepting(Some(3));
        board.slot(slots[3]).publish_accepting(None);
        assert_eq!(me.least_accepting(1000), Some(3));
        // A sibling that stopped beating is left out.
        board.slot(slots[2]).last_beat_ms.store(0, Ordering::Relaxed);
        assert_eq!(me.least_accepting(1000), Some(7));
        // A released slot is left out, and so is everything past a long
        // run of empty slots.
        board.release(slots[1]);
        assert_eq!(me.least_accepting(1000), None);
        let far = board.handle(40);
        far.pid.store(9, Ordering::Relaxed);
        far.beat();
        far.publish_accepting(Some(1));
        assert_eq!(me.least_accepting(1000), None);
    }

    #[test]
    fn a_claimed_slot_starts_with_a_fresh_beat() {
        let mut board = Scoreboard::new().expect("mmap");
        let i = board.claim().expect("slot");
        assert!(board.slot(i).silent_for_ms(now_ms()) < 1000);
    }
}
