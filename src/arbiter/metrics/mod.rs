//! `--metrics-bind HOST:PORT`: the master answers `GET /metrics` with the
//! Prometheus page, and `/healthz` and `/readyz` for probes, from its own
//! loop, on non-blocking sockets. One request per connection (`Connection:
//! close`), 10 s at most per client, so a slow or silent client only ever
//! holds its own connection, never the master.

pub mod probes;
pub mod prometheus;

use super::netio::Endpoint;
use crate::net::bind::BindSpec;
use probes::Readiness;
use pyo3::Python;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a scraper has, from connecting to reading the whole answer.
const CLIENT_TIME: Duration = Duration::from_secs(10);
const MAX_CLIENTS: usize = 16;
/// A request head larger than this is refused (the page needs no headers).
const MAX_HEAD: usize = 8 * 1024;

pub struct MetricsServer {
    endpoint: Endpoint,
    /// The address as configured, to tell whether a reload changed it.
    pub configured: String,
    pub local: SocketAddr,
}

/// What a client asked for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Page {
        head_only: bool,
    },
    /// `/healthz`: the master's loop is turning (it is answering).
    Health {
        head_only: bool,
    },
    /// `/readyz`: workers are booted and the master is not stopping.
    Ready {
        head_only: bool,
    },
    NotFound,
    BadMethod,
    BadRequest,
    TooLarge,
}

impl MetricsServer {
    pub fn bind(py: Python<'_>, configured: &str) -> io::Result<MetricsServer> {
        let addr = resolve(py, configured)?;
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        // A restarted master can listen again at once despite TIME_WAIT.
        sock.set_reuse_address(true)?;
        sock.bind(&SockAddr::from(addr))?;
        sock.listen(64)?;
        let local = sock.local_addr()?.as_socket().unwrap_or(addr);
        let endpoint = Endpoint::new(sock, MAX_CLIENTS, CLIENT_TIME, MAX_HEAD)?;
        Ok(MetricsServer { endpoint, configured: configured.to_owned(), local })
    }

    pub fn poll_fds(&self, out: &mut Vec<libc::pollfd>) {
        self.endpoint.poll_fds(out);
    }

    /// Does the I/O, and says what the clients waiting for an answer need:
    /// the caller renders the page (once for all of them) and tells the
    /// readiness, and hands both to `answer`.
    pub fn turn(&mut self, polled: &[libc::pollfd], now: Instant) -> Wanted {
        self.endpoint.turn(polled, now);
        let mut wanted = Wanted::default();
        for conn in &mut self.endpoint.conns {
            if !conn.is_open() {
                continue;
            }
            match parse(&conn.input, conn.eof) {
                Some(Asked::Page { .. }) => wanted.page = true,
                Some(Asked::Health { .. } | Asked::Ready { .. }) => wanted.probe = true,
                Some(other) => {
                    conn.send(&error_answer(&other));
                    conn.finish();
                }
                None if conn.eof => conn.abort(),
                None => {}
            }
        }
        self.endpoint.sweep(now);
        wanted
    }

    /// Answers every client whose request is complete: the page when it was
    /// rendered (`Wanted::page`), the probes from `ready`.
    pub fn answer(&mut self, page: Option<&str>, ready: &Readiness) {
        for conn in &mut self.endpoint.conns {
            if !conn.is_open() {
                continue;
            }
            let (status, content_type, body, head_only) = match parse(&conn.input, conn.eof) {
                Some(Asked::Page { head_only }) => match page {
                    Some(page) => ("200 OK", prometheus::CONTENT_TYPE, page.to_owned(), head_only),
                    None => continue,
                },
                Some(Asked::Health { head_only }) => ("200 OK", probes::CONTENT_TYPE, "ok\n".to_owned(), head_only),
                Some(Asked::Ready { head_only }) => (ready.status(), probes::CONTENT_TYPE, ready.body(), head_only),
                _ => continue,
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nServer: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                crate::SERVER_HEADER,
                body.len()
            );
            conn.send(head.as_bytes());
            if !head_only {
                conn.send(body.as_bytes());
            }
            conn.finish();
        }
        self.endpoint.sweep(Instant::now());
    }
}

/// What the clients of one turn wait for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wanted {
    /// The Prometheus page.
    pub page: bool,
    /// `/healthz` or `/readyz`.
    pub probe: bool,
}

/// `--metrics-bind`'s address (validated as TCP when settings load).
fn resolve(py: Python<'_>, configured: &str) -> io::Result<SocketAddr> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    match BindSpec::parse(py, configured).map_err(invalid)? {
        BindSpec::Tcp { host, port } => {
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                return Ok(SocketAddr::new(ip, port));
            }
            let host = if host.is_empty() { "0.0.0.0" } else { host.as_str() };
            (host, port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, format!("{host} has no address")))
        }
        _ => Err(invalid(format!("'{configured}' is not a TCP address"))),
    }
}

