//! `--log-syslog`: error and access records sent to syslog exactly as
//! Gunicorn's `logging.handlers.SysLogHandler` sends them: `<PRI>`, the
//! program name `gunicorn.<prefix>.<error|access>: `, `[pid] message`, a
//! trailing NUL, one datagram (or one stream write) per record.

use super::level::Level;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString, PyTuple};
use socket2::{Domain, SockAddr, Socket, Type};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

/// Gunicorn's `SYSLOG_FACILITIES`.
const FACILITIES: &[(&str, u8)] = &[
    ("auth", 4),
    ("authpriv", 10),
    ("cron", 9),
    ("daemon", 3),
    ("ftp", 11),
    ("kern", 0),
    ("lpr", 6),
    ("mail", 2),
    ("news", 7),
    ("security", 4),
    ("syslog", 5),
    ("user", 1),
    ("uucp", 8),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

pub fn facility(name: &str) -> Result<u8, String> {
    let lower = name.to_lowercase();
    FACILITIES.iter().find(|(n, _)| *n == lower).map(|(_, f)| *f).ok_or_else(|| "unknown facility name".to_owned())
}

/// `--log-syslog-to`, parsed as Gunicorn's `parse_syslog_address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddr {
    /// `unix://PATH[#dgram|#stream]`; `dgram` forces datagrams, otherwise
    /// datagrams are tried first and a stream socket second.
    Unix {
        path: String,
        dgram_only: bool,
    },
    Udp {
        host: String,
        port: u16,
    },
    Tcp {
        host: String,
        port: u16,
    },
}

/// What `parse_syslog_address` finds in the text, before it reads the
/// port (and before it lowercases the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parts<'a> {
    Unix {
        path: &'a str,
        dgram: bool,
    },
    /// `port` is `None` where Gunicorn takes 514.
    Inet {
        tcp: bool,
        host: &'a str,
        port: Option<&'a str>,
    },
}

const INVALID: &str = "invalid syslog address";

/// `parse_syslog_address`'s string operations, one for one.
fn parts(addr: &str) -> Result<Parts<'_>, &'static str> {
    if addr.starts_with("unix://") {
        // `addr.split("#", 1)`, then `addr.split("unix://")[1]`: up to a
        // second "unix://", if any.
        let (addr, kind) = match addr.split_once('#') {
            Some((addr, kind)) => (addr, Some(kind)),
            None => (addr, None),
        };
        let path = addr.split("unix://").nth(1).unwrap_or("");
        return Ok(Parts::Unix { path, dgram: kind == Some("dgram") });
    }
    let (scheme, tcp) = match addr {
        _ if addr.starts_with("udp://") => ("udp://", false),
        _ if addr.starts_with("tcp://") => ("tcp://", true),
        _ => return Err(INVALID),
    };
    // `addr.split("udp://")[1]`
    let addr = addr.split(scheme).nth(1).unwrap_or("");
    let host = if addr.contains('[') && addr.contains(']') {
        // `addr.split(']')[0][1:]`
        addr.split(']').next().map_or("", crate::net::bind::drop_first_char)
    } else if addr.contains(':') {
        addr.split(':').next().unwrap_or("")
    } else if addr.is_empty() {
        "localhost"
    } else {
        addr
    };
    // `addr.split(']')[-1]`, then what follows its first ':'.
    let tail = addr.rsplit(']').next().unwrap_or(addr);
    Ok(Parts::Inet { tcp, host, port: tail.split_once(':').map(|(_, port)| port) })
}

/// Why the port text is no port: Gunicorn's RuntimeError when
/// `str.isdigit()` says no, or the ValueError of `int()` when it said yes
/// to a digit `int()` does not read ('²').
enum PortError {
    NotDigits(String),
    Int(PyErr),
}

