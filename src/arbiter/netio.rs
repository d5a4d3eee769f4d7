//! Non-blocking sockets for the master's own small servers (the metrics
//! endpoint, the control socket). The master is single-threaded and
//! supervises workers between polls, so nothing here ever waits: a listener
//! and its connections are polled together with the signal pipe, each
//! connection has a deadline, and a client that stops reading or writing
//! only costs its own connection.

use socket2::Socket;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// After the answer is sent and our side shut, how long a client may take
/// to close (reading what it still sends, so the close is not a reset).
const LINGER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests, writing answers.
    Open,
    /// Writing what is left, then shutting our side.
    Closing,
    /// Our side is shut: reading until the client closes.
    Lingering,
    Done,
}

pub struct Conn {
    sock: Socket,
    /// What the client sent and the protocol has not consumed yet.
    pub input: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    pub accepted: Instant,
    deadline: Instant,
    phase: Phase,
    /// The client shut its side: nothing more will arrive.
    pub eof: bool,
}

impl Conn {
    fn new(sock: Socket, now: Instant, deadline: Duration) -> Conn {
        Conn {
            sock,
            input: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            accepted: now,
            deadline: now + deadline,
            phase: Phase::Open,
            eof: false,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn pending(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Still reading requests (the protocol may consume `input`).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Pushes the idle deadline on after a request was served.
    pub fn extend(&mut self, now: Instant, idle: Duration) {
        self.deadline = now + idle;
    }

    /// What to poll for. An open connection with an answer still to send
    /// is not read: a client that sends requests without reading answers
    /// gets no more than one answer's worth of memory.
    fn interest(&self, input_cap: usize) -> i16 {
        match self.phase {
            Phase::Open if self.pending() => libc::POLLOUT,
            Phase::Open if self.eof || self.input.len() >= input_cap => 0,
            Phase::Open => libc::POLLIN,
            Phase::Closing if self.pending() => libc::POLLOUT,
            Phase::Closing | Phase::Lingering => libc::POLLIN,
            Phase::Done => 0,
        }
    }

    /// Queues an answer and writes what the socket takes now.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        self.out.extend_from_slice(bytes);
        self.write();
    }

    /// No more requests: send what is queued, then close gracefully.
    pub fn finish(&mut self) {
        if matches!(self.phase, Phase::Open) {
            self.phase = Phase::Closing;
            self.advance();
        }
    }

    /// Drops the connection at once.
    pub fn abort(&mut self) {
        self.phase = Phase::Done;
    }

    fn write(&mut self) {
        while self.pending() {
            match self.sock.send_with_flags(&self.out[self.out_pos..], libc::MSG_NOSIGNAL) {
                Ok(0) => break,
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.phase = Phase::Done;
                    return;
                }
            }
        }
        self.advance();
    }

    fn advance(&mut self) {
        if self.phase == Phase::Closing && !self.pending() {
            // Shutting our side tells the client the answer is complete; it
            // is read until it closes too, so unread bytes never turn the
            // close into a reset that could lose the answer.
            let _ = self.sock.shutdown(std::net::Shutdown::Write);
            self.phase = if self.eof { Phase::Done } else { Phase::Lingering };
            self.deadline = self.deadline.min(Instant::now() + LINGER);
        }
    }

    /// Reads what the socket has, up to `cap` bytes kept (beyond a closing
    /// connection's, which are discarded).
    fn read(&mut self, cap: usize) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let keep = self.phase == Phase::Open;
            let room = if keep { cap.saturating_sub(self.input.len()).min(buf.len()) } else { buf.len() };
            if room == 0 {
                return;
            }
            match (&self.sock).read(&mut buf[..room]) {
                Ok(0) => {
                    self.eof = true;
                    if self.phase == Phase::Lingering {
                        self.phase = Phase::Done;
                    }
                    return;
                }
                Ok(n) => {
                    if keep {
                        self.input.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.phase = Phase::Done;
                    return;
                }
            }
        }
    }

    fn on_ready(&mut self, revents: i16, cap: usize) {
        if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            self.phase = Phase::Done;
            return;
        }
        if revents & libc::POLLOUT != 0 {
            self.write();
        }
        if revents & (libc::POLLIN | libc::POLLHUP) != 0 {
            self.read(cap);
        }
    }
}

/// A listening socket and its connections.
pub struct Endpoint {
    listener: Socket,
    pub conns: Vec<Conn>,
    /// Connections kept at most; the oldest goes when another arrives, so
    /// silent clients can never lock the endpoint.
    limit: usize,
    /// How long a connection may stay without a request served.
    idle: Duration,
    /// Bytes of unconsumed input kept per connection.
    input_cap: usize,
}

