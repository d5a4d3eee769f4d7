//! StatsD metrics with Gunicorn's names and wire format
//! (`gunicorn/instrument/statsd.py`): one UDP (or Unix datagram) packet per
//! metric, sent from Rust without the GIL. The socket is made in the master
//! and inherited by the workers, as Gunicorn's is.

use crate::net::bind::{lower, parts, Parts};
use crate::settings::validate::python_int;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, RwLock};

/// `--statsd-host` as Gunicorn's `validate_statsd_address` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsdAddr {
    Udp { host: String, port: u16 },
    Unix(String),
}

impl StatsdAddr {
    /// `HOST:PORT` (port 8125 when left out), `[v6]:PORT`, `unix://PATH`
    /// or `unix:PATH`, split as `util.parse_address` splits them
    /// ([`crate::net::bind`]); `unix:NNNN` is the host "unix" on port NNNN,
    /// the reading Gunicorn keeps for backwards compatibility.
    pub fn parse(py: Python<'_>, value: &str) -> Result<StatsdAddr, String> {
        let bad = || "Value must be one of ('host:port', 'unix://PATH')".to_owned();
        let port_of = |text: &str| python_int(py, text, 10).ok().and_then(|n| u16::try_from(n).ok()).ok_or_else(bad);
        // `re.match(r'^unix:(\d+)$', val)`: `\d` is any Unicode decimal
        // digit, as `str.isdecimal()` reads them.
        if let Some(rest) = value.strip_prefix("unix:") {
            let decimal = PyString::new(py, rest).call_method0("isdecimal").and_then(|d| d.is_truthy());
            if decimal.unwrap_or(false) {
                return Ok(StatsdAddr::Udp { host: "unix".into(), port: port_of(rest)? });
            }
        }
        match parts(value) {
            Parts::Unix(path) => Ok(StatsdAddr::Unix(path.to_owned())),
            // Gunicorn takes the int, then has no address to send to.
            Parts::Fd(_) => Err(bad()),
            Parts::Tcp { host, port } => {
                Ok(StatsdAddr::Udp { host: lower(py, host), port: port_of(port.unwrap_or("8125"))? })
            }
        }
    }
}

impl fmt::Display for StatsdAddr {
    /// Python's `str()` of the value Gunicorn stores: a tuple or a path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatsdAddr::Udp { host, port } => write!(f, "({}, {port})", crate::http::text::py_repr(host)),
            StatsdAddr::Unix(path) => f.write_str(path),
        }
    }
}

/// Gunicorn's prefix rule, `re.sub(r"^(.+[^.]+)\.*$", r"\g<1>.", prefix)`:
/// a dot is added unless there is one, and trailing dots collapse to one.
/// A one-character prefix does not match the pattern and stays as it is.
pub fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('.');
    // `.+[^.]+` needs at least two characters, the last not a dot.
    if trimmed.chars().count() >= 2 {
        format!("{trimmed}.")
    } else {
        prefix.to_owned()
    }
}

pub struct Statsd {
    sock: Option<OwnedFd>,
    prefix: String,
    tags: String,
}

static CLIENT: RwLock<Option<Arc<Statsd>>> = RwLock::new(None);

/// Sets up (or, with `None`, turns off) metrics for this process and the
/// workers it forks. A socket that cannot be made or connected leaves
/// metrics silently off, as in Gunicorn.
pub fn configure(addr: Option<&StatsdAddr>, prefix: &str, tags: &str) {
    let client = addr
        .map(|a| Arc::new(Statsd { sock: connect(a).ok(), prefix: normalize_prefix(prefix), tags: tags.to_owned() }));
    *CLIENT.write().unwrap_or_else(|p| p.into_inner()) = client;
}

fn current() -> Option<Arc<Statsd>> {
    CLIENT.read().unwrap_or_else(|p| p.into_inner()).clone()
}

pub fn enabled() -> bool {
    CLIENT.read().map(|c| c.is_some()).unwrap_or(false)
}

fn connect(addr: &StatsdAddr) -> std::io::Result<OwnedFd> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let (domain, target) = match addr {
        StatsdAddr::Unix(path) => (Domain::UNIX, SockAddr::unix(path)?),
        StatsdAddr::Udp { host, port } => {
            // Gunicorn picks the family from the host text: IPv6 only for
            // an IPv6 literal, else IPv4 (names resolve to IPv4 only).
            let v6 = host.parse::<std::net::Ipv6Addr>().is_ok();
            let found = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))?
                .find(|a| a.is_ipv6() == v6)
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
            (if v6 { Domain::IPV6 } else { Domain::IPV4 }, SockAddr::from(found))
        }
    };
    let sock = Socket::new(domain, Type::DGRAM, None)?;
    sock.set_nonblocking(true)?;
    sock.connect(&target)?;
    Ok(sock.into())
}