/// `port.isdigit()`, then `int(port)`, both Python's.
fn read_port<'py>(py: Python<'py>, text: &str) -> Result<Bound<'py, PyAny>, PortError> {
    let text = PyString::new(py, text);
    let digits = text.call_method0("isdigit").and_then(|d| d.is_truthy()).map_err(PortError::Int)?;
    if !digits {
        return Err(PortError::NotDigits(format!(
            "{} is not a valid port number.",
            text.repr().map_err(PortError::Int)?
        )));
    }
    py.get_type::<PyInt>().call1((text,)).map_err(PortError::Int)
}

impl SyslogAddr {
    /// A syslog address ferrocorn can send to; a port `int()` reads but no
    /// socket takes (70000) is refused here, where Gunicorn fails when it
    /// connects.
    pub fn parse(py: Python<'_>, addr: &str) -> Result<SyslogAddr, String> {
        match parts(addr)? {
            Parts::Unix { path, dgram } => Ok(SyslogAddr::Unix { path: path.to_owned(), dgram_only: dgram }),
            Parts::Inet { tcp, host, port } => {
                let port = match port {
                    None => 514,
                    Some(text) => match read_port(py, text) {
                        Ok(n) => n.extract::<u16>().map_err(|_| {
                            format!("{} is not a valid port number.", crate::python::str_repr(py, text))
                        })?,
                        Err(PortError::NotDigits(why)) => return Err(why),
                        Err(PortError::Int(e)) => return Err(crate::python::exception_text(py, &e)),
                    },
                };
                let host = crate::net::bind::lower(py, host);
                Ok(if tcp { SyslogAddr::Tcp { host, port } } else { SyslogAddr::Udp { host, port } })
            }
        }
    }
}

/// `gunicorn.glogging.parse_syslog_address(addr)` for Python code:
/// `(socket type or None, path)` for a Unix socket, else
/// `(socket type, (host, port))`, with Gunicorn's RuntimeErrors (and the
/// ValueError of `int()` it lets through).
#[pyfunction]
#[pyo3(name = "parse_syslog_address")]
pub fn py_parse_syslog_address<'py>(py: Python<'py>, addr: &str) -> PyResult<Bound<'py, PyTuple>> {
    let socket = py.import("socket")?;
    match parts(addr).map_err(PyRuntimeError::new_err)? {
        Parts::Unix { path, dgram } => {
            let kind = if dgram { socket.getattr("SOCK_DGRAM")? } else { py.None().into_bound(py) };
            PyTuple::new(py, [kind, PyString::new(py, path).into_any()])
        }
        Parts::Inet { tcp, host, port } => {
            let kind = socket.getattr(if tcp { "SOCK_STREAM" } else { "SOCK_DGRAM" })?;
            let port = match port {
                None => 514u16.into_pyobject(py)?.into_any(),
                Some(text) => match read_port(py, text) {
                    Ok(n) => n,
                    Err(PortError::NotDigits(why)) => return Err(PyRuntimeError::new_err(why)),
                    Err(PortError::Int(e)) => return Err(e),
                },
            };
            let host = PyString::new(py, host).call_method0("lower")?;
            PyTuple::new(py, [kind, PyTuple::new(py, [host, port])?.into_any()])
        }
    }
}

struct Transport {
    sock: Socket,
    /// Datagram sockets send to this address; stream sockets are connected.
    to: Option<SockAddr>,
    /// A Unix socket is reconnected once when a send fails (syslogd restarted).
    unix: Option<(String, Type)>,
}

pub struct Syslog {
    transport: Mutex<Transport>,
    facility: u8,
    /// `gunicorn.<prefix>.error: ` and `gunicorn.<prefix>.access: `
    error_ident: String,
    access_ident: String,
    /// Access lines too (unless --disable-redirect-access-to-syslog).
    access: bool,
}

static SYSLOG: RwLock<Option<Arc<Syslog>>> = RwLock::new(None);

pub struct SyslogConfig<'a> {
    pub addr: &'a str,
    pub facility: &'a str,
    /// `syslog_prefix`, else the process name with ':' replaced by '.'.
    pub prefix: &'a str,
    pub access: bool,
}