impl Endpoint {
    /// `listener` must be bound and listening; it is made non-blocking.
    pub fn new(listener: Socket, limit: usize, idle: Duration, input_cap: usize) -> io::Result<Endpoint> {
        listener.set_nonblocking(true)?;
        Ok(Endpoint { listener, conns: Vec::new(), limit: limit.max(1), idle, input_cap })
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    pub fn poll_fds(&self, out: &mut Vec<libc::pollfd>) {
        out.push(libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for c in &self.conns {
            let events = c.interest(self.input_cap);
            if events != 0 {
                out.push(libc::pollfd { fd: c.fd(), events, revents: 0 });
            }
        }
    }

    /// Does the I/O `polled` reports ready for this endpoint, accepts new
    /// clients and drops connections that are done or overdue. Readiness
    /// is matched by fd, and every call is non-blocking, so a stale entry
    /// (an fd closed and reused since the poll) costs one EAGAIN.
    pub fn turn(&mut self, polled: &[libc::pollfd], now: Instant) {
        for p in polled.iter().filter(|p| p.revents != 0) {
            if let Some(c) = self.conns.iter_mut().find(|c| c.fd() == p.fd) {
                c.on_ready(p.revents, self.input_cap);
            }
        }
        if polled.iter().any(|p| p.fd == self.listener.as_raw_fd() && p.revents != 0) {
            self.accept(now);
        }
        self.sweep(now);
    }

    fn accept(&mut self, now: Instant) {
        // A bounded number per turn, so a flood cannot hold the loop.
        for _ in 0..64 {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.conns.len() >= self.limit {
                        // The oldest connection makes room (it is the one
                        // most likely to be a client that went silent).
                        let oldest = self.conns.iter().enumerate().min_by_key(|(_, c)| c.accepted).map(|(i, _)| i);
                        if let Some(i) = oldest {
                            self.conns.swap_remove(i);
                        }
                    }
                    let mut conn = Conn::new(sock, now, self.idle);
                    // Requests usually arrive with the connection.
                    conn.read(self.input_cap);
                    self.conns.push(conn);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock, or a client gone between SYN and accept, or
                // out of fds: try again on the next turn.
                Err(_) => return,
            }
        }
    }

    /// Writes answers queued since the poll, then drops what is finished.
    pub fn sweep(&mut self, now: Instant) {
        for c in &mut self.conns {
            if c.pending() {
                c.write();
            }
            if now >= c.deadline {
                c.phase = Phase::Done;
            }
        }
        self.conns.retain(|c| c.phase != Phase::Done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn endpoint(limit: usize) -> (Endpoint, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("ferrocorn-netio-{}-{limit}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let sock = Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).expect("socket");
        sock.bind(&socket2::SockAddr::unix(&path).expect("addr")).expect("bind");
        sock.listen(16).expect("listen");
        (Endpoint::new(sock, limit, Duration::from_secs(5), 1024).expect("endpoint"), path)
    }

    fn turn(ep: &mut Endpoint) {
        let mut fds = Vec::new();
        ep.poll_fds(&mut fds);
        // SAFETY: a valid pollfd array.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        ep.turn(&fds, Instant::now());
    }

    #[test]
    fn reads_answers_and_closes_gracefully() {
        let (mut ep, path) = endpoint(4);
        let mut client = UnixStream::connect(&path).expect("connect");
        client.write_all(b"ping").expect("write");
        turn(&mut ep);
        turn(&mut ep);
        assert_eq!(ep.conns.len(), 1);
        assert_eq!(ep.conns[0].input, b"ping");
        ep.conns[0].send(b"pong");
        ep.conns[0].finish();
        let mut got = Vec::new();
        client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        client.read_to_end(&mut got).expect("read until our side shuts");
        assert_eq!(got, b"pong");
        drop(client);
        turn(&mut ep);
        assert!(ep.conns.is_empty(), "the lingering connection ends when the client closes");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_oldest_connection_makes_room() {
        let (mut ep, path) = endpoint(2);
        let _a = UnixStream::connect(&path).expect("a");
        turn(&mut ep);
        let _b = UnixStream::connect(&path).expect("b");
        turn(&mut ep);
        let first = ep.conns.iter().map(|c| c.accepted).min().expect("one");
        std::thread::sleep(Duration::from_millis(5));
        let _c = UnixStream::connect(&path).expect("c");
        turn(&mut ep);
        assert_eq!(ep.conns.len(), 2);
        assert!(ep.conns.iter().all(|c| c.accepted > first));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_silent_client_is_dropped_at_its_deadline() {
        let (mut ep, path) = endpoint(2);
        let _silent = UnixStream::connect(&path).expect("connect");
        turn(&mut ep);
        assert_eq!(ep.conns.len(), 1);
        ep.sweep(Instant::now() + Duration::from_secs(6));
        assert!(ep.conns.is_empty());
        let _ = std::fs::remove_file(&path);
    }
}
