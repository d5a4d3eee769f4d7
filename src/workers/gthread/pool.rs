//! The queue of complete requests the gthread worker's threads take from.
//!
//! Only a thread holding the GIL takes a request, and it keeps the GIL while
//! requests are waiting, so a burst of fast requests runs back to back on
//! one thread with no hand-off between them. While the app is waiting on
//! something (a request held the main thread past the hand-off time, or
//! the main thread measured the app waiting), a thread that takes a
//! request while others wait wakes one more, which blocks on the GIL: when
//! the app releases the GIL to wait, that thread runs the next request, so
//! up to `--threads` requests are in progress at once. Otherwise the other
//! threads rest: one standing by for the GIL would only take it from the
//! thread running the app at every release, and give nothing back on an
//! app that keeps the processor busy.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

pub struct Queue<J> {
    state: Mutex<State<J>>,
    cond: Condvar,
    /// Jobs queued, readable without the lock (an empty queue costs no lock).
    queued: AtomicUsize,
}

struct State<J> {
    jobs: VecDeque<J>,
    /// Threads asleep in `wait`.
    sleeping: usize,
    /// A thread was woken and has not come for work yet: no need to wake
    /// another for the same jobs.
    waking: bool,
    closed: bool,
}

impl<J> Queue<J> {
    pub fn new() -> Queue<J> {
        Queue {
            state: Mutex::new(State { jobs: VecDeque::new(), sleeping: 0, waking: false, closed: false }),
            cond: Condvar::new(),
            queued: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Hands over requests (one lock for a whole batch) and wakes a
    /// sleeping thread for them.
    pub fn push_all(&self, jobs: impl IntoIterator<Item = J>) {
        let mut s = self.lock();
        let before = s.jobs.len();
        s.jobs.extend(jobs);
        self.queued.store(s.jobs.len(), Ordering::Release);
        if s.jobs.len() > before {
            self.wake_one(&mut s);
        }
    }

    /// Queues requests the caller is about to run itself: nobody is woken.
    pub fn push_quiet(&self, jobs: impl IntoIterator<Item = J>) {
        let mut s = self.lock();
        s.jobs.extend(jobs);
        self.queued.store(s.jobs.len(), Ordering::Release);
    }

    /// Requests waiting (without taking the lock).
    pub fn len(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes a sleeping thread if requests are waiting (the thread that
    /// was running them is stuck in one).
    pub fn wake_one_for_jobs(&self) {
        let mut s = self.lock();
        if !s.jobs.is_empty() {
            self.wake_one(&mut s);
        }
    }

    fn wake_one(&self, s: &mut State<J>) {
        if s.sleeping > 0 && !s.waking {
            s.waking = true;
            self.cond.notify_one();
        }
    }

    /// A request for a thread that holds the GIL, if one is waiting. With
    /// `standby`, when more wait another thread is woken to stand by for
    /// the GIL.
    pub fn take(&self, standby: bool) -> Option<J> {
        if self.queued.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut s = self.lock();
        let job = s.jobs.pop_front()?;
        self.queued.store(s.jobs.len(), Ordering::Release);
        if standby && !s.jobs.is_empty() {
            self.wake_one(&mut s);
        }
        Some(job)
    }

    /// Sleeps (call it without the GIL) until there may be work; false once
    /// the queue is closed and empty.
    pub fn wait(&self) -> bool {
        let mut s = self.lock();
        loop {
            if !s.jobs.is_empty() {
                return true;
            }
            if s.closed {
                return false;
            }
            s = self.sleep(s);
        }
    }

    /// One sleep on the condition variable, counted as a sleeping thread
    /// that `wake_one` may wake.
    fn sleep<'a>(&self, mut s: MutexGuard<'a, State<J>>) -> MutexGuard<'a, State<J>> {
        s.sleeping += 1;
        s = match self.cond.wait(s) {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        s.sleeping -= 1;
        s.waking = false;
        s
    }

    /// Sleeps (call it without the GIL) until woken for work, whether or not
    /// requests are waiting now (the thread running them needs no help);
    /// false once the queue is closed and empty.
    pub fn rest(&self) -> bool {
        let s = self.lock();
        if s.closed {
            return !s.jobs.is_empty();
        }
        let s = self.sleep(s);
        !(s.closed && s.jobs.is_empty())
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Stops the threads once the queue is empty.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        self.cond.notify_all();
    }
}

impl<J> Default for Queue<J> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn jobs_come_out_in_order_and_close_ends_waiters() {
        let q: Arc<Queue<u32>> = Arc::new(Queue::new());
        q.push_all([1, 2, 3]);
        assert_eq!(q.take(true), Some(1));
        assert_eq!(q.take(false), Some(2));
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            while q2.wait() {
                while let Some(j) = q2.take(true) {
                    got.push(j);
                }
            }
            got
        });
        q.push_all([4]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        q.close();
        assert_eq!(t.join().expect("thread"), vec![3, 4]);
    }

    #[test]
    fn a_resting_thread_sleeps_through_quiet_jobs_until_woken() {
        let q: Arc<Queue<u32>> = Arc::new(Queue::new());
        let q2 = q.clone();
        let woke = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let woke2 = woke.clone();
        let t = std::thread::spawn(move || {
            let more = q2.rest();
            woke2.store(true, Ordering::SeqCst);
            (more, q2.take(false))
        });
        // Queued for the caller to run itself: the resting thread stays
        // asleep although a job waits.
        while q.lock().sleeping == 0 {
            std::thread::yield_now();
        }
        q.push_quiet([7]);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!woke.load(Ordering::SeqCst));
        q.wake_one_for_jobs();
        assert_eq!(t.join().expect("thread"), (true, Some(7)));
    }

    #[test]
    fn rest_ends_once_closed_and_empty() {
        let q: Queue<u32> = Queue::new();
        q.push_quiet([1]);
        q.close();
        assert!(q.is_closed());
        assert!(q.rest(), "a job is left to run");
        assert_eq!(q.take(false), Some(1));
        assert!(!q.rest());
    }
}
