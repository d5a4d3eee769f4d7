//! The control socket (`--control-socket`, `--control-socket-mode`,
//! `--no-control-socket`): a Unix socket speaking Gunicorn 27's control
//! protocol, so Gunicorn's `gunicornc` and ferrocorn's `ferrocornc` both
//! work. Served from the master's own loop on non-blocking sockets, like
//! the metrics endpoint: Gunicorn runs an asyncio thread for it, which a
//! forking master has to stop around every fork; here there is no thread.

pub mod answer;
pub mod command;
pub mod protocol;

use super::netio::Endpoint;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Gunicorn closes a control client idle for five minutes.
const IDLE: Duration = Duration::from_secs(300);
const MAX_CLIENTS: usize = 16;

pub struct ControlServer {
    endpoint: Endpoint,
    /// The path the settings name; `path` differs when another master
    /// already answered there.
    pub configured: PathBuf,
    pub path: PathBuf,
    pub mode: u32,
    /// The socket file this server made (device, inode): only that file is
    /// removed at exit, not one a newer master (USR2) put in its place.
    made: (u64, u64),
    /// Whole commands were left for the next turn.
    backlog: bool,
}

/// Commands taken from one client in one turn of the master's loop.
const PER_CLIENT: usize = 8;
/// And from all clients.
const PER_TURN: usize = 64;

impl ControlServer {
    /// Creates the socket as Gunicorn does: the parent directory made with
    /// mode 0700 if missing, an old socket file replaced, the mode applied.
    pub fn open(path: &Path, mode: u32) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
            // Gunicorn removes whatever is there; a file that is not a
            // socket is more likely a mistyped path than a stale socket.
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        let addr = SockAddr::unix(path)?;
        // Bound under the umask that gives exactly the mode asked: never,
        // even briefly, more open than asked, and no chmod by name after.
        crate::util::owner::with_umask(i64::from(!mode & 0o777), || sock.bind(&addr))?;
        sock.listen(16)?;
        let meta = std::fs::symlink_metadata(path)?;
        let endpoint = Endpoint::new(sock, MAX_CLIENTS, IDLE, protocol::MAX_MESSAGE + 4)?;
        Ok(ControlServer {
            endpoint,
            configured: path.to_owned(),
            path: path.to_owned(),
            mode,
            made: (meta.dev(), meta.ino()),
            backlog: false,
        })
    }

    /// A reload changed only the mode: applied if the path still names the
    /// socket made here (never through whatever replaced it).
    pub fn set_mode(&mut self, mode: u32) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(&self.path)?;
        if !meta.file_type().is_socket() || (meta.dev(), meta.ino()) != self.made {
            return Err(io::Error::other(format!("{} is no longer this server's socket", self.path.display())));
        }
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(mode))?;
        self.mode = mode;
        Ok(())
    }

    pub fn poll_fds(&self, out: &mut Vec<libc::pollfd>) {
        self.endpoint.poll_fds(out);
    }

    /// Does the I/O and returns the complete requests, in order, with the
    /// connection each came on. A malformed message drops its client, as
    /// Gunicorn's server does.
    /// At most [`PER_CLIENT`] commands of each client and [`PER_TURN`] in
    /// all are taken per turn, so that one client pipelining commands
    /// cannot hold the master's loop; the rest wait for the next turn
    /// ([`ControlServer::has_backlog`]).
    pub fn turn(&mut self, polled: &[libc::pollfd], now: Instant) -> Vec<(RawFd, protocol::Request)> {
        self.endpoint.turn(polled, now);
        let idle = self.endpoint.idle();
        let mut out = Vec::new();
        self.backlog = false;
        for conn in &mut self.endpoint.conns {
            let mut taken = 0;
            while conn.is_open() {
                if taken == PER_CLIENT || out.len() == PER_TURN {
                    self.backlog |= protocol::message_ready(&conn.input);
                    break;
                }
                taken += 1;
                match protocol::take_message(&mut conn.input) {
                    Ok(Some(request)) => {
                        conn.extend(now, idle);
                        out.push((conn.fd(), request));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        crate::log::debug!("Control client error: {e}");
                        conn.abort();
                    }
                }
            }
        }
        out
    }

    /// Commands already buffered wait for the next turn: the loop should
    /// not sleep before it.
    pub fn has_backlog(&self) -> bool {
        self.backlog
    }

    pub fn reply(&mut self, fd: RawFd, message: &[u8]) {
        if let Some(conn) = self.endpoint.conns.iter_mut().find(|c| c.fd() == fd) {
            conn.send(message);
        }
    }

    /// After the answers of a turn: clients that closed their side are
    /// closed once answered; finished connections go.
    pub fn settle(&mut self, now: Instant) {
        for conn in &mut self.endpoint.conns {
            if conn.is_open() && conn.eof {
                conn.finish();
            }
        }
        self.endpoint.sweep(now);
    }

    /// Closes the socket and removes its file if it is still the one made
    /// here.
    pub fn close(self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.made {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Who answers on the socket file at `path`.
#[derive(Debug, PartialEq, Eq)]
pub enum Occupant {
    /// No file, or a socket nobody listens on (a master that died).
    Nobody,
    /// A live server; its pid when the kernel tells (`SO_PEERCRED`).
    Live(Option<i32>),
}

/// Connects to `path` without blocking, to tell a live master's socket from
/// a stale file before taking the path over.
pub fn occupant(path: &Path) -> Occupant {
    let Ok(sock) = Socket::new(Domain::UNIX, Type::STREAM, None) else { return Occupant::Nobody };
    let Ok(addr) = SockAddr::unix(path) else { return Occupant::Nobody };
    if sock.set_nonblocking(true).is_err() {
        return Occupant::Nobody;
    }
    match sock.connect(&addr) {
        Ok(()) => Occupant::Live(peer_pid(&sock)),
        // A full backlog: someone listens, too busy to take us now.
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Occupant::Live(None),
        Err(_) => Occupant::Nobody,
    }
}

fn peer_pid(sock: &Socket) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of the given length.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid)
}

