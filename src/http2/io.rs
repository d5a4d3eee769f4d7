//! The socket as the `h2` crate reads and writes it: tokio's `AsyncRead`
//! and `AsyncWrite` over a non-blocking [`Stream`] (plain or TLS), with no
//! runtime behind them. A read or write that would block answers `Pending`
//! and notes it; the worker's engine drives the connection again on the
//! socket's next epoll edge, so no waker is kept for the socket.

use crate::http::buffer::ReadBuf;
use crate::net::stream::Stream;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Plaintext is read from the socket this much at a time.
const READ_SIZE: usize = 16 * 1024;

pub struct H2Io {
    stream: Arc<Stream>,
    /// Bytes read before the connection became HTTP/2 (the client's preface
    /// sniffed for h2c, or read with the TLS handshake), then each read.
    inbuf: ReadBuf,
    /// The last read found the socket empty (EAGAIN): the next edge says
    /// when to try again.
    pub read_blocked: bool,
    /// The last write found the socket full.
    pub write_blocked: bool,
    /// The peer closed its side.
    pub eof: bool,
}

impl H2Io {
    pub fn new(stream: Arc<Stream>, already_read: &[u8]) -> H2Io {
        let mut inbuf = ReadBuf::with_capacity(READ_SIZE.max(already_read.len()));
        inbuf.extend(already_read);
        H2Io { stream, inbuf, read_blocked: false, write_blocked: false, eof: false }
    }

    fn would_block(e: &io::Error) -> bool {
        e.kind() == io::ErrorKind::WouldBlock
    }
}

impl tokio::io::AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.inbuf.is_empty() {
            loop {
                match this.stream.recv_into(&mut this.inbuf, READ_SIZE) {
                    Ok(r) if r.n == 0 => {
                        this.eof = true;
                        return Poll::Ready(Ok(()));
                    }
                    Ok(_) => break,
                    Err(e) if Self::would_block(&e) => {
                        this.read_blocked = true;
                        return Poll::Pending;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        let unread = this.inbuf.unread();
        let n = unread.len().min(buf.remaining());
        buf.put_slice(&unread[..n]);
        this.inbuf.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for H2Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.stream.send_nonblocking(bufs) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if Self::would_block(&e) => {
                    self.write_blocked = true;
                    return Poll::Pending;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Only TLS keeps bytes back (encrypted, waiting for the socket).
        match self.stream.flush_pending() {
            Ok(true) => Poll::Ready(Ok(())),
            Ok(false) => {
                self.write_blocked = true;
                Poll::Pending
            }
            Err(e) if Self::would_block(&e) => {
                self.write_blocked = true;
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        // The read side stays open: the peer's last frames may still come.
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}
