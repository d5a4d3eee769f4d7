//! `--log-syslog`: error and access records sent to syslog exactly as
//! Gunicorn's `logging.handlers.SysLogHandler` sends them: `<PRI>`, the
//! program name `gunicorn.<prefix>.<error|access>: `, `[pid] message`, a
//! trailing NUL, one datagram (or one stream write) per record.

use super::level::Level;
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

impl SyslogAddr {
    pub fn parse(addr: &str) -> Result<SyslogAddr, String> {
        if let Some(rest) = addr.strip_prefix("unix://") {
            let (path, kind) = match rest.split_once('#') {
                Some((p, k)) => (p, Some(k)),
                None => (rest, None),
            };
            return Ok(SyslogAddr::Unix { path: path.to_owned(), dgram_only: kind == Some("dgram") });
        }
        let (rest, tcp) = if let Some(r) = addr.strip_prefix("udp://") {
            (r, false)
        } else if let Some(r) = addr.strip_prefix("tcp://") {
            (r, true)
        } else {
            return Err("invalid syslog address".into());
        };
        let host = if rest.contains('[') && rest.contains(']') {
            rest.split(']').next().unwrap_or("").get(1..).unwrap_or("").to_lowercase()
        } else if rest.contains(':') {
            rest.split(':').next().unwrap_or("").to_lowercase()
        } else if rest.is_empty() {
            "localhost".to_owned()
        } else {
            rest.to_lowercase()
        };
        let tail = rest.rsplit(']').next().unwrap_or(rest);
        let port = match tail.split_once(':') {
            Some((_, p)) => {
                if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
                    return Err(format!("{} is not a valid port number.", crate::http::text::py_repr(p)));
                }
                p.parse::<u16>()
                    .map_err(|_| format!("{} is not a valid port number.", crate::http::text::py_repr(p)))?
            }
            None => 514,
        };
        Ok(if tcp { SyslogAddr::Tcp { host, port } } else { SyslogAddr::Udp { host, port } })
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
pub fn configure(config: Option<SyslogConfig<'_>>) -> Result<(), String> {
    let client = match config {
        None => None,
        Some(c) => {
            let facility = facility(c.facility)?;
            let addr = SyslogAddr::parse(c.addr)?;
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
        assert_eq!(
            SyslogAddr::parse("udp://localhost:514"),
            Ok(SyslogAddr::Udp { host: "localhost".into(), port: 514 })
        );
        assert_eq!(SyslogAddr::parse("udp://"), Ok(SyslogAddr::Udp { host: "localhost".into(), port: 514 }));
        assert_eq!(SyslogAddr::parse("tcp://[::1]:601"), Ok(SyslogAddr::Tcp { host: "::1".into(), port: 601 }));
        assert_eq!(
            SyslogAddr::parse("unix:///dev/log#dgram"),
            Ok(SyslogAddr::Unix { path: "/dev/log".into(), dgram_only: true })
        );
        assert_eq!(SyslogAddr::parse("localhost:514"), Err("invalid syslog address".into()));
        assert_eq!(SyslogAddr::parse("udp://h:x"), Err("'x' is not a valid port number.".into()));
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
        configure(Some(SyslogConfig { addr: &addr, facility: "local0", prefix: "app.x", access: true }))
            .expect("configure");
        error(Level::Warning, format_args!("careful"));
        access(b"127.0.0.1 - - \"GET / HTTP/1.1\" 200 2");
        configure(None).expect("off");
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