/// This master's own path beside a busy one: `gunicorn.ctl` becomes
/// `gunicorn.<pid>.ctl`.
pub fn instance_path(path: &Path, pid: i32) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{pid}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{pid}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn creates_answers_and_removes_only_its_own_file() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-ctl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/ferrocorn.ctl");
        let mut server = ControlServer::open(&path, 0o660).expect("open");
        let meta = std::fs::metadata(&path).expect("made");
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(std::fs::metadata(path.parent().expect("dir")).expect("dir").permissions().mode() & 0o777, 0o700);

        let mut client = UnixStream::connect(&path).expect("connect");
        client.write_all(&protocol::encode(&serde_json::json!({"id": 1, "command": "help"}))).expect("send");
        let mut got = Vec::new();
        for _ in 0..20 {
            let mut fds = Vec::new();
            server.poll_fds(&mut fds);
            // SAFETY: a valid pollfd array.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
            got.extend(server.turn(&fds, Instant::now()));
            for (fd, r) in &got {
                server.reply(*fd, &protocol::encode(&protocol::ok(&r.id, serde_json::json!({}))));
            }
            server.settle(Instant::now());
            if !got.is_empty() {
                break;
            }
        }
        assert_eq!(got.len(), 1);
        let mut len = [0u8; 4];
        client.read_exact(&mut len).expect("length");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        client.read_exact(&mut body).expect("body");
        assert_eq!(body, br#"{"id":1,"status":"ok","data":{}}"#);

        // a regular file is not replaced
        let file = dir.join("not-a-socket");
        std::fs::write(&file, "keep").expect("write");
        assert!(ControlServer::open(&file, 0o600).is_err());
        assert_eq!(std::fs::read_to_string(&file).expect("kept"), "keep");

        // a live server is seen as such, with its pid; a closed one is not
        assert_eq!(occupant(&path), Occupant::Live(Some(std::process::id() as i32)));
        assert_eq!(occupant(&dir.join("none.ctl")), Occupant::Nobody);
        let stale = dir.join("stale.ctl");
        drop(ControlServer::open(&stale, 0o600).expect("open"));
        assert!(stale.exists());
        assert_eq!(occupant(&stale), Occupant::Nobody);
        assert_eq!(instance_path(&path, 42), dir.join("sub/ferrocorn.42.ctl"));
        assert_eq!(instance_path(Path::new("/run/ctl"), 7), PathBuf::from("/run/ctl.7"));

        // a newer server took the path over: the old one leaves it alone
        let newer = ControlServer::open(&path, 0o600).expect("take over");
        server.close();
        assert!(path.exists());
        newer.close();
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
