//! systemd socket activation, the `sd_listen_fds(3)` protocol: a service
//! manager that bound the sockets itself passes them as fds 3, 4, ... and
//! says how many in `LISTEN_FDS`, for the process named in `LISTEN_PID`
//! (Gunicorn's `systemd.listen_fds`). This module reads that protocol and
//! speaks it again for a re-exec'd master; the arbiter decides when.

use super::listener::Listener;
use std::fmt;
use std::io;
use std::os::fd::RawFd;

/// The first fd a service manager passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The variables of the protocol. `LISTEN_FDNAMES` is systemd's optional
/// companion; it is cleared with the others so nothing downstream reads a
/// stale one.
pub const LISTEN_PID: &str = "LISTEN_PID";
pub const LISTEN_FDS: &str = "LISTEN_FDS";
pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";

#[derive(Debug, PartialEq, Eq)]
pub enum ActivationError {
    /// `LISTEN_PID` is this process but `LISTEN_FDS` is not a count.
    BadCount(String),
    /// One of the passed fds cannot serve as a listener.
    BadSocket { fd: RawFd, reason: String },
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::BadCount(v) => {
                write!(f, "systemd socket activation: LISTEN_FDS={v:?} is not a number of sockets")
            }
            ActivationError::BadSocket { fd, reason } => {
                write!(f, "systemd socket activation: fd {fd} cannot be used as a listener: {reason}")
            }
        }
    }
}

/// How many sockets were passed to the process `pid`, from the values of
/// `LISTEN_PID` and `LISTEN_FDS`. `None` when the variables are absent or
/// meant for another process (a parent that was activated and did not clear
/// them), or when the count is zero, as Gunicorn's `if listen_fds:`.
pub fn passed_count(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    pid: u32,
) -> Result<Option<usize>, ActivationError> {
    if !names_pid(listen_pid, pid) {
        return Ok(None);
    }
    let Some(count) = listen_fds else { return Ok(None) };
    match count.trim().parse::<usize>() {
        Ok(0) => Ok(None),
        // fds are ints: a count that overflows them is nonsense
        Ok(n) if n <= (RawFd::MAX - LISTEN_FDS_START) as usize => Ok(Some(n)),
        _ => Err(ActivationError::BadCount(count.to_owned())),
    }
}

/// Whether `LISTEN_PID` names the process `pid`. A value that is not a pid
/// names nobody (sd_listen_fds gives up on it too; Gunicorn's int() would
/// crash).
pub fn names_pid(listen_pid: Option<&str>, pid: u32) -> bool {
    listen_pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(pid)
}

/// Takes over the `n` passed sockets, fds 3..3+n, in order: TCP or Unix,
/// whatever they are, listening already or not.
pub fn take_listeners(n: usize, backlog: i32) -> Result<Vec<Listener>, ActivationError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let fd = LISTEN_FDS_START + i as RawFd;
        let listener =
            Listener::from_fd(fd, backlog).map_err(|e| ActivationError::BadSocket { fd, reason: e.to_string() })?;
        out.push(listener);
    }
    Ok(out)
}

