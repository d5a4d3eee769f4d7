//! The master's signals, queued through a self-pipe and handled one at a time
//! in its loop, in arrival order (Gunicorn's SIG_QUEUE). The handler only
//! writes the signal number into the pipe: nothing else is async-signal-safe.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

pub const HANDLED: &[libc::c_int] = &[
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCHLD,
];

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: write(2) and errno access are async-signal-safe; errno is
    // restored so the interrupted code sees its own value.
    unsafe {
        let saved = *libc::__errno_location();
        let fd = PIPE_WRITE.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = sig as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *libc::__errno_location() = saved;
    }
}

pub struct SignalQueue {
    read_fd: RawFd,
    write_fd: RawFd,
    /// The signals this process queues (the master's, or a dirty
    /// process's own set).
    handled: &'static [libc::c_int],
}

impl SignalQueue {
    /// The master's signals.
    pub fn install() -> io::Result<SignalQueue> {
        Self::install_for(HANDLED)
    }

    /// Queues `handled` in this process (one queue per process: a forked
    /// child first lets go of its parent's with [`SignalQueue::fork`]).
    pub fn install_for(handled: &'static [libc::c_int]) -> io::Result<SignalQueue> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        PIPE_WRITE.store(fds[1], Ordering::Relaxed);
        for &sig in handled {
            set_handler(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t)?;
        }
        Ok(SignalQueue { read_fd: fds[0], write_fd: fds[1], handled })
    }

    /// The read end, for a loop that polls it with other fds.
    pub fn fd(&self) -> RawFd {
        self.read_fd
    }

    /// Waits up to `timeout` for signals and returns those that arrived, in
    /// order. Runs with the GIL released by the caller.
    pub fn wait(&self, timeout: Duration) -> Vec<libc::c_int> {
        self.wait_with(&mut [], timeout)
    }

    /// Like `wait`, also waking when one of `others` is ready (their
    /// `revents` are filled in): the master's own servers are polled with
    /// the signal pipe, so neither ever delays the other.
    pub fn wait_with(&self, others: &mut [libc::pollfd], timeout: Duration) -> Vec<libc::c_int> {
        let mut fds = Vec::with_capacity(others.len() + 1);
        fds.push(libc::pollfd { fd: self.read_fd, events: libc::POLLIN, revents: 0 });
        fds.extend_from_slice(others);
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: a valid pollfd array of the given length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        for (o, f) in others.iter_mut().zip(&fds[1..]) {
            o.revents = f.revents;
        }
        self.drain()
    }

    /// Signals already queued, without waiting.
    pub fn drain(&self) -> Vec<libc::c_int> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into `buf` from our non-blocking pipe.
            let n = unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.extend(buf[..n as usize].iter().map(|&b| libc::c_int::from(b)));
        }
        out
    }

    /// Wakes the loop without a signal (used after the master changes state
    /// from inside the loop and wants another turn at once).
    pub fn wakeup(&self) {
        on_signal(0);
    }

    /// In a freshly forked worker: the master's handlers and pipe are not
    /// the worker's business. Default dispositions come back before the
    /// worker installs its own.
    /// Forks with every signal blocked until the child has let go of the
    /// master's handlers: a signal aimed at the new child (a TERM from a
    /// quick shrink, a USR1) must not run the master's handler there, which
    /// would write it into the pipe the master reads, as if the master had
    /// been sent it. What arrived meanwhile is delivered after, to each
    /// process's own handlers.
    pub fn fork(&self, py: pyo3::Python<'_>) -> io::Result<crate::python::Forked> {
        let saved = block_all()?;
        let forked = crate::python::fork(py);
        if let Ok(crate::python::Forked::Child) = forked {
            self.reset_in_child();
        }
        restore(&saved);
        forked
    }

    /// The child forgets the master's handlers and pipe. The worker (or the
    /// re-executed master) installs its own; until then USR1, which the
    /// master passes on to its workers, must not end a booting worker.
    fn reset_in_child(&self) {
        for &sig in self.handled {
            let disposition = if sig == libc::SIGUSR1 { libc::SIG_IGN } else { libc::SIG_DFL };
            let _ = set_handler(sig, disposition);
        }
        PIPE_WRITE.store(-1, Ordering::Relaxed);
        // SAFETY: closing our own pipe fds once.
        unsafe {
            libc::close(self.read_fd);
            libc::close(self.write_fd);
        }
    }
}

/// Blocks every signal; returns the mask to restore.
fn block_all() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t values are plain data, filled by sigfillset and
    // sigprocmask; the thread's mask is ours to change.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut saved: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(saved)
    }
}

fn restore(saved: &libc::sigset_t) {
    // SAFETY: a mask that pthread_sigmask gave back.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, saved, std::ptr::null_mut()) };
}

fn set_handler(sig: libc::c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: a zeroed sigaction with a valid handler and empty mask.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        // SA_RESTART keeps the master's file and socket calls from failing
        // with EINTR; its poll() still returns early, which is what we want.
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGHUP => "hup",
        libc::SIGQUIT => "quit",
        libc::SIGINT => "int",
        libc::SIGTERM => "term",
        libc::SIGTTIN => "ttin",
        libc::SIGTTOU => "ttou",
        libc::SIGUSR1 => "usr1",
        libc::SIGUSR2 => "usr2",
        libc::SIGWINCH => "winch",
        libc::SIGCHLD => "chld",
        libc::SIGKILL => "kill",
        libc::SIGABRT => "abrt",
        libc::SIGSEGV => "segv",
        _ => "unknown",
    }
}

/// Gunicorn's names for a signal that ended a worker ("SIGKILL").
pub fn full_name(sig: libc::c_int) -> String {
    match name(sig) {
        "unknown" => format!("signal {sig}"),
        n => format!("SIG{}", n.to_ascii_uppercase()),
    }
}
