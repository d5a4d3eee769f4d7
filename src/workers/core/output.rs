//! Response bytes on their way to a client that may be slower than the
//! application: sent straight from the caller's buffers when the socket
//! takes them. What it does not take is queued: small pieces copied, a large
//! body the caller can lend (an immutable Python `bytes`) kept by reference,
//! so a slow reader never costs a copy of a whole response.

use crate::net::stream::Stream;
use std::collections::VecDeque;
use std::io::{self, IoSlice};

/// Most pieces gathered into one sendmsg.
const GATHER: usize = 64;

/// Bytes the queue keeps by reference.
pub type Lent = Box<dyn AsRef<[u8]> + Send>;

enum Segment {
    Copied(Vec<u8>),
    Held { data: Lent, start: usize },
}

impl Segment {
    fn bytes(&self) -> &[u8] {
        match self {
            Segment::Copied(v) => v,
            Segment::Held { data, start } => data.as_ref().as_ref().get(*start..).unwrap_or_default(),
        }
    }
}

/// Bytes a client has not taken yet, in order.
#[derive(Default)]
pub struct OutQueue {
    segments: VecDeque<Segment>,
    /// How much of the front segment has gone out.
    front_sent: usize,
    len: usize,
}

impl std::fmt::Debug for OutQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutQueue").field("len", &self.len).field("segments", &self.segments.len()).finish()
    }
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
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues bytes behind what is already waiting (copied).
    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        if let Some(Segment::Copied(last)) = self.segments.back_mut() {
            last.extend_from_slice(bytes);
            return;
        }
        self.segments.push_back(Segment::Copied(bytes.to_vec()));
    }

    /// Queues `data[start..]` by reference.
    fn push_lent(&mut self, data: Lent, start: usize) {
        let n = data.as_ref().as_ref().len().saturating_sub(start);
        if n == 0 {
            return;
        }
        self.len += n;
        self.segments.push_back(Segment::Held { data, start });
    }

    /// Sends what is queued, then `parts`, as far as the socket takes them
    /// without blocking; the rest of `parts` is copied into the queue.
    /// `try_now` false: the socket is known to be full, queue everything.
    pub fn send(&mut self, stream: &Stream, parts: &[&[u8]], try_now: bool) -> io::Result<Sent> {
        let (done, blocked) = self.send_after_queue(stream, parts, try_now)?;
        let mut skip = done;
        for p in parts {
            let from = skip.min(p.len());
            self.push(&p[from..]);
            skip -= from;
        }
        Ok(if blocked { Sent::Blocked } else { Sent::All })
    }

    /// As [`OutQueue::send`] for `prefix`, `body`, `suffix`, but what the
    /// socket does not take of `body` is kept by reference, not copied.
    pub fn send_lending(
        &mut self,
        stream: &Stream,
        prefix: &[u8],
        body: Lent,
        suffix: &[u8],
        try_now: bool,
    ) -> io::Result<Sent> {
        let (done, blocked) = {
            let slices = [prefix, body.as_ref().as_ref(), suffix];
            self.send_after_queue(stream, &slices, try_now)?
        };
        let body_len = body.as_ref().as_ref().len();
        let from_prefix = done.min(prefix.len());
        self.push(&prefix[from_prefix..]);
        let from_body = (done - from_prefix).min(body_len);
        self.push_lent(body, from_body);
        let from_suffix = (done - from_prefix - from_body).min(suffix.len());
        self.push(&suffix[from_suffix..]);
        Ok(if blocked { Sent::Blocked } else { Sent::All })
    }

    /// Flushes the queue, then sends `parts` while the socket takes them:
    /// how much of `parts` went, and whether the socket filled up.
    fn send_after_queue(&mut self, stream: &Stream, parts: &[&[u8]], try_now: bool) -> io::Result<(usize, bool)> {
        if !try_now {
            return Ok((0, true));
        }
        if (!self.is_empty() || stream.has_pending()) && self.flush(stream)? == Sent::Blocked {
            return Ok((0, true));
        }
        let mut slices: Vec<IoSlice<'_>> = parts.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)).collect();
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        let mut done = 0;
        while done < total {
            match stream.send_nonblocking(rest) {
                Ok(n) => {
                    done += n;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((done, true)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Over TLS the bytes may be taken but not all written yet.
        Ok((done, !stream.flush_pending()?))
    }

    /// Sends what is queued (and, over TLS, what is encrypted and waiting);
    /// `Sent::All` once nothing is left.
    pub fn flush(&mut self, stream: &Stream) -> io::Result<Sent> {
        if !stream.flush_pending()? {
            return Ok(Sent::Blocked);
        }
        while !self.is_empty() {
            let n = {
                let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.segments.len().min(GATHER));
                for (i, seg) in self.segments.iter().take(GATHER).enumerate() {
                    let bytes = seg.bytes();
                    let bytes = if i == 0 { bytes.get(self.front_sent..).unwrap_or_default() } else { bytes };
                    slices.push(IoSlice::new(bytes));
                }
                match stream.send_nonblocking(&slices) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sent::Blocked),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.consume(n);
        }
        Ok(if stream.flush_pending()? { Sent::All } else { Sent::Blocked })
    }

    /// Drops `n` sent bytes from the front.
    fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.segments.front() else { break };
            let left = front.bytes().len() - self.front_sent;
            if n < left {
                self.front_sent += n;
                return;
            }
            n -= left;
            self.segments.pop_front();
            self.front_sent = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    fn pair() -> (Stream, UnixStream) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        (Stream::Unix(a), b)
    }

    fn drain(q: &mut OutQueue, stream: &Stream, peer: &mut UnixStream, total: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 65536];
        while got.len() < total {
            q.flush(stream).expect("flush");
            let n = peer.read(&mut chunk).expect("read");
            got.extend_from_slice(&chunk[..n]);
        }
        got
    }

    #[test]
    fn what_the_socket_does_not_take_is_queued_in_order() {
        let (stream, mut peer) = pair();
        let mut q = OutQueue::default();
        let big = vec![7u8; 1 << 20];
        assert_eq!(q.send(&stream, &[b"head", &big, b"tail"], true).expect("send"), Sent::Blocked);
        assert!(!q.is_empty());
        q.push(b"more");
        let got = drain(&mut q, &stream, &mut peer, 4 + big.len() + 4 + 4);
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[got.len() - 8..], b"tailmore");
        assert!(q.is_empty());
    }

    #[test]
    fn a_lent_body_is_kept_by_reference_not_copied() {
        let (stream, mut peer) = pair();
        let mut q = OutQueue::default();
        let body: std::sync::Arc<[u8]> = (0..(4u32 << 20)).map(|i| i as u8).collect();
        struct Shared(std::sync::Arc<[u8]>);
        impl AsRef<[u8]> for Shared {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
        let sent = q.send_lending(&stream, b"HEAD", Box::new(Shared(body.clone())), b"END", true).expect("send");
        assert_eq!(sent, Sent::Blocked);
        // Only the head and the tail were copied: the body is the one the
        // caller lent (its reference count went up).
        assert!(std::sync::Arc::strong_count(&body) == 2);
        q.send(&stream, &[b"next"], true).expect("send");
        let got = drain(&mut q, &stream, &mut peer, 4 + body.len() + 3 + 4);
        assert_eq!(&got[..4], b"HEAD");
        assert_eq!(&got[4..4 + body.len()], &body[..]);
        assert_eq!(&got[4 + body.len()..], b"ENDnext");
        assert_eq!(std::sync::Arc::strong_count(&body), 1, "released once sent");
    }
}
