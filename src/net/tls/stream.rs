//! One TLS connection over a non-blocking socket, with the calls a plain
//! socket answers: read plaintext into a buffer, send plaintext, and flush
//! what is encrypted but not written yet. The handshake happens on the way
//! (the first reads take in the ClientHello, the answers go out with the
//! next flush), so it never blocks the worker's other connections. rustls
//! keeps at most [`BUFFER_LIMIT`] of plaintext waiting to be encrypted;
//! past it a send takes nothing (EAGAIN), as a full socket would.

use crate::http::buffer::ReadBuf;
use rustls::ServerConnection;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

/// Plaintext rustls may hold for sending, per connection.
const BUFFER_LIMIT: usize = 64 * 1024;

pub struct TlsStream {
    fd: RawFd,
    conn: Mutex<ServerConnection>,
    suppress_ragged_eofs: bool,
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recv {
    pub n: usize,
    /// The socket had nothing more (its last read said EAGAIN).
    pub drained: bool,
}

/// The socket as rustls reads and writes it: non-blocking calls on the fd.
struct Fd(RawFd);

impl Read for Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n.unsigned_abs())
    }
}

impl Write for Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: send reads `buf`, which outlives the call.
        let n = unsafe { libc::send(self.0, buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n.unsigned_abs())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: msghdr points at `bufs`, which outlives the call.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len();
            libc::sendmsg(self.0, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n.unsigned_abs())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A client's TLS failure (a bad handshake, plain HTTP on the TLS port, a
/// broken record), carried inside the `io::Error` (kind InvalidData) so the
/// worker logs it as Gunicorn logs an `SSLError`: an invalid request from
/// the peer's address. The peer has been sent its alert if one applies.
#[derive(Debug)]
pub struct TlsFailure {
    /// The peer's IP address as text; empty on a Unix socket.
    pub ip: String,
    pub error: rustls::Error,
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", self.error)
    }
}

impl std::error::Error for TlsFailure {}

fn tls_error(fd: RawFd, error: rustls::Error) -> io::Error {
    // SAFETY: `fd` is the connection's socket, open for as long as the
    // stream that owns it; it is only borrowed for this call.
    let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let ip = socket2::SockRef::from(&sock)
        .peer_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    io::Error::new(io::ErrorKind::InvalidData, TlsFailure { ip, error })
}

impl TlsStream {
    pub fn new(fd: RawFd, config: Arc<rustls::ServerConfig>, suppress_ragged_eofs: bool) -> io::Result<TlsStream> {
        let mut conn = ServerConnection::new(config).map_err(|e| tls_error(fd, e))?;
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(TlsStream { fd, conn: Mutex::new(conn), suppress_ragged_eofs })
    }

    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        match self.conn.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reads up to `max` bytes of plaintext into `buf`, reading and
    /// decrypting from the socket as needed. Ok(n == 0): the peer closed
    /// (close_notify, or a plain FIN when ragged EOFs are suppressed).
    /// EAGAIN: nothing to read until the socket has more.
    pub fn recv_into(&self, buf: &mut ReadBuf, max: usize) -> io::Result<Recv> {
        let mut conn = self.lock();
        let mut drained = false;
        loop {
            let state = conn.process_new_packets().map_err(|e| {
                // The alert for the error, if the socket takes it.
                let _ = conn.write_tls(&mut Fd(self.fd));
                tls_error(self.fd, e)
            })?;
            if conn.wants_write() {
                // Handshake answers go out at once when the socket has room.
                let _ = write_pending(&mut conn, self.fd);
            }
            let ready = state.plaintext_bytes_to_read();
            if ready > 0 {
                let spare = buf.spare(max.min(ready));
                for byte in spare.iter_mut() {
                    byte.write(0);
                }
                // SAFETY: every byte of `spare` was initialised just above.
                let room = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), spare.len()) };
                let n = conn.reader().read(room)?;
                // SAFETY: `n` bytes of the spare room were written.
                unsafe { buf.commit(n) };
                return Ok(Recv { n, drained: drained && n == ready });
            }
            if state.peer_has_closed() {
                return Ok(Recv { n: 0, drained: true });
            }
            if drained {
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            match conn.read_tls(&mut Fd(self.fd)) {
                Ok(0) => {
                    return if self.suppress_ragged_eofs {
                        Ok(Recv { n: 0, drained: true })
                    } else {
                        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "TLS: the peer closed without close_notify"))
                    };
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => drained = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts what it can of `bufs` and writes what the socket takes;
    /// Ok(n): `n` plaintext bytes were taken (some may still wait, encrypted,
    /// for [`TlsStream::flush`]). EAGAIN when it could take none.
    pub fn send(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut conn = self.lock();
        // Room first: what waits encrypted goes before new bytes.
        write_pending(&mut conn, self.fd)?;
        let mut taken = 0;
        for b in bufs {
            let n = conn.writer().write(b)?;
            taken += n;
            if n < b.len() {
                break;
            }
        }
        write_pending(&mut conn, self.fd)?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        Ok(taken)
    }

    /// Writes what is encrypted and waiting; Ok(true) when nothing is left.
    pub fn flush(&self) -> io::Result<bool> {
        let mut conn = self.lock();
        write_pending(&mut conn, self.fd)
    }

    /// Encrypted bytes are waiting for the socket.
    pub fn has_pending(&self) -> bool {
        self.lock().wants_write()
    }

    /// The end of our side: close_notify, then whatever the socket takes.
    pub fn close_notify(&self) {
        let mut conn = self.lock();
        conn.send_close_notify();
        let _ = write_pending(&mut conn, self.fd);
    }

    /// The client's verified certificate chain (DER), leaf first.
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        let conn = self.lock();
        conn.peer_certificates().map(|c| c.iter().map(|d| d.to_vec()).collect()).unwrap_or_default()
    }

    /// The negotiated version (`0x0303` TLS 1.2, `0x0304` TLS 1.3) and
    /// cipher suite numbers, for the ASGI TLS extension.
    /// The handshake is not over yet (ALPN is not known).
    pub fn is_handshaking(&self) -> bool {
        self.lock().is_handshaking()
    }

    /// Whether ALPN chose HTTP/2.
    pub fn alpn_is_h2(&self) -> bool {
        self.lock().alpn_protocol() == Some(b"h2")
    }

    pub fn negotiated(&self) -> Option<(u16, u16)> {
        let conn = self.lock();
        Some((u16::from(conn.protocol_version()?), u16::from(conn.negotiated_cipher_suite()?.suite())))
    }
}

/// Writes encrypted bytes while the socket takes them; Ok(true) once all
/// are out.
fn write_pending(conn: &mut ServerConnection, fd: RawFd) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(&mut Fd(fd)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
