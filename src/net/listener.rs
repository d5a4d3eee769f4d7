//! Listening sockets, made once in the master before any fork and shared
//! by every worker (Gunicorn's `sock.py`). A `Listener` is a cheap handle:
//! cloning it for a worker does not duplicate the socket, and dropping it
//! never unlinks a Unix socket path (only the master's `close` does).

use super::bind::BindSpec;
use super::stream::{Peer, Stream};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(String),
}

#[derive(Clone)]
pub struct Listener {
    sock: Arc<Socket>,
    pub address: Address,
}

impl Listener {
    /// Binds `spec` with Gunicorn's options: SO_REUSEADDR, optional
    /// SO_REUSEPORT, TCP_NODELAY, non-blocking, inheritable (so a re-exec'd
    /// master can take it over), then listen(backlog).
    pub fn bind(spec: &BindSpec, backlog: i32, reuse_port: bool) -> io::Result<Listener> {
        match spec {
            BindSpec::Tcp { host, port } => {
                let addr = resolve(host, *port)?;
                let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
                sock.set_reuse_address(true)?;
                if reuse_port {
                    sock.set_reuse_port(true)?;
                }
                sock.set_tcp_nodelay(true)?;
                sock.bind(&SockAddr::from(addr))?;
                Self::finish(sock, backlog)
            }
            BindSpec::Unix(path) => {
                remove_stale_socket(path)?;
                let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                sock.set_reuse_address(true)?;
                sock.bind(&SockAddr::unix(path)?)?;
                Self::finish(sock, backlog)
            }
            BindSpec::Fd(fd) => Self::from_fd(*fd, backlog),
        }
    }