/// Connects now, as SysLogHandler does, so an unreachable TCP or Unix
/// syslog stops the start with the reason. `None` turns syslog off.
pub fn configure(py: Python<'_>, config: Option<SyslogConfig<'_>>) -> Result<(), String> {
    let client = match config {
        None => None,
        Some(c) => {
            let facility = facility(c.facility)?;
            let addr = SyslogAddr::parse(py, c.addr)?;
            let transport = connect(&addr).map_err(|e| format!("cannot reach syslog at {}: {e}", c.addr))?;
            Some(Arc::new(Syslog {
                transport: Mutex::new(transport),
                facility,
                error_ident: format!("gunicorn.{}.error: ", c.prefix),
                access_ident: format!("gunicorn.{}.access: ", c.prefix),
                access: c.access,
            }))
        }
    };
    *SYSLOG.write().unwrap_or_else(|p| p.into_inner()) = client;
    Ok(())
}

fn connect(addr: &SyslogAddr) -> std::io::Result<Transport> {
    match addr {
        SyslogAddr::Unix { path, dgram_only } => {
            let target = SockAddr::unix(path)?;
            let dgram = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
            match dgram.connect(&target) {
                Ok(()) => Ok(Transport { sock: dgram, to: None, unix: Some((path.clone(), Type::DGRAM)) }),
                Err(e) if *dgram_only => Err(e),
                Err(_) => {
                    let stream = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                    stream.connect(&target)?;
                    Ok(Transport { sock: stream, to: None, unix: Some((path.clone(), Type::STREAM)) })
                }
            }
        }
        SyslogAddr::Udp { host, port } | SyslogAddr::Tcp { host, port } => {
            let tcp = matches!(addr, SyslogAddr::Tcp { .. });
            let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address found");
            for found in std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))? {
                let ty = if tcp { Type::STREAM } else { Type::DGRAM };
                let sock = Socket::new(Domain::for_address(found), ty, None)?;
                if tcp {
                    match sock.connect(&SockAddr::from(found)) {
                        Ok(()) => return Ok(Transport { sock, to: None, unix: None }),
                        Err(e) => last = e,
                    }
                } else {
                    return Ok(Transport { sock, to: Some(SockAddr::from(found)), unix: None });
                }
            }
            Err(last)
        }
    }
}

/// Python's `SysLogHandler.mapPriority` then `encodePriority`.
fn priority(facility: u8, level: Level) -> u32 {
    let severity = match level {
        Level::Debug => 7,
        Level::Info => 6,
        Level::Warning => 4,
        Level::Error => 3,
        Level::Critical => 2,
    };
    (u32::from(facility) << 3) | severity
}

impl Syslog {
    fn send(&self, level: Level, ident: &str, message: fmt::Arguments<'_>) {
        let mut packet = format!("<{}>{ident}[{}] ", priority(self.facility, level), std::process::id());
        let _ = fmt::Write::write_fmt(&mut packet, message);
        packet.push('\0');
        let mut t = self.transport.lock().unwrap_or_else(|p| p.into_inner());
        let sent = match &t.to {
            Some(to) => t.sock.send_to(packet.as_bytes(), to).map(drop),
            None => send_all(&t.sock, packet.as_bytes()),
        };
        // Python reconnects a Unix socket once and tries again; other
        // failures are dropped (logging must not take the server down).
        if sent.is_err() {
            if let Some((path, ty)) = t.unix.clone() {
                if let Ok(sock) = Socket::new(Domain::UNIX, ty, None) {
                    if SockAddr::unix(&path).and_then(|a| sock.connect(&a)).is_ok() {
                        let _ = send_all(&sock, packet.as_bytes());
                        t.sock = sock;
                    }
                }
            }
        }
    }
}

fn send_all(sock: &Socket, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = sock.send(buf)?;
        buf = buf.get(n..).unwrap_or(&[]);
    }
    Ok(())
}