/// The request in `input`, once its head is complete (None before).
fn parse(input: &[u8], eof: bool) -> Option<Asked> {
    let end = memchr::memmem::find(input, b"\r\n\r\n").or_else(|| memchr::memmem::find(input, b"\n\n"));
    let Some(end) = end else {
        return match input.len() >= MAX_HEAD {
            true => Some(Asked::TooLarge),
            // A client that sent a request line and closed its side.
            false if eof && input.contains(&b'\n') => parse_line(input),
            false => None,
        };
    };
    parse_line(&input[..end])
}

fn parse_line(head: &[u8]) -> Option<Asked> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Some(Asked::BadRequest);
    };
    if !version.starts_with(b"HTTP/1.") {
        return Some(Asked::BadRequest);
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    // An absolute-form target (a proxy's) names the path after the host.
    let path = match path.strip_prefix(b"http://") {
        Some(rest) => rest.iter().position(|&b| b == b'/').map_or(&b"/"[..], |i| &rest[i..]),
        None => path,
    };
    let head_only = method == b"HEAD";
    Some(match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => Asked::Page { head_only },
        (b"GET" | b"HEAD", b"/healthz") => Asked::Health { head_only },
        (b"GET" | b"HEAD", b"/readyz") => Asked::Ready { head_only },
        (b"GET" | b"HEAD", _) => Asked::NotFound,
        _ => Asked::BadMethod,
    })
}

fn error_answer(asked: &Asked) -> Vec<u8> {
    let (status, extra, body) = match asked {
        Asked::NotFound => ("404 Not Found", "", "Not Found: /metrics, /healthz and /readyz are served here\n"),
        Asked::BadMethod => ("405 Method Not Allowed", "Allow: GET, HEAD\r\n", "Method Not Allowed\n"),
        Asked::TooLarge => ("431 Request Header Fields Too Large", "", "Request Header Fields Too Large\n"),
        Asked::BadRequest | Asked::Page { .. } | Asked::Health { .. } | Asked::Ready { .. } => {
            ("400 Bad Request", "", "Bad Request\n")
        }
    };
    format!(
        "HTTP/1.1 {status}\r\nServer: {}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        crate::SERVER_HEADER,
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false), Some(Asked::Page { head_only: false }));
        assert_eq!(parse(b"GET /metrics?x=1 HTTP/1.0\n\n", false), Some(Asked::Page { head_only: false }));
        assert_eq!(parse(b"HEAD /metrics HTTP/1.1\r\n\r\n", false), Some(Asked::Page { head_only: true }));
        assert_eq!(parse(b"GET http://h:9/metrics HTTP/1.1\r\n\r\n", false), Some(Asked::Page { head_only: false }));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n", false), Some(Asked::NotFound));
        assert_eq!(parse(b"GET /healthz HTTP/1.1\r\n\r\n", false), Some(Asked::Health { head_only: false }));
        assert_eq!(parse(b"HEAD /readyz?x HTTP/1.0\r\n\r\n", false), Some(Asked::Ready { head_only: true }));
        assert_eq!(parse(b"GET /readyz/ HTTP/1.1\r\n\r\n", false), Some(Asked::NotFound));
        assert_eq!(parse(b"POST /readyz HTTP/1.1\r\n\r\n", false), Some(Asked::BadMethod));
        assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n", false), Some(Asked::BadMethod));
        assert_eq!(parse(b"GET /metrics\r\n\r\n", false), Some(Asked::BadRequest));
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost", false), None);
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost", true), Some(Asked::Page { head_only: false }));
        assert_eq!(parse(b"GET /met", true), None);
        assert_eq!(parse(&vec![b'a'; MAX_HEAD], false), Some(Asked::TooLarge));
    }

    #[test]
    fn answers_a_scrape_and_refuses_the_rest() {
        use std::io::{Read, Write};
        let mut server = crate::python::with_python(|py| MetricsServer::bind(py, "127.0.0.1:0")).expect("bind");
        let addr = server.local;
        let mut scrape = std::net::TcpStream::connect(addr).expect("connect");
        scrape.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut other = std::net::TcpStream::connect(addr).expect("connect");
        other.write_all(b"GET /nope HTTP/1.1\r\n\r\n").expect("send");
        let _silent = std::net::TcpStream::connect(addr).expect("connect");
        // Both clients are served from the same turns; the silent one holds
        // nothing up.
        let mut answered = false;
        for _ in 0..20 {
            let mut fds = Vec::new();
            server.poll_fds(&mut fds);
            // SAFETY: a valid pollfd array.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
            if server.turn(&fds, Instant::now()).page {
                server.answer(Some("x 1\n"), &Readiness::Stopping);
                answered = true;
            }
        }
        assert!(answered);
        scrape.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut got = String::new();
        scrape.read_to_string(&mut got).expect("read");
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(got.ends_with("\r\n\r\nx 1\n"));
        other.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut got = String::new();
        other.read_to_string(&mut got).expect("read");
        assert!(got.starts_with("HTTP/1.1 404 Not Found\r\n"), "{got}");
    }
}
