//! Response bytes on their way to one client: written straight from the
//! app's buffers when the socket takes them, queued (in the connection's
//! `out`) when it does not, and a pathsend file sent with sendfile(2) after
//! whatever was queued before it.

use crate::workers::evconn::Conn;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

/// A file being sent (`http.response.pathsend`), then `after` (the chunked
/// terminator, if any).
pub struct FileOut {
    file: File,
    offset: u64,
    remaining: u64,
    after: &'static [u8],
    /// sendfile(2) is allowed (`--no-sendfile` turns it off) and works here.
    sendfile: bool,
}

impl FileOut {
    pub fn new(file: File, len: u64, after: &'static [u8], sendfile: bool) -> FileOut {
        FileOut { file, offset: 0, remaining: len, after, sendfile }
    }
}

/// What the connection still has to send, in bytes.
pub fn pending(c: &Conn, file: &Option<FileOut>) -> u64 {
    (c.out.len() - c.out_pos) as u64 + file.as_ref().map_or(0, |f| f.remaining + f.after.len() as u64)
}

fn is_blocked(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Sends `parts` in order, after anything already queued. What the socket
/// does not take now is copied into the queue. The connection's
/// edge-triggered `writable` is cleared when the socket fills up.
pub fn write(c: &mut Conn, file: &Option<FileOut>, parts: &[&[u8]]) -> io::Result<()> {
    let queued = c.out_pos < c.out.len() || file.is_some();
    let mut sent = 0usize;
    if !queued && c.edge.writable {
        let slices: Vec<IoSlice<'_>> = parts.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)).collect();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        while sent < total {
            // The first write takes the slices as they are; only a partial
            // one needs the rest recomputed.
            let rest;
            let now: &[IoSlice<'_>] = if sent == 0 {
                &slices
            } else {
                rest = skip(&slices, sent);
                &rest
            };
            match c.stream.send_nonblocking(now) {
                Ok(n) => sent += n,
                Err(e) if is_blocked(&e) => {
                    c.edge.writable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    if c.out_pos == c.out.len() {
        c.out.clear();
        c.out_pos = 0;
    }
    let mut skipped = 0usize;
    for p in parts {
        let from = sent.saturating_sub(skipped).min(p.len());
        c.out.extend_from_slice(&p[from..]);
        skipped += p.len();
    }
    Ok(())
}

/// The slices from byte `n` on.
fn skip<'a>(slices: &'a [IoSlice<'a>], mut n: usize) -> Vec<IoSlice<'a>> {
    let mut out = Vec::with_capacity(slices.len());
    for s in slices {
        if n >= s.len() {
            n -= s.len();
            continue;
        }
        out.push(IoSlice::new(&s[n..]));
        n = 0;
    }
    out
}

/// Sends what is queued (bytes, then the file); Ok(true) once all is out.
pub fn flush(c: &mut Conn, file: &mut Option<FileOut>) -> io::Result<bool> {
    loop {
        match c.flush_out() {
            Ok(true) => {}
            Ok(false) => {
                c.edge.writable = false;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let Some(f) = file.as_mut() else { return Ok(true) };
        if f.remaining == 0 {
            c.out.extend_from_slice(f.after);
            *file = None;
            continue;
        }
        match send_file(c, f) {
            Ok(()) => {}
            Err(e) if is_blocked(&e) => {
                c.edge.writable = false;
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One step of the file: sendfile(2), or a read into the queue when it
/// cannot be used.
fn send_file(c: &mut Conn, f: &mut FileOut) -> io::Result<()> {
    const STEP: u64 = 1 << 20;
    if f.sendfile {
        let mut offset = f.offset as libc::off_t;
        let count = f.remaining.min(STEP) as usize;
        // SAFETY: both fds are open for the call; offset is a local.
        let n = unsafe { libc::sendfile(c.stream.fd(), f.file.as_raw_fd(), &mut offset, count) };
        if n > 0 {
            f.offset += n as u64;
            f.remaining -= n as u64;
            return Ok(());
        }
        if n == 0 {
            // The file is shorter than it was: the response cannot be
            // completed as announced.
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent"));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => f.sendfile = false,
            _ => return Err(e),
        }
    }
    let mut chunk = vec![0u8; f.remaining.min(64 * 1024) as usize];
    // SAFETY: pread into a local buffer of the given length.
    let n = unsafe { libc::pread(f.file.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len(), f.offset as libc::off_t) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent"));
    }
    chunk.truncate(n as usize);
    f.offset += n as u64;
    f.remaining -= n as u64;
    c.out.extend_from_slice(&chunk);
    Ok(())
}