fn current() -> Option<Arc<Syslog>> {
    SYSLOG.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// One error-log record (already filtered by level).
pub fn error(level: Level, message: fmt::Arguments<'_>) {
    if let Some(s) = current() {
        s.send(level, &s.error_ident, message);
    }
}

/// Whether access lines go to syslog, so the worker renders them even
/// without an access log file.
pub fn wants_access() -> bool {
    current().is_some_and(|s| s.access)
}

/// One rendered access line, without its newline.
pub fn access(line: &[u8]) {
    if let Some(s) = current().filter(|s| s.access) {
        let text = String::from_utf8_lossy(line);
        s.send(Level::Info, &s.access_ident, format_args!("{text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let parse = |addr: &str| crate::python::with_python(|py| SyslogAddr::parse(py, addr));
        let udp = |host: &str, port| SyslogAddr::Udp { host: host.into(), port };
        assert_eq!(parse("udp://localhost:514"), Ok(udp("localhost", 514)));
        assert_eq!(parse("udp://"), Ok(udp("localhost", 514)));
        assert_eq!(parse("udp://Log.Example"), Ok(udp("log.example", 514)));
        assert_eq!(parse("tcp://[::1]:601"), Ok(SyslogAddr::Tcp { host: "::1".into(), port: 601 }));
        assert_eq!(parse("unix:///dev/log#dgram"), Ok(SyslogAddr::Unix { path: "/dev/log".into(), dgram_only: true }));
        assert_eq!(parse("unix:///dev/log#x"), Ok(SyslogAddr::Unix { path: "/dev/log".into(), dgram_only: false }));
        // Python's str.split: up to a second "unix://" or "udp://".
        assert_eq!(parse("unix:///a/unix://b"), Ok(SyslogAddr::Unix { path: "/a/".into(), dgram_only: false }));
        assert_eq!(parse("udp://h:1udp://x"), Ok(udp("h", 1)));
        assert_eq!(parse("udp://h:\u{0661}"), Ok(udp("h", 1)));
        assert_eq!(parse("localhost:514"), Err("invalid syslog address".into()));
        assert_eq!(parse("udp://h:x"), Err("'x' is not a valid port number.".into()));
        assert_eq!(parse("udp://h:"), Err("'' is not a valid port number.".into()));
        assert_eq!(parse("udp://h:\u{b2}"), Err("invalid literal for int() with base 10: '\u{b2}'".into()));
        assert_eq!(parse("udp://h:70000"), Err("'70000' is not a valid port number.".into()));
        assert_eq!(facility("LOCAL3"), Ok(19));
        assert!(facility("nope").is_err());
        assert_eq!(priority(1, Level::Info), 14);
        assert_eq!(priority(16, Level::Error), 131);
    }

    #[test]
    fn datagram_shape() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        server.set_read_timeout(Some(std::time::Duration::from_secs(2))).expect("timeout");
        let addr = format!("udp://127.0.0.1:{}", server.local_addr().expect("addr").port());
        crate::python::with_python(|py| {
            configure(py, Some(SyslogConfig { addr: &addr, facility: "local0", prefix: "app.x", access: true }))
        })
        .expect("configure");
        error(Level::Warning, format_args!("careful"));
        access(b"127.0.0.1 - - \"GET / HTTP/1.1\" 200 2");
        crate::python::with_python(|py| configure(py, None)).expect("off");
        let mut buf = [0u8; 512];
        let pid = std::process::id();
        let n = server.recv(&mut buf).expect("error packet");
        assert_eq!(&buf[..n], format!("<132>gunicorn.app.x.error: [{pid}] careful\0").as_bytes());
        let n = server.recv(&mut buf).expect("access packet");
        assert_eq!(
            &buf[..n],
            format!("<134>gunicorn.app.x.access: [{pid}] 127.0.0.1 - - \"GET / HTTP/1.1\" 200 2\0").as_bytes()
        );
    }
}
