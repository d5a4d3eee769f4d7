//! What the dirty side shows the master, in one anonymous shared mapping
//! the master makes before it forks the dirty arbiter (the HTTP workers'
//! scoreboard is the same idea): the dirty arbiter's pid and pool size, one
//! slot per dirty worker (its heartbeat, apps, calls) and one per app (its
//! call counters and latency histogram). The master reads it for `ferrocornc`
//! and the metrics page without ever talking to the dirty arbiter, so a
//! busy or stuck dirty arbiter cannot delay it.
//!
//! Writers: the dirty arbiter (everything but heartbeats), each dirty
//! worker (its own heartbeat and booted flag). Counters only grow while the
//! mapping lives, which is as long as the master: a dirty arbiter that is
//! replaced carries on from them.

use super::spec::MAX_APPS;
use crate::scoreboard::counts::{bucket, BUCKETS};
use crate::scoreboard::now_ms;
use std::io;
use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The most dirty workers one dirty arbiter runs at once.
pub const MAX_WORKERS: usize = 1024;
/// Import paths longer than this are shown cut.
const NAME_WORDS: usize = 32;
pub const MAX_NAME: usize = NAME_WORDS * 8;

/// Why a dirty worker was replaced (the metrics' `cause` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Died of a signal nobody here sent, or exited with an error.
    Crash,
    /// A call outlived `dirty_timeout`, or the worker went silent.
    Timeout,
    /// Could not load its apps.
    BootFailed,
    /// A HUP's new generation replaced it.
    Reload,
    /// Stopped cleanly by a signal from outside.
    Terminated,
}

impl Restart {
    pub const ALL: [Restart; 5] =
        [Restart::Crash, Restart::Timeout, Restart::BootFailed, Restart::Reload, Restart::Terminated];

    pub fn label(self) -> &'static str {
        match self {
            Restart::Crash => "crash",
            Restart::Timeout => "timeout",
            Restart::BootFailed => "boot_failed",
            Restart::Reload => "reload",
            Restart::Terminated => "terminated",
        }
    }

    fn index(self) -> usize {
        Restart::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

#[repr(C, align(64))]
pub struct Head {
    /// 0 while no dirty arbiter runs.
    pub arbiter_pid: AtomicI32,
    app_count: AtomicU32,
    /// The pool size the dirty arbiter keeps (`dirty_workers`, TTIN/TTOU).
    pub target: AtomicU64,
    /// Calls waiting for a free worker thread.
    pub queued: AtomicU64,
    /// Callers connected (HTTP worker threads, stash users).
    pub clients: AtomicU64,
    /// Odd while the app names are being rewritten (a seqlock).
    names_seq: AtomicU64,
    pub spawned: AtomicU64,
    restarts: [AtomicU64; Restart::ALL.len()],
    /// Calls for an app no worker loads (answered with an error at once).
    pub unrouted: AtomicU64,
    /// Dirty arbiters the master started.
    pub arbiters: AtomicU64,
}

#[repr(C, align(64))]
pub struct AppSlot {
    name_len: AtomicU32,
    /// How many workers load it; -1 for every worker.
    worker_count: AtomicI32,
    name: [AtomicU64; NAME_WORDS],
    /// Calls finished, whatever their outcome.
    pub calls: AtomicU64,
    /// Calls that ended in an error (timeouts included).
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub in_flight: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

#[repr(C, align(64))]
pub struct WorkerSlot {
    pub pid: AtomicI32,
    booted: AtomicU32,
    pub age: AtomicU64,
    /// CLOCK_MONOTONIC ms of its last heartbeat.
    last_beat_ms: AtomicU64,
    /// The apps it loads, a bit per app index.
    pub apps: AtomicU64,
    pub calls: AtomicU64,
    pub in_flight: AtomicU64,
    pub started_ms: AtomicU64,
    /// Threads (`dirty_threads`) running calls.
    pub threads: AtomicU32,
    retiring: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<WorkerSlot>() == 64);
const _: () = assert!(MAX_APPS <= 64, "a worker's apps are a 64-bit set");

#[repr(C)]
struct Layout {
    head: Head,
    apps: [AppSlot; MAX_APPS],
    workers: [WorkerSlot; MAX_WORKERS],
}

struct Mapping(*mut Layout);

// SAFETY: the mapping is only touched through atomics, from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `Board::new` mapped.
        unsafe { libc::munmap(self.0.cast(), std::mem::size_of::<Layout>()) };
    }
}