impl Statsd {
    fn send(&self, metric: fmt::Arguments<'_>) {
        let Some(sock) = &self.sock else { return };
        let mut msg = format!("{}{metric}", self.prefix);
        if !self.tags.is_empty() {
            msg.push_str("|#");
            msg.push_str(&self.tags);
        }
        // SAFETY: sending a buffer we own on a socket we own.
        let rc = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), libc::MSG_DONTWAIT) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            // Written without counting it as a log.warning metric, which
            // would send again (Gunicorn calls the base Logger here too).
            super::error_log().log(super::Level::Warning, format_args!("Error sending message to statsd: {err}"));
        }
    }
}

pub fn increment(name: &str, value: i64) {
    if let Some(c) = current() {
        c.send(format_args!("{name}:{value}|c|@1.0"));
    }
}

pub fn gauge(name: &str, value: i64) {
    if let Some(c) = current() {
        c.send(format_args!("{name}:{value}|g"));
    }
}

pub fn histogram(name: &str, value: i64) {
    if let Some(c) = current() {
        c.send(format_args!("{name}:{value}|h"));
    }
}

/// A timer in milliseconds, printed as Python prints a float ("0.523").
pub fn timer(name: &str, ms: f64) {
    if let Some(c) = current() {
        c.send(format_args!("{name}:{ms:?}|ms"));
    }
}

/// The three metrics Gunicorn's Statsd logger sends per request.
pub fn request(status: u16, elapsed: std::time::Duration) {
    let Some(c) = current() else { return };
    // timedelta arithmetic: whole seconds, then microseconds as a float.
    let ms = elapsed.as_secs() as f64 * 1000.0 + f64::from(elapsed.subsec_micros()) / 1000.0;
    c.send(format_args!("gunicorn.request.duration:{ms:?}|ms"));
    c.send(format_args!("gunicorn.requests:1|c|@1.0"));
    c.send(format_args!("gunicorn.request.status.{status}:1|c|@1.0"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_gunicorn_reads_them() {
        let udp = |h: &str, p| StatsdAddr::Udp { host: h.into(), port: p };
        let parse = |s: &str| crate::python::with_python(|py| StatsdAddr::parse(py, s));
        assert_eq!(parse("localhost:8125"), Ok(udp("localhost", 8125)));
        assert_eq!(parse("Stats.Example"), Ok(udp("stats.example", 8125)));
        assert_eq!(parse("[::1]:9125"), Ok(udp("::1", 9125)));
        assert_eq!(parse("[::1]"), Ok(udp("::1", 8125)));
        assert_eq!(parse("unix:8125"), Ok(udp("unix", 8125)));
        assert_eq!(parse("unix:///run/statsd.sock"), Ok(StatsdAddr::Unix("/run/statsd.sock".into())));
        assert_eq!(parse("unix:/run/s"), Ok(StatsdAddr::Unix("/run/s".into())));
        assert!(parse("host:port").is_err());
        assert!(parse("fd://3").is_err());
        assert_eq!(parse("unix:\u{0668}\u{0661}"), Ok(udp("unix", 81)));
        assert_eq!(parse("unix:/a/unix://b"), Ok(StatsdAddr::Unix("b".into())));
        assert_eq!(parse("h:8_1"), Ok(udp("h", 81)));
        assert_eq!(udp("localhost", 8125).to_string(), "('localhost', 8125)");
    }

    #[test]
    fn prefix_rule() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("app"), "app.");
        assert_eq!(normalize_prefix("app."), "app.");
        assert_eq!(normalize_prefix("app..."), "app.");
        assert_eq!(normalize_prefix("a"), "a");
        assert_eq!(normalize_prefix("my.app"), "my.app.");
    }

    #[test]
    fn packets_on_a_local_socket() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        server.set_read_timeout(Some(std::time::Duration::from_secs(2))).expect("timeout");
        let port = server.local_addr().expect("addr").port();
        let addr = StatsdAddr::Udp { host: "127.0.0.1".into(), port };
        configure(Some(&addr), "web", "env:test");
        request(404, std::time::Duration::from_micros(1_523_100));
        gauge("gunicorn.workers", 3);
        configure(None, "", "");
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while got.len() < 4 {
            let n = server.recv(&mut buf).expect("packet");
            let packet = String::from_utf8_lossy(&buf[..n]).into_owned();
            // Other tests may log warnings meanwhile; those are counted too.
            if !packet.starts_with("web.gunicorn.log.") {
                got.push(packet);
            }
        }
        assert_eq!(
            got,
            vec![
                "web.gunicorn.request.duration:1523.1|ms|#env:test",
                "web.gunicorn.requests:1|c|@1.0|#env:test",
                "web.gunicorn.request.status.404:1|c|@1.0|#env:test",
                "web.gunicorn.workers:3|g|#env:test",
            ]
        );
    }
}
