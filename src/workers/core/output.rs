//! Response bytes on their way to a client that may be slower than the
//! application: sent straight from the caller's buffers when the socket
//! takes them, and only what it does not take is copied into a queue.

use crate::net::stream::Stream;
use std::io::{self, IoSlice};

/// Bytes a client has not taken yet, in order.
#[derive(Default, Debug)]
pub struct OutQueue {
    buf: Vec<u8>,
    /// How much of `buf` has gone out.
    sent: usize,
}

/// What a send left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Everything went out.
    All,
    /// The socket is full (EAGAIN): the rest is queued.
    Blocked,
}

impl OutQueue {
    pub fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues bytes behind what is already waiting.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.is_empty() {
            self.buf.clear();
            self.sent = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Sends what is queued, then `parts`, as far as the socket takes them
    /// without blocking; the rest of `parts` is queued. `try_now` false:
    /// the socket is known to be full, queue everything.
    pub fn send(&mut self, stream: &Stream, parts: &[&[u8]], try_now: bool) -> io::Result<Sent> {
        let mut blocked = !try_now;
        if !blocked {
            blocked = self.send_parts(stream, parts)?;
            if !blocked {
                return Ok(Sent::All);
            }
        } else {
            for p in parts {
                self.push(p);
            }
        }
        Ok(if blocked && !self.is_empty() { Sent::Blocked } else { Sent::All })
    }

    /// Sends what is queued; `Sent::All` once nothing is left.
    pub fn flush(&mut self, stream: &Stream) -> io::Result<Sent> {
        if self.send_parts(stream, &[])? {
            Ok(Sent::Blocked)
        } else {
            Ok(Sent::All)
        }
    }

    /// The queue then `parts`, gathered into as few sendmsg calls as the
    /// socket allows; true when it filled up (what is left is queued).
    fn send_parts(&mut self, stream: &Stream, parts: &[&[u8]]) -> io::Result<bool> {
        let queued = &self.buf[self.sent..];
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len() + 1);
        if !queued.is_empty() {
            slices.push(IoSlice::new(queued));
        }
        slices.extend(parts.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)));
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let mut done = 0;
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        let mut blocked = false;
        while done < total {
            match stream.send_nonblocking(rest) {
                Ok(n) => {
                    done += n;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // What left came first from the queue, then from `parts` in order.
        let from_queue = done.min(queued.len());
        self.sent += from_queue;
        let mut skip = done - from_queue;
        if self.is_empty() {
            self.buf.clear();
            self.sent = 0;
        }
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
            } else {
                self.buf.extend_from_slice(&p[skip..]);
                skip = 0;
            }
        }
        Ok(blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn what_the_socket_does_not_take_is_queued_in_order() {
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        let stream = Stream::Unix(a);
        let mut q = OutQueue::default();
        let big = vec![7u8; 1 << 20];
        assert_eq!(q.send(&stream, &[b"head", &big, b"tail"], true).expect("send"), Sent::Blocked);
        assert!(!q.is_empty());
        q.push(b"more");
        let total = 4 + big.len() + 4 + 4;
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 65536];
        while got.len() < total {
            q.flush(&stream).expect("flush");
            let n = b.read(&mut chunk).expect("read");
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[got.len() - 8..], b"tailmore");
        assert!(q.is_empty());
    }
}
