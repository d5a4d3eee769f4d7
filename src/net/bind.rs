//! `--bind` addresses, read as Gunicorn's `util.parse_address` reads them.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSpec {
    Tcp { host: String, port: u16 },
    Unix(String),
    Fd(i32),
}

impl BindSpec {
    pub fn parse(netloc: &str) -> Result<BindSpec, String> {
        if let Some(rest) = netloc.strip_prefix("unix:") {
            return Ok(BindSpec::Unix(rest.strip_prefix("//").unwrap_or(rest).to_owned()));
        }
        if let Some(fd) = netloc.strip_prefix("fd://") {
            return fd
                .trim()
                .parse::<i32>()
                .map(BindSpec::Fd)
                .map_err(|_| format!("'{fd}' is not a valid file descriptor."));
        }
        let netloc = netloc.strip_prefix("tcp://").unwrap_or(netloc);
        let default_port = "8000";
        let (host, port): (String, String) = if netloc.contains('[') && netloc.contains(']') {
            let host = netloc.split(']').next().unwrap_or("").trim_start_matches('[').to_owned();
            let port = netloc.split("]:").nth(1).unwrap_or(default_port).to_owned();
            (host, port)
        } else if netloc.contains(':') {
            let mut parts = netloc.split(':');
            let host = parts.next().unwrap_or("").to_owned();
            let port = parts.next().unwrap_or(default_port).to_owned();
            (host, port)
        } else if netloc.is_empty() {
            ("0.0.0.0".to_owned(), default_port.to_owned())
        } else {
            (netloc.to_owned(), default_port.to_owned())
        };
        let port: u16 = port.trim().parse().map_err(|_| format!("'{port}' is not a valid port number."))?;
        Ok(BindSpec::Tcp { host: host.to_lowercase(), port })
    }
}

impl fmt::Display for BindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindSpec::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindSpec::Tcp { host, port } => write!(f, "{host}:{port}"),
            BindSpec::Unix(path) => write!(f, "unix:{path}"),
            BindSpec::Fd(fd) => write!(f, "fd://{fd}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> BindSpec {
        BindSpec::Tcp { host: host.into(), port }
    }

    #[test]
    fn gunicorn_address_forms() {
        assert_eq!(BindSpec::parse("127.0.0.1:8000"), Ok(tcp("127.0.0.1", 8000)));
        assert_eq!(BindSpec::parse("LocalHost:80"), Ok(tcp("localhost", 80)));
        assert_eq!(BindSpec::parse("example.org"), Ok(tcp("example.org", 8000)));
        assert_eq!(BindSpec::parse(""), Ok(tcp("0.0.0.0", 8000)));
        assert_eq!(BindSpec::parse("[::1]:9000"), Ok(tcp("::1", 9000)));
        assert_eq!(BindSpec::parse("[::]"), Ok(tcp("::", 8000)));
        assert_eq!(BindSpec::parse("tcp://0.0.0.0:5000"), Ok(tcp("0.0.0.0", 5000)));
        assert_eq!(BindSpec::parse("unix:/tmp/a.sock"), Ok(BindSpec::Unix("/tmp/a.sock".into())));
        assert_eq!(BindSpec::parse("unix:///tmp/a.sock"), Ok(BindSpec::Unix("/tmp/a.sock".into())));
        assert_eq!(BindSpec::parse("fd://3"), Ok(BindSpec::Fd(3)));
    }

    #[test]
    fn bad_addresses() {
        assert_eq!(BindSpec::parse("fd://x"), Err("'x' is not a valid file descriptor.".into()));
        assert_eq!(BindSpec::parse("host:http"), Err("'http' is not a valid port number.".into()));
        assert!(BindSpec::parse("host:70000").is_err());
        // an IPv6 address needs brackets, as in Gunicorn
        assert!(BindSpec::parse("::1").is_err());
    }
}