/// For a master about to exec a new one while it runs socket-activated
/// (Gunicorn's `reexec` with `self.systemd`): moves the listeners to fds
/// 3..3+n in order, inheritable, and returns the variables the new master
/// needs to find them. Call it in the process that will call exec (after
/// its fork): `LISTEN_PID` is the caller's own pid, which exec keeps.
///
/// Any other inheritable fd in 3..3+n is replaced, so nothing but the
/// listeners may need those numbers across the exec. The listeners' old fds,
/// where they differ, are marked close-on-exec so the new master does not
/// inherit them twice.
pub fn hand_over(listeners: &[Listener]) -> io::Result<[(&'static str, String); 2]> {
    let n = listeners.len() as RawFd;
    // Copy every listener above the target range first, so that placing
    // one never overwrites another still waiting to be placed.
    let mut copies = Vec::with_capacity(listeners.len());
    for l in listeners {
        // SAFETY: F_DUPFD_CLOEXEC on an fd we hold; the copy is closed below.
        let copy = unsafe { libc::fcntl(l.fd(), libc::F_DUPFD_CLOEXEC, LISTEN_FDS_START + n) };
        if copy < 0 {
            let err = io::Error::last_os_error();
            close_all(&copies);
            return Err(err);
        }
        copies.push(copy);
    }
    let mut result = Ok(());
    for (i, &copy) in copies.iter().enumerate() {
        let target = LISTEN_FDS_START + i as RawFd;
        // SAFETY: dup2 onto a number we reserve for the listener; the new
        // fd has no FD_CLOEXEC, so exec keeps it.
        if unsafe { libc::dup2(copy, target) } < 0 {
            result = Err(io::Error::last_os_error());
            break;
        }
    }
    close_all(&copies);
    result?;
    for l in listeners {
        let fd = l.fd();
        if !(LISTEN_FDS_START..LISTEN_FDS_START + n).contains(&fd) {
            set_cloexec(fd)?;
        }
    }
    Ok([(LISTEN_PID, std::process::id().to_string()), (LISTEN_FDS, listeners.len().to_string())])
}

fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: closing copies made by hand_over, once.
        unsafe { libc::close(fd) };
    }
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl flags on an fd we hold.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_pid_is_activated() {
        assert_eq!(passed_count(Some("42"), Some("2"), 42), Ok(Some(2)));
        assert_eq!(passed_count(Some(" 42\n"), Some("1"), 42), Ok(Some(1)));
        assert_eq!(passed_count(Some("41"), Some("2"), 42), Ok(None));
        assert_eq!(passed_count(None, Some("2"), 42), Ok(None));
        assert_eq!(passed_count(Some("x"), Some("2"), 42), Ok(None));
        assert_eq!(passed_count(Some("42"), None, 42), Ok(None));
        assert_eq!(passed_count(Some("42"), Some("0"), 42), Ok(None));
    }

    #[test]
    fn a_bad_count_for_us_is_an_error() {
        assert_eq!(passed_count(Some("42"), Some("two"), 42), Err(ActivationError::BadCount("two".into())));
        assert_eq!(passed_count(Some("42"), Some("-1"), 42), Err(ActivationError::BadCount("-1".into())));
        assert!(passed_count(Some("42"), Some("99999999999"), 42).is_err());
        // not ours: nothing is checked
        assert_eq!(passed_count(Some("41"), Some("two"), 42), Ok(None));
    }

    /// `hand_over` rewrites fds 3.. of its process, which the test harness
    /// may be using, so it runs in a child process of its own: this test
    /// runs the ignored one below in a fresh copy of the test binary.
    #[test]
    fn hand_over_places_the_listeners_at_3() {
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args(["--exact", "net::systemd::tests::hand_over_in_this_process", "--ignored", "--test-threads=1"])
            .output()
            .expect("run the child test");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("1 passed"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    #[ignore = "run by hand_over_places_the_listeners_at_3 in a process of its own"]
    fn hand_over_in_this_process() {
        use crate::net::bind::BindSpec;
        use socket2::Socket;
        use std::os::fd::FromRawFd;
        let spec = BindSpec::Tcp { host: "127.0.0.1".into(), port: 0 };
        // Three listeners, the first two created after a few other fds, so
        // none starts where it must end and one target (3 or 4) may even be
        // another listener's fd.
        let filler: Vec<std::fs::File> = (0..3).map(|_| std::fs::File::open("/dev/null").expect("open")).collect();
        let ls: Vec<Listener> = (0..3).map(|_| Listener::bind(&spec, 8, false).expect("bind")).collect();
        drop(filler);
        let want: Vec<_> = ls.iter().map(|l| l.address.clone()).collect();
        let env = hand_over(&ls).expect("hand over");
        assert_eq!(env[0], (LISTEN_PID, std::process::id().to_string()));
        assert_eq!(env[1], (LISTEN_FDS, "3".to_owned()));
        for (i, addr) in want.iter().enumerate() {
            let fd = LISTEN_FDS_START + i as RawFd;
            // SAFETY: fd is one hand_over placed; ManuallyDrop keeps it open.
            let sock = std::mem::ManuallyDrop::new(unsafe { Socket::from_raw_fd(fd) });
            let local = sock.local_addr().expect("a socket at the target fd").as_socket().expect("tcp");
            assert_eq!(&crate::net::listener::Address::Tcp(local), addr, "fd {fd}");
            // SAFETY: F_GETFD on an open fd.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, 0, "fd {fd} must survive exec");
        }
        for l in &ls {
            if l.fd() >= LISTEN_FDS_START + 3 {
                // SAFETY: F_GETFD on the listener's own fd.
                let flags = unsafe { libc::fcntl(l.fd(), libc::F_GETFD) };
                assert_ne!(flags & libc::FD_CLOEXEC, 0, "old fd {} must not be inherited", l.fd());
            }
        }
        std::mem::forget(ls);
    }
}