/// A handle on the mapping; clones share it (and it outlives the master's
/// structures in a forked child, like the scoreboard).
#[derive(Clone)]
pub struct Board {
    map: Arc<Mapping>,
}

impl Board {
    pub fn new() -> io::Result<Board> {
        // SAFETY: a fresh anonymous shared mapping, zero-filled by the
        // kernel, which is a valid state for every atomic in `Layout`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<Layout>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Board { map: Arc::new(Mapping(ptr.cast())) })
    }

    fn layout(&self) -> &Layout {
        // SAFETY: mapped for the life of `self.map`, and only read or
        // written through atomics.
        unsafe { &*self.map.0 }
    }

    pub fn head(&self) -> &Head {
        &self.layout().head
    }

    pub fn app(&self, index: usize) -> Option<&AppSlot> {
        self.layout().apps.get(index)
    }

    pub fn worker(&self, index: usize) -> Option<&WorkerSlot> {
        self.layout().workers.get(index)
    }

    pub fn restarts(&self, r: Restart) -> u64 {
        self.head().restarts[r.index()].load(Ordering::Relaxed)
    }

    pub fn count_restart(&self, r: Restart) {
        self.head().restarts[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The dirty arbiter publishes its apps, in `dirty_apps` order, with
    /// how many workers load each. An app whose name is unchanged keeps
    /// its counters (a reload that keeps it must not reset them).
    pub fn set_apps(&self, apps: &[(&str, Option<usize>)]) {
        let head = self.head();
        head.names_seq.fetch_add(1, Ordering::AcqRel);
        for (i, slot) in self.layout().apps.iter().enumerate() {
            match apps.get(i) {
                Some((name, count)) => {
                    if slot.name() != *name {
                        slot.reset();
                        slot.set_name(name);
                    }
                    let count = count.map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
                    slot.worker_count.store(count, Ordering::Relaxed);
                }
                None if slot.name_len.load(Ordering::Relaxed) != 0 => slot.reset(),
                None => {}
            }
        }
        head.app_count.store(u32::try_from(apps.len()).unwrap_or(0), Ordering::Relaxed);
        head.names_seq.fetch_add(1, Ordering::AcqRel);
    }

    /// The apps as last published: (index, name, worker count).
    pub fn apps(&self) -> Vec<(usize, String, Option<usize>)> {
        let head = self.head();
        for _ in 0..100 {
            let before = head.names_seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let n = (head.app_count.load(Ordering::Relaxed) as usize).min(MAX_APPS);
            let out: Vec<_> = self.layout().apps[..n]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let count = usize::try_from(s.worker_count.load(Ordering::Relaxed)).ok();
                    (i, s.name(), count)
                })
                .collect();
            fence(Ordering::Acquire);
            if head.names_seq.load(Ordering::Relaxed) == before {
                return out;
            }
        }
        Vec::new()
    }

    /// Worker slots in use.
    pub fn live_workers(&self) -> impl Iterator<Item = &WorkerSlot> {
        self.layout().workers.iter().filter(|w| w.pid.load(Ordering::Relaxed) != 0)
    }

    /// A new dirty arbiter starts from an empty pool (its predecessor's
    /// workers are gone or going); counters are kept.
    pub fn clear_pool(&self) {
        for w in &self.layout().workers {
            w.reset();
        }
        let head = self.head();
        head.queued.store(0, Ordering::Relaxed);
        head.clients.store(0, Ordering::Relaxed);
        head.target.store(0, Ordering::Relaxed);
        for a in &self.layout().apps {
            a.in_flight.store(0, Ordering::Relaxed);
        }
    }
}

impl AppSlot {
    fn reset(&self) {
        self.name_len.store(0, Ordering::Relaxed);
        self.worker_count.store(-1, Ordering::Relaxed);
        for w in self.name.iter().chain([&self.calls, &self.errors, &self.timeouts, &self.in_flight, &self.sum_us]) {
            w.store(0, Ordering::Relaxed);
        }
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
    }