    /// Takes over a socket somebody else bound (fd://N, systemd, re-exec).
    pub fn from_fd(fd: RawFd, backlog: i32) -> io::Result<Listener> {
        // Only a socket is taken over: wrapping any other fd would close it
        // on the error path.
        // SAFETY: fstat fills `st` for any fd number; errors are reported.
        let is_socket = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
        };
        if !is_socket {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("fd {fd} is not a socket")));
        }
        // SAFETY: the fd is a socket handed to us to own (Gunicorn closes its
        // own copy the same way).
        let sock = unsafe { Socket::from_raw_fd(fd) };
        sock.local_addr()?;
        Self::finish(sock, backlog)
    }

    fn finish(sock: Socket, backlog: i32) -> io::Result<Listener> {
        sock.set_nonblocking(true)?;
        set_inheritable(sock.as_raw_fd())?;
        // An inherited socket may already listen; listening again can be
        // refused (SELinux), so only listen when it does not.
        if !is_listening(&sock) {
            sock.listen(backlog)?;
        }
        let local = sock.local_addr()?;
        let address = match local.as_socket() {
            Some(a) => Address::Tcp(a),
            // An abstract name (one systemd may pass) keeps its leading NUL,
            // as `BindSpec::Unix` spells it.
            None => Address::Unix(match (local.as_pathname(), local.as_abstract_namespace()) {
                (Some(p), _) => p.to_string_lossy().into_owned(),
                (None, Some(name)) => format!("\0{}", String::from_utf8_lossy(name)),
                (None, None) => String::new(),
            }),
        };
        Ok(Listener { sock: Arc::new(sock), address })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Connections waiting in the accept queue (Gunicorn's `get_backlog`:
    /// `tcpi_unacked` of a listening TCP socket on Linux); -1 where the
    /// kernel cannot tell (Unix sockets), 0 if the query fails.
    pub fn backlog(&self) -> i64 {
        if !matches!(self.address, Address::Tcp(_)) {
            return -1;
        }
        #[cfg(target_os = "linux")]
        {
            // SAFETY: getsockopt fills a zeroed tcp_info of the size given.
            unsafe {
                let mut info: libc::tcp_info = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
                let rc = libc::getsockopt(
                    self.fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_INFO,
                    (&mut info as *mut libc::tcp_info).cast(),
                    &mut len,
                );
                if rc == 0 {
                    i64::from(info.tcpi_unacked)
                } else {
                    0
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            -1
        }
    }

    /// Accepts one pending connection, or None when there is none. The new
    /// socket is blocking and close-on-exec.
    pub fn accept(&self) -> io::Result<Option<(Stream, Peer)>> {
        match self.sock.accept() {
            Ok((sock, addr)) => {
                // accept4 gives a blocking socket whatever the listener is
                // (Linux does not inherit O_NONBLOCK), so no fcntl is needed.
                let peer = match addr.as_socket() {
                    Some(a) => Peer::Tcp(a),
                    None => Peer::Unix,
                };
                let stream = match self.address {
                    Address::Tcp(_) => Stream::Tcp(sock.into()),
                    Address::Unix(_) => Stream::Unix(sock.into()),
                };
                Ok(Some((stream, peer)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            // The peer gave up between SYN and accept: not our error.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Closes the master's socket; the Unix path is removed when asked
    /// (not on re-exec, systemd or reuse-port, as Gunicorn decides).
    pub fn close(self, unlink: bool) {
        if unlink {
            match &self.address {
                Address::Unix(path) if !path.is_empty() && !path.starts_with('\0') => {
                    let _ = std::fs::remove_file(path);
                }
                _ => {}
            }
        }
        drop(self);
    }
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.address {
            Address::Tcp(SocketAddr::V4(a)) => write!(f, "http://{}:{}", a.ip(), a.port()),
            Address::Tcp(SocketAddr::V6(a)) => write!(f, "http://[{}]:{}", a.ip(), a.port()),
            Address::Unix(path) => match path.strip_prefix('\0') {
                Some(name) => write!(f, "unix:@{name}"),
                None => write!(f, "unix:{path}"),
            },
        }
    }
}

/// Gunicorn binds IPv6 when the host parses as IPv6, else the first IPv4
/// address the name resolves to ("" and "0.0.0.0" mean every interface).
fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, format!("no IPv4 address for {host}")))
}

fn remove_stale_socket(path: &str) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if path.starts_with('\0') {
        return Ok(());
    }
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("'{path}' is not a socket"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_inheritable(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn is_listening(sock: &Socket) -> bool {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `val`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && val != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_and_accepts_on_loopback() {
        let l = Listener::bind(&BindSpec::Tcp { host: "127.0.0.1".into(), port: 0 }, 16, false).expect("bind");
        let Address::Tcp(addr) = l.address else { panic!("tcp") };
        assert!(l.accept().expect("accept").is_none());
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (_, peer) = l.accept().expect("accept").expect("a connection");
        assert!(matches!(peer, Peer::Tcp(a) if a.ip().is_loopback()));
        assert!(l.to_string().starts_with("http://127.0.0.1:"));
    }

    #[test]
    fn unix_socket_replaces_stale_path() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("s.sock").to_string_lossy().into_owned();
        let spec = BindSpec::Unix(path.clone());
        let first = Listener::bind(&spec, 8, false).expect("bind");
        drop(first); // the path stays behind, as after a crash
        let second = Listener::bind(&spec, 8, false).expect("rebind over a stale socket");
        assert_eq!(second.to_string(), format!("unix:{path}"));
        second.close(true);
        assert!(!std::path::Path::new(&path).exists());
        let abstract_name = format!("\0ferrocorn-test-{}", std::process::id());
        let l = Listener::bind(&BindSpec::Unix(abstract_name.clone()), 8, false).expect("abstract");
        assert_eq!(l.address, Address::Unix(abstract_name.clone()));
        assert_eq!(l.to_string(), format!("unix:@{}", &abstract_name[1..]));
        l.close(true);
        std::fs::write(&path, b"not a socket").expect("file");
        assert!(Listener::bind(&spec, 8, false).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
