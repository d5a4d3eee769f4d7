//! The socket as the `h2` crate reads and writes it: tokio's `AsyncRead`
//! and `AsyncWrite` over a non-blocking [`Stream`] (plain or TLS), with no
//! runtime behind them. A read or write that would block answers `Pending`
//! and notes it; the worker's engine drives the connection again on the
//! socket's next epoll edge, so no waker is kept for the socket. Once a
//! read found the socket empty, reads answer `Pending` without a system
//! call until the engine sees the next readable edge ([`ReadReady`]): a
//! connection is driven far more often (each response a stream queues)
//! than it has input.

use crate::http::buffer::ReadBuf;
use crate::net::stream::Stream;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Plaintext is read from the socket this much at a time.
const READ_SIZE: usize = 16 * 1024;
/// Input taken per drive of the connection: a client that sends without
/// pause (a PING or SETTINGS flood) would otherwise keep `h2` reading for
/// as long as it sends, and the worker's other connections would wait.
const READ_BUDGET: usize = 256 * 1024;

pub struct H2Io {
    stream: Arc<Stream>,
    /// Bytes read before the connection became HTTP/2 (the client's preface
    /// sniffed for h2c, or read with the TLS handshake), then each read.
    inbuf: ReadBuf,
    /// Cleared when a read finds the socket empty (EAGAIN); the engine
    /// sets it again at the socket's next readable edge.
    read_ready: ReadReady,
    /// The last write found the socket full.
    pub write_blocked: bool,
    /// The peer closed its side.
    pub eof: bool,
}

impl H2Io {
    pub fn new(stream: Arc<Stream>, already_read: &[u8], read_ready: ReadReady) -> H2Io {
        let mut inbuf = ReadBuf::with_capacity(READ_SIZE.max(already_read.len()));
        inbuf.extend(already_read);
        H2Io { stream, inbuf, read_ready, write_blocked: false, eof: false }
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
            if !this.read_ready.get() {
                return Poll::Pending;
            }
            if this.read_ready.spent() {
                // The drive ends here and the engine comes back for more
                // after its other connections.
                return Poll::Pending;
            }
            loop {
                match this.stream.recv_into(&mut this.inbuf, READ_SIZE) {
                    Ok(r) if r.n == 0 => {
                        this.eof = true;
                        return Poll::Ready(Ok(()));
                    }
                    Ok(r) => {
                        this.read_ready.charge(r.n);
                        break;
                    }
                    Err(e) if Self::would_block(&e) => {
                        this.read_ready.clear();
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

/// Whether the socket may have input, and how much input this drive may
/// still take: shared by the connection's [`H2Io`] (which clears the flag on
/// EAGAIN and spends the budget) and its session (which sets the flag on a
/// readable edge and renews the budget each drive).
#[derive(Clone)]
pub struct ReadReady(Arc<ReadState>);

struct ReadState {
    ready: AtomicBool,
    taken: AtomicUsize,
}

impl Default for ReadReady {
    fn default() -> ReadReady {
        ReadReady(Arc::new(ReadState { ready: AtomicBool::new(true), taken: AtomicUsize::new(0) }))
    }
}

impl ReadReady {
    pub fn set(&self) {
        self.0.ready.store(true, Ordering::Relaxed);
    }

    /// A new drive: the budget is whole again.
    pub fn renew(&self) {
        self.0.taken.store(0, Ordering::Relaxed);
    }

    /// The budget ran out during this drive.
    pub fn spent(&self) -> bool {
        self.0.taken.load(Ordering::Relaxed) >= READ_BUDGET
    }

    fn charge(&self, n: usize) {
        self.0.taken.fetch_add(n, Ordering::Relaxed);
    }

    fn clear(&self) {
        self.0.ready.store(false, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.ready.load(Ordering::Relaxed)
    }
}