    fn set_name(&self, name: &str) {
        let bytes = &name.as_bytes()[..name.len().min(MAX_NAME)];
        for (i, word) in self.name.iter().enumerate() {
            let mut w = [0u8; 8];
            let start = (i * 8).min(bytes.len());
            let end = (start + 8).min(bytes.len());
            w[..end - start].copy_from_slice(&bytes[start..end]);
            word.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        self.name_len.store(u32::try_from(bytes.len()).unwrap_or(0), Ordering::Relaxed);
    }

    pub fn name(&self) -> String {
        let len = (self.name_len.load(Ordering::Relaxed) as usize).min(MAX_NAME);
        let mut bytes = Vec::with_capacity(MAX_NAME);
        for word in &self.name {
            bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        bytes.truncate(len);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// One finished call and how long it took.
    pub fn record(&self, elapsed: Duration, failed: bool, timed_out: bool) {
        self.buckets[bucket(elapsed)].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        if failed || timed_out {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if timed_out {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The latency histogram (per bucket) and its sum in microseconds.
    pub fn latency(&self) -> ([u64; BUCKETS], u64) {
        let mut out = [0u64; BUCKETS];
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            *o = b.load(Ordering::Relaxed);
        }
        (out, self.sum_us.load(Ordering::Relaxed))
    }
}

impl WorkerSlot {
    fn reset(&self) {
        self.pid.store(0, Ordering::Relaxed);
        for w in [&self.booted, &self.threads, &self.retiring] {
            w.store(0, Ordering::Relaxed);
        }
        for w in [&self.age, &self.last_beat_ms, &self.apps, &self.calls, &self.in_flight, &self.started_ms] {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// Taken for a worker about to be forked: its heartbeat starts now, so
    /// loading its apps counts against `dirty_timeout`, as in Gunicorn.
    pub fn claim(&self, age: u64, apps: u64, threads: usize) {
        self.reset();
        self.age.store(age, Ordering::Relaxed);
        self.apps.store(apps, Ordering::Relaxed);
        self.threads.store(u32::try_from(threads).unwrap_or(u32::MAX), Ordering::Relaxed);
        let now = now_ms();
        self.started_ms.store(now, Ordering::Relaxed);
        self.last_beat_ms.store(now, Ordering::Relaxed);
    }

    pub fn release(&self) {
        self.reset();
    }

    pub fn beat(&self) {
        self.last_beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn silent_for_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_beat_ms.load(Ordering::Relaxed))
    }

    pub fn mark_booted(&self) {
        self.booted.store(1, Ordering::Relaxed);
    }

    pub fn booted(&self) -> bool {
        self.booted.load(Ordering::Relaxed) != 0
    }

    pub fn set_retiring(&self) {
        self.retiring.store(1, Ordering::Relaxed);
    }

    pub fn retiring(&self) -> bool {
        self.retiring.load(Ordering::Relaxed) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_writer_is_seen() {
        let board = Board::new().expect("mmap");
        board.set_apps(&[("m:A", None), ("m:B", Some(2))]);
        // SAFETY: the child only touches atomics and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let w = board.worker(3).expect("slot");
            w.claim(7, 0b11, 2);
            w.pid.store(4242, Ordering::Relaxed);
            w.mark_booted();
            if let Some(a) = board.app(1) {
                a.record(Duration::from_millis(30), true, true);
            }
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let live: Vec<_> = board.live_workers().map(|w| (w.pid.load(Ordering::Relaxed), w.booted())).collect();
        assert_eq!(live, vec![(4242, true)]);
        assert_eq!(board.apps(), vec![(0, "m:A".to_owned(), None), (1, "m:B".to_owned(), Some(2))]);
        let b = board.app(1).expect("app");
        assert_eq!((b.calls.load(Ordering::Relaxed), b.errors.load(Ordering::Relaxed)), (1, 1));
        assert_eq!(b.latency().0.iter().sum::<u64>(), 1);
    }

    #[test]
    fn republishing_keeps_counters_of_unchanged_apps() {
        let board = Board::new().expect("mmap");
        board.set_apps(&[("m:A", None), ("m:B", None)]);
        for i in 0..2 {
            board.app(i).expect("app").record(Duration::ZERO, false, false);
        }
        board.set_apps(&[("m:A", Some(1)), ("m:C", None)]);
        assert_eq!(board.app(0).expect("a").calls.load(Ordering::Relaxed), 1);
        assert_eq!(board.app(1).expect("c").calls.load(Ordering::Relaxed), 0);
        assert_eq!(board.apps()[1].1, "m:C");
        let long = "x".repeat(MAX_NAME + 10);
        board.set_apps(&[(&long, None)]);
        assert_eq!(board.apps(), vec![(0, "x".repeat(MAX_NAME), None)]);
    }
}
