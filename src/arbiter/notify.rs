//! The `sd_notify(3)` transport: one datagram per state change to the Unix
//! socket named by `$NOTIFY_SOCKET` (a path, or an abstract name when it
//! starts with '@'), as Gunicorn's `systemd.sd_notify` sends them. The
//! master must never wait on its service manager, so the socket is
//! non-blocking and a message that cannot go now is dropped; the first
//! failure is logged at debug level and the rest are not (a service run
//! outside systemd with a stale variable would otherwise log every second).

use socket2::{Domain, SockAddr, Socket, Type};
use std::fmt;
use std::io;

pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

#[derive(Debug)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is not an address a Unix socket can have.
    BadAddress { address: String, reason: String },
    /// The datagram socket could not be made.
    Socket(io::Error),
    /// The message did not go (no listener, queue full, ...).
    Send { address: String, error: io::Error },
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::BadAddress { address, reason } => write!(f, "NOTIFY_SOCKET={address:?}: {reason}"),
            NotifyError::Socket(e) => write!(f, "cannot make the sd_notify socket: {e}"),
            NotifyError::Send { address, error } => write!(f, "sd_notify to {address:?} failed: {error}"),
        }
    }
}

/// The address `$NOTIFY_SOCKET` names.
pub fn parse_address(value: &str) -> Result<SockAddr, NotifyError> {
    let bad = |reason: &str| NotifyError::BadAddress { address: value.to_owned(), reason: reason.to_owned() };
    let path: Vec<u8> = match value.as_bytes() {
        [] => return Err(bad("empty")),
        // abstract namespace: '@' stands for the leading NUL
        [b'@', rest @ ..] => std::iter::once(0).chain(rest.iter().copied()).collect(),
        [b'/', ..] => value.as_bytes().to_vec(),
        // systemd itself only ever passes absolute paths or '@' names (and
        // vsock addresses, which a Unix socket cannot reach)
        _ => return Err(bad("not an absolute path or an @abstract name")),
    };
    use std::os::unix::ffi::OsStrExt;
    SockAddr::unix(std::ffi::OsStr::from_bytes(&path)).map_err(|e| bad(&e.to_string()))
}

struct Target {
    sock: Socket,
    addr: SockAddr,
    address: String,
}

/// Where notifications go; does nothing when the process was not started
/// with `$NOTIFY_SOCKET`.
pub struct Notifier {
    target: Option<Target>,
    /// A failure was logged already.
    failed: bool,
}

impl Notifier {
    /// A notifier that never sends.
    pub fn disabled() -> Notifier {
        Notifier { target: None, failed: false }
    }

    /// From the process environment. The variable is left in place, as
    /// Gunicorn leaves it (its `unset_environment` is false): a re-exec'd
    /// master needs it too.
    pub fn from_env() -> Notifier {
        match std::env::var(NOTIFY_SOCKET) {
            Ok(value) => Notifier::to_address(&value),
            Err(_) => Notifier::disabled(),
        }
    }

    /// For the socket `$NOTIFY_SOCKET` would name; a bad address is logged
    /// once and gives a notifier that never sends.
    pub fn to_address(value: &str) -> Notifier {
        match Self::connect(value) {
            Ok(target) => Notifier { target: Some(target), failed: false },
            Err(e) => {
                crate::log::debug!("{e}");
                Notifier { target: None, failed: true }
            }
        }
    }

    fn connect(value: &str) -> Result<Target, NotifyError> {
        let addr = parse_address(value)?;
        let sock = Socket::new(Domain::UNIX, Type::DGRAM.cloexec(), None).map_err(NotifyError::Socket)?;
        sock.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Target { sock, addr, address: value.to_owned() })
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=value` assignments). Failures
    /// are returned for tests; `notify` is what the master calls.
    pub fn send(&self, state: &str) -> Result<(), NotifyError> {
        let Some(t) = &self.target else { return Ok(()) };
        match t.sock.send_to(state.as_bytes(), &t.addr) {
            Ok(_) => Ok(()),
            Err(error) => Err(NotifyError::Send { address: t.address.clone(), error }),
        }
    }

    /// Sends `state`; never blocks, never fails the caller.
    pub fn notify(&mut self, state: &str) {
        if let Err(e) = self.send(state) {
            if !self.failed {
                self.failed = true;
                crate::log::debug!("Exception while invoking sd_notify(): {e} (further failures are not logged)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn tmp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrocorn-notify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn addresses() {
        assert!(parse_address("/run/systemd/notify").is_ok());
        let abs = parse_address("@ferrocorn/x").expect("abstract");
        assert_eq!(abs.as_abstract_namespace(), Some(&b"ferrocorn/x"[..]));
        assert!(parse_address("").is_err());
        assert!(parse_address("relative/path").is_err());
        assert!(parse_address("vsock:2:1234").is_err());
        assert!(parse_address(&format!("/{}", "x".repeat(200))).is_err());
    }

    #[test]
    fn sends_to_a_path() {
        let path = tmp_path("path");
        let rx = UnixDatagram::bind(&path).expect("bind");
        let mut n = Notifier::to_address(path.to_str().expect("utf-8"));
        assert!(n.enabled());
        n.notify("READY=1\nSTATUS=booted");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=booted");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn sends_to_an_abstract_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ferrocorn-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind");
        let n = Notifier::to_address(&format!("@{name}"));
        n.send("STOPPING=1").expect("send");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"STOPPING=1");
    }

    #[test]
    fn a_missing_socket_fails_without_blocking() {
        let path = tmp_path("missing");
        let mut n = Notifier::to_address(path.to_str().expect("utf-8"));
        assert!(matches!(n.send("READY=1"), Err(NotifyError::Send { .. })));
        n.notify("READY=1");
        n.notify("READY=1");
        assert!(n.failed);
    }

    #[test]
    fn a_full_socket_does_not_block() {
        let path = tmp_path("full");
        let _rx = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::to_address(path.to_str().expect("utf-8"));
        // Nobody reads: the receive queue fills, and then sends fail at
        // once (EAGAIN) instead of waiting.
        let start = std::time::Instant::now();
        let mut refused = false;
        for _ in 0..10_000 {
            if n.send("STATUS=x").is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused && start.elapsed() < std::time::Duration::from_secs(2));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn no_variable_no_messages() {
        let n = Notifier::disabled();
        assert!(!n.enabled());
        assert!(n.send("READY=1").is_ok());
    }
}
