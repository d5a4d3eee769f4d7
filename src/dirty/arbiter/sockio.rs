//! Non-blocking reads and writes on the dirty arbiter's sockets (callers'
//! connections and lanes), and the bytes waiting to be written.

use std::io;
use std::os::fd::RawFd;

/// What a read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Data(usize),
    /// Nothing more now.
    Blocked,
    /// The peer closed its side.
    Eof,
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<Read> {
    loop {
        // SAFETY: reads into `buf`, which is valid for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n > 0 {
            return Ok(Read::Data(n as usize));
        }
        if n == 0 {
            return Ok(if buf.is_empty() { Read::Blocked } else { Read::Eof });
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(Read::Blocked),
            _ => return Err(e),
        }
    }
}

/// Bytes queued for a socket, written as it takes them.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    pos: usize,
}

impl Outbox {
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            // Keep what is written from piling up in front of what is not.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Writes what the socket takes. Ok(true) once everything is out.
    pub fn flush(&mut self, fd: RawFd) -> io::Result<bool> {
        while self.pos < self.buf.len() {
            let rest = &self.buf[self.pos..];
            // SAFETY: sends from `rest`; MSG_NOSIGNAL makes a closed peer
            // an EPIPE error rather than a signal.
            let n =
                unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(false),
                    _ => return Err(e),
                }
            }
            self.pos += n as usize;
        }
        self.buf.clear();
        self.pos = 0;
        if self.buf.capacity() > 1024 * 1024 {
            // A large answer went through: give its memory back.
            self.buf = Vec::new();
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn queued_bytes_go_out_in_order_as_the_peer_reads() {
        let (a, b) = UnixStream::pair().expect("pair");
        a.set_nonblocking(true).expect("nb");
        b.set_nonblocking(true).expect("nb");
        let mut out = Outbox::default();
        let big = vec![7u8; 4 * 1024 * 1024];
        out.push(b"head");
        out.push(&big);
        assert!(!out.flush(a.as_raw_fd()).expect("flush"), "more than the socket holds");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match read(b.as_raw_fd(), &mut buf).expect("read") {
                Read::Data(n) => got.extend_from_slice(&buf[..n]),
                Read::Blocked if out.pending() == 0 => break,
                Read::Blocked => {
                    out.flush(a.as_raw_fd()).expect("flush");
                }
                Read::Eof => panic!("eof"),
            }
        }
        assert_eq!(&got[..4], b"head");
        assert_eq!(got.len(), 4 + big.len());
        drop(a);
        assert_eq!(read(b.as_raw_fd(), &mut buf).expect("read"), Read::Eof);
    }
}
