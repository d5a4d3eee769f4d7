//! An accepted client connection, TCP or Unix, and who is on the other end.

use crate::http::buffer::ReadBuf;
use crate::net::tls::TlsStream;
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// Unix sockets have no peer address; WSGI gets an empty REMOTE_ADDR.
    Unix,
}

impl Peer {
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Unix => None,
        }
    }
}

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// A TLS session over a TCP (or Unix) socket.
    Tls(Box<TlsSocket>),
}

/// The socket under a TLS session, and the session.
pub struct TlsSocket {
    sock: Stream,
    tls: TlsStream,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            Stream::Unix(s) => f.debug_tuple("Unix").field(s).finish(),
            Stream::Tls(t) => f.debug_tuple("Tls").field(&t.sock).finish(),
        }
    }
}

/// What a read found: bytes (0: the peer closed), and whether the socket
/// had nothing more to give (an edge-triggered worker then waits for the
/// next edge).
pub use crate::net::tls::Recv;

impl Stream {
    /// Wraps an accepted socket in a TLS session (the handshake happens as
    /// the worker reads).
    pub fn into_tls(self, config: Arc<rustls::ServerConfig>, suppress_ragged_eofs: bool) -> io::Result<Stream> {
        let tls = TlsStream::new(self.fd(), config, suppress_ragged_eofs)?;
        Ok(Stream::Tls(Box::new(TlsSocket { sock: self, tls })))
    }

    pub fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.sock.fd(),
        }
    }

    pub fn is_tcp(&self) -> bool {
        match self {
            Stream::Tcp(_) => true,
            Stream::Unix(_) => false,
            Stream::Tls(t) => t.sock.is_tcp(),
        }
    }

    /// The TLS session, when the connection has one.
    pub fn tls(&self) -> Option<&TlsStream> {
        match self {
            Stream::Tls(t) => Some(&t.tls),
            _ => None,
        }
    }

    /// Shuts a direction of the socket; over TLS, the write side first says
    /// close_notify.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tls(t) => {
                if how != Shutdown::Read {
                    t.tls.close_notify();
                }
                t.sock.shutdown(how)
            }
        }
    }

    /// One read of up to `max` bytes into `buf`, without blocking (EAGAIN
    /// when nothing is there); over TLS, decrypted.
    pub fn recv_into(&self, buf: &mut ReadBuf, max: usize) -> io::Result<Recv> {
        if let Stream::Tls(t) = self {
            return t.tls.recv_into(buf, max);
        }
        let spare = buf.spare(max);
        let asked = spare.len();
        // SAFETY: recv writes at most `spare.len()` bytes into memory we own.
        let n = unsafe { libc::recv(self.fd(), spare.as_mut_ptr().cast(), asked, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n.unsigned_abs();
        // SAFETY: recv wrote these `n` bytes.
        unsafe { buf.commit(n) };
        // A short read means the socket is drained (0: it is closed).
        Ok(Recv { n, drained: n < asked })
    }

    /// Sends without blocking (MSG_DONTWAIT), so a caller holding the GIL can
    /// try the common case first and only release it when the socket is full.
    /// Over TLS: the plaintext taken (encrypted and written as far as the
    /// socket takes it; see [`Stream::flush_pending`]).
    pub fn send_nonblocking(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if let Stream::Tls(t) = self {
            return t.tls.send(bufs);
        }
        // SAFETY: msghdr points at `bufs`, which outlives the call.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len();
            libc::sendmsg(self.fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Writes what TLS has encrypted and not written yet; Ok(true) when
    /// nothing waits (always, on a plain socket).
    pub fn flush_pending(&self) -> io::Result<bool> {
        match self {
            Stream::Tls(t) => t.tls.flush(),
            _ => Ok(true),
        }
    }

    /// Encrypted bytes wait for the socket.
    pub fn has_pending(&self) -> bool {
        self.tls().is_some_and(|t| t.has_pending())
    }
}
