//! The socket calls every worker makes on a client connection besides
//! `Stream`'s own: discarding input while lingering, waiting for a socket.

use crate::net::stream::Stream;
use crate::net::tls::TlsFailure;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// What reading and dropping a lingering client's input found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discarded {
    /// The client closed (or the socket failed): nothing more to wait for.
    Closed,
    /// Nothing more to read now; this many bytes were dropped.
    WouldBlock(usize),
    /// `limit` bytes were dropped: enough.
    Limit,
}

/// Reads and drops what the client sends, without blocking, up to `limit`.
pub fn discard_input(fd: RawFd, limit: usize) -> Discarded {
    let mut scratch = [0u8; 4096];
    let mut dropped = 0usize;
    loop {
        // SAFETY: a non-blocking read into a local buffer.
        let n = unsafe { libc::recv(fd, scratch.as_mut_ptr().cast(), scratch.len(), libc::MSG_DONTWAIT) };
        if n > 0 {
            dropped += n.unsigned_abs();
            if dropped >= limit {
                return Discarded::Limit;
            }
            continue;
        }
        if n == 0 {
            return Discarded::Closed;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::WouldBlock => return Discarded::WouldBlock(dropped),
            io::ErrorKind::Interrupted => continue,
            _ => return Discarded::Closed,
        }
    }
}

/// Waits until `stream` has input (Ok(false) on timeout). Over TLS, what
/// is encrypted and waiting goes out first: the peer may be waiting for it
/// (a handshake answer) before it sends anything.
pub fn wait_input(stream: &Stream, timeout: Option<Duration>) -> io::Result<bool> {
    while !stream.flush_pending()? {
        wait_fd(stream.fd(), libc::POLLOUT, timeout)?;
    }
    wait_fd(stream.fd(), libc::POLLIN, timeout)
}

/// poll(2) for one fd; Ok(false) on timeout.
pub fn wait_fd(fd: RawFd, events: libc::c_short, timeout: Option<Duration>) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc > 0)
}

/// A client socket error worth only a debug line (the client left), or a
/// real one, logged as Gunicorn's workers log them.
pub fn log_socket_error(e: &io::Error) {
    // A client's TLS failure (garbage instead of a ClientHello, plain HTTP
    // on the TLS port, a certificate refused): Gunicorn's warning for an
    // SSLError, no trace; a TLS peer gone mid-record is a debug line.
    if let Some(failure) = e.get_ref().and_then(|inner| inner.downcast_ref::<TlsFailure>()) {
        crate::log::warning!("Invalid request from ip={}: {}", failure.ip, failure);
        return;
    }
    if matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof) {
        crate::log::debug!("Closing connection: {e}");
        return;
    }
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => crate::log::debug!("Ignoring connection reset"),
        Some(libc::ENOTCONN) => crate::log::debug!("Ignoring socket not connected"),
        Some(libc::EPIPE) => crate::log::debug!("Ignoring EPIPE"),
        _ => crate::log::error!("Socket error processing request.\n{e}"),
    }
}
