//! The PROXY protocol header (v1 text, v2 binary) that a load balancer may
//! put before the first request of a connection, parsed the way Gunicorn 27's
//! `Request._handle_proxy_protocol` does, sans-I/O.

use std::net::IpAddr;

use crate::http::error::HttpError;
use crate::http::ip::{inet_ntop6, inet_pton4, inet_pton6};
use crate::http::policy::AllowList;
use crate::http::request::Parsed;
use crate::http::text::{latin1_to_string, py_int};

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\x00\r\nQUIT\n";

/// The largest v2 header (16 fixed bytes and a 16-bit length).
pub const MAX_V2_HEADER: usize = 16 + 65535;

/// `proxy_protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProxyMode {
    #[default]
    Off,
    V1,
    V2,
    Auto,
}

impl ProxyMode {
    /// The setting's canonical value (what `cfg.proxy_protocol` gives).
    pub fn name(self) -> &'static str {
        match self {
            ProxyMode::Off => "off",
            ProxyMode::V1 => "v1",
            ProxyMode::V2 => "v2",
            ProxyMode::Auto => "auto",
        }
    }
}

impl std::str::FromStr for ProxyMode {
    type Err = String;
    /// Gunicorn's `validate_proxy_protocol` spellings.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "false" | "off" | "0" | "none" => Ok(ProxyMode::Off),
            "true" | "auto" | "1" => Ok(ProxyMode::Auto),
            "v1" => Ok(ProxyMode::V1),
            "v2" => Ok(ProxyMode::V2),
            _ => Err("proxy_protocol must be: off, v1, v2, or auto".to_owned()),
        }
    }
}

/// `proxy_protocol_info`. For `LOCAL` and `UNSPEC` there are no addresses:
/// Gunicorn then sets `REMOTE_ADDR` to `None` (and `REMOTE_PORT` to "None").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyInfo {
    /// `"TCP4"`, `"TCP6"`, `"LOCAL"` or `"UNSPEC"`.
    pub protocol: &'static str,
    /// The original client: address text as Gunicorn reports it (as sent
    /// for v1, `inet_ntop` for v2) and port.
    pub client: Option<(String, u16)>,
    /// The proxy's own (destination) address and port.
    pub proxy: Option<(String, u16)>,
}

/// Looks for a PROXY header at the start of a connection; call only for its
/// first request. `Complete(None, 0)`: no PROXY header (nothing consumed),
/// parse the request from the same bytes. `peer` is `None` on a Unix socket.
///
/// Gunicorn needs 12 bytes before it decides, and reads a v1 line until its
/// CRLF with no length limit: a driver that bounds its buffer should treat
/// running out of room here like a timeout (close, say nothing).
pub fn parse_proxy_header(
    buf: &[u8],
    mode: ProxyMode,
    peer: Option<IpAddr>,
    allow: &AllowList,
) -> Result<Parsed<Option<ProxyInfo>>, HttpError> {
    if mode == ProxyMode::Off {
        return Ok(Parsed::Complete(None, 0));
    }
    let Some(start) = buf.get(..12) else {
        return Ok(Parsed::Partial);
    };
    if matches!(mode, ProxyMode::V2 | ProxyMode::Auto) && start == V2_SIGNATURE {
        access_check(peer, allow)?;
        return parse_v2(buf);
    }
    if matches!(mode, ProxyMode::V1 | ProxyMode::Auto) && start.starts_with(b"PROXY ") {
        access_check(peer, allow)?;
        return parse_v1(buf);
    }
    Ok(Parsed::Complete(None, 0))
}

/// `proxy_protocol_access_check`.
fn access_check(peer: Option<IpAddr>, allow: &AllowList) -> Result<(), HttpError> {
    match peer {
        Some(ip) if !allow.allows(ip) => Err(HttpError::ForbiddenProxyRequest(python_host(ip))),
        _ => Ok(()),
    }
}

/// The address text Python's socket module gives for a peer.
fn python_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => inet_ntop6(&v6.octets()),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed<Option<ProxyInfo>>, HttpError> {
    let Some(idx) = memchr::memmem::find(buf, b"\r\n") else {
        return Ok(Parsed::Partial);
    };
    let line_bytes = buf.get(..idx).unwrap_or(&[]);
    let line = || latin1_to_string(line_bytes);
    let bits: Vec<&[u8]> = line_bytes.split(|&b| b == b' ').collect();
    let [_, proto, s_addr, d_addr, s_port, d_port] = bits.as_slice() else {
        return Err(HttpError::InvalidProxyLine(line()));
    };
    let pton: fn(&[u8]) -> bool = match *proto {
        b"TCP4" => |a| inet_pton4(a).is_some(),
        b"TCP6" => |a| inet_pton6(a).is_some(),
        _ => return Err(HttpError::InvalidProxyLine(format!("protocol '{}' not supported", latin1_to_string(proto)))),
    };
    for addr in [s_addr, d_addr] {
        if addr.contains(&0) {
            // socket.inet_pton raises ValueError (not OSError) on a NUL,
            // which escapes Gunicorn's parser and is answered with a 500 and
            // an empty body, exactly like InvalidProxyHeader.
            return Err(HttpError::InvalidProxyHeader("embedded null character".to_owned()));
        }
        if !pton(addr) {
            return Err(HttpError::InvalidProxyLine(line()));
        }
    }
    let port = |p: &[u8]| py_int(p).and_then(|n| u16::try_from(n).ok());
    let (Some(sp), Some(dp)) = (port(s_port), port(d_port)) else {
        return Err(HttpError::InvalidProxyLine(format!("invalid port {}", line())));
    };
    let protocol = if *proto == b"TCP4" { "TCP4" } else { "TCP6" };
    Ok(Parsed::Complete(
        Some(ProxyInfo {
            protocol,
            client: Some((latin1_to_string(s_addr), sp)),
            proxy: Some((latin1_to_string(d_addr), dp)),
        }),
        idx + 2,
    ))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed<Option<ProxyInfo>>, HttpError> {
    let Some(&[ver_cmd, fam_proto, len_hi, len_lo]) = buf.get(12..16) else {
        return Ok(Parsed::Partial);
    };
    let version = ver_cmd >> 4;
    if version != 2 {
        return Err(HttpError::InvalidProxyHeader(format!("unsupported version {version}")));
    }
    let command = ver_cmd & 0x0f;
    if command > 1 {
        return Err(HttpError::InvalidProxyHeader(format!("unsupported command {command}")));
    }
    let total = 16 + usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let Some(addr) = buf.get(16..total) else {
        return Ok(Parsed::Partial);
    };
    let no_addresses = |protocol| Ok(Parsed::Complete(Some(ProxyInfo { protocol, client: None, proxy: None }), total));
    if command == 0 {
        return no_addresses("LOCAL");
    }
    let family = fam_proto >> 4;
    if fam_proto & 0x0f != 1 {
        return Err(HttpError::InvalidProxyHeader("only TCP protocol is supported".to_owned()));
    }
    let byte = |i: usize| addr.get(i).copied().unwrap_or(0);
    let port = |i: usize| u16::from_be_bytes([byte(i), byte(i + 1)]);
    let (protocol, client, proxy) = match family {
        1 => {
            if addr.len() < 12 {
                return Err(HttpError::InvalidProxyHeader("insufficient address data for IPv4".to_owned()));
            }
            let v4 = |i: usize| format!("{}.{}.{}.{}", byte(i), byte(i + 1), byte(i + 2), byte(i + 3));
            ("TCP4", (v4(0), port(8)), (v4(4), port(10)))
        }
        2 => {
            if addr.len() < 36 {
                return Err(HttpError::InvalidProxyHeader("insufficient address data for IPv6".to_owned()));
            }
            let v6 = |i: usize| {
                let mut o = [0u8; 16];
                for (k, b) in o.iter_mut().enumerate() {
                    *b = byte(i + k);
                }
                inet_ntop6(&o)
            };
            ("TCP6", (v6(0), port(32)), (v6(16), port(34)))
        }
        0 => return no_addresses("UNSPEC"),
        f => return Err(HttpError::InvalidProxyHeader(format!("unsupported address family {f}"))),
    };
    Ok(Parsed::Complete(Some(ProxyInfo { protocol, client: Some(client), proxy: Some(proxy) }), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, 1]))
    }

    fn parse(buf: &[u8]) -> Result<Parsed<Option<ProxyInfo>>, HttpError> {
        let allow = AllowList::localhost();
        let whole = parse_proxy_header(buf, ProxyMode::Auto, local(), &allow);
        // Every shorter prefix is undecided or reaches the same decision.
        let mut first = None;
        for end in 0..=buf.len() {
            let r = parse_proxy_header(&buf[..end], ProxyMode::Auto, local(), &allow);
            if r != Ok(Parsed::Partial) {
                first = Some(r);
                break;
            }
        }
        if let Some(first) = first {
            if !matches!(first, Ok(Parsed::Complete(None, 0))) {
                assert_eq!(first, whole, "{buf:?}");
            }
        }
        whole
    }

    fn v2(ver_cmd: u8, fam: u8, addr: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(ver_cmd);
        b.push(fam);
        b.extend_from_slice(&(addr.len() as u16).to_be_bytes());
        b.extend_from_slice(addr);
        b.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        b
    }

    #[test]
    fn v1_lines() {
        let raw = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n\r\n";
        let info = ProxyInfo {
            protocol: "TCP4",
            client: Some(("192.168.0.1".into(), 56324)),
            proxy: Some(("192.168.0.11".into(), 443)),
        };
        assert_eq!(parse(raw), Ok(Parsed::Complete(Some(info), 47)));
        let raw = b"PROXY TCP6 2001:db8::1 ::1 1 +080\r\n";
        match parse(raw) {
            Ok(Parsed::Complete(Some(i), n)) => {
                assert_eq!(n, raw.len());
                assert_eq!(i.client, Some(("2001:db8::1".into(), 1)));
                assert_eq!(i.proxy, Some(("::1".into(), 80)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v1_errors() {
        use HttpError::*;
        let line = |s: &str| Err(InvalidProxyLine(s.into()));
        assert_eq!(parse(b"PROXY TCP4 192.168.0.1 192.16...\r\n"), line("PROXY TCP4 192.168.0.1 192.16..."));
        assert_eq!(
            parse(b"PROXY TCP4 192.168.0.1 192.168.0.11 65iii 100000\r\n"),
            line("invalid port PROXY TCP4 192.168.0.1 192.168.0.11 65iii 100000")
        );
        assert_eq!(
            parse(b"PROXY TCP4 192.168.0.1 192.168.0.11 1 65536\r\n"),
            line("invalid port PROXY TCP4 192.168.0.1 192.168.0.11 1 65536")
        );
        assert_eq!(
            parse(b"PROXY TCP4 not-an-ip 192.168.0.11 56324 443\r\n"),
            line("PROXY TCP4 not-an-ip 192.168.0.11 56324 443")
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), line("PROXY UNKNOWN"));
        assert_eq!(parse(b"PROXY UDP4 a b 1 2\r\n"), line("protocol 'UDP4' not supported"));
        assert_eq!(parse(b"PROXY TCP4 ::1 ::1 1 2\r\n"), line("PROXY TCP4 ::1 ::1 1 2"));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.04 1.2.3.4 1 2\r\n"), line("PROXY TCP4 1.2.3.04 1.2.3.4 1 2"));
        let e = parse(b"PROXY TCP4 1.2.3.4\x00 1.2.3.4 1 2\r\n").unwrap_err();
        assert_eq!(e.response().unwrap().status, 500);
        let e = parse(b"PROXY TCP4 192.168.0.1 192.16...\r\n").unwrap_err();
        assert_eq!(e.response().unwrap().message, "'Invalid PROXY line: 'PROXY TCP4 192.168.0.1 192.16...''");
    }

    #[test]
    fn v2_headers() {
        let addr = [192, 168, 1, 10, 192, 168, 1, 1, 0x30, 0x39, 0x01, 0xbb];
        let raw = v2(0x21, 0x11, &addr);
        let info = ProxyInfo {
            protocol: "TCP4",
            client: Some(("192.168.1.10".into(), 12345)),
            proxy: Some(("192.168.1.1".into(), 443)),
        };
        assert_eq!(parse(&raw), Ok(Parsed::Complete(Some(info), 28)));
        let mut a6 = vec![0x20, 0x01, 0x0d, 0xb8];
        a6.extend_from_slice(&[0; 11]);
        a6.push(1);
        a6.extend_from_slice(&[0; 15]);
        a6.push(2);
        a6.extend_from_slice(&[0xd4, 0x31, 0x00, 0x50]);
        match parse(&v2(0x21, 0x21, &a6)) {
            Ok(Parsed::Complete(Some(i), 52)) => {
                assert_eq!(i.client, Some(("2001:db8::1".into(), 54321)));
                assert_eq!(i.proxy, Some(("::2".into(), 80)));
            }
            other => panic!("{other:?}"),
        }
        let local = parse(&v2(0x20, 0x00, b"ignored")).unwrap();
        assert_eq!(local, Parsed::Complete(Some(ProxyInfo { protocol: "LOCAL", client: None, proxy: None }), 23));
        let unspec = parse(&v2(0x21, 0x01, b"")).unwrap();
        assert_eq!(unspec, Parsed::Complete(Some(ProxyInfo { protocol: "UNSPEC", client: None, proxy: None }), 16));
    }

    #[test]
    fn v2_errors() {
        let e = |s: &str| Err(HttpError::InvalidProxyHeader(s.into()));
        assert_eq!(parse(&v2(0x11, 0x11, &[0; 12])), e("unsupported version 1"));
        assert_eq!(parse(&v2(0x22, 0x11, &[0; 12])), e("unsupported command 2"));
        assert_eq!(parse(&v2(0x21, 0x12, &[0; 12])), e("only TCP protocol is supported"));
        assert_eq!(parse(&v2(0x21, 0x00, &[])), e("only TCP protocol is supported"));
        assert_eq!(parse(&v2(0x21, 0x11, &[0; 11])), e("insufficient address data for IPv4"));
        assert_eq!(parse(&v2(0x21, 0x21, &[0; 35])), e("insufficient address data for IPv6"));
        assert_eq!(parse(&v2(0x21, 0x31, &[0; 216])), e("unsupported address family 3"));
        // An InvalidProxyHeader is a 500 in Gunicorn's worker.
        assert_eq!(HttpError::InvalidProxyHeader("x".into()).response().unwrap().status, 500);
    }

    #[test]
    fn detection_and_access() {
        let allow = AllowList::localhost();
        let req = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(parse_proxy_header(req, ProxyMode::Auto, local(), &allow), Ok(Parsed::Complete(None, 0)));
        assert_eq!(parse_proxy_header(b"GET / HTTP", ProxyMode::Auto, local(), &allow), Ok(Parsed::Partial));
        assert_eq!(parse_proxy_header(b"", ProxyMode::Off, local(), &allow), Ok(Parsed::Complete(None, 0)));
        let v1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        assert_eq!(parse_proxy_header(v1, ProxyMode::V2, local(), &allow), Ok(Parsed::Complete(None, 0)));
        let v2raw = v2(0x20, 0, b"");
        assert_eq!(parse_proxy_header(&v2raw, ProxyMode::V1, local(), &allow), Ok(Parsed::Complete(None, 0)));
        let stranger = Some(IpAddr::from([10, 0, 0, 1]));
        let e = parse_proxy_header(v1, ProxyMode::Auto, stranger, &allow).unwrap_err();
        assert_eq!(e, HttpError::ForbiddenProxyRequest("10.0.0.1".into()));
        assert_eq!(e.to_string(), "Proxy request from '10.0.0.1' not allowed");
        assert_eq!(e.response().unwrap().status, 403);
        // Unix sockets are always allowed.
        assert!(matches!(parse_proxy_header(v1, ProxyMode::Auto, None, &allow), Ok(Parsed::Complete(Some(_), _))));
        assert_eq!("TRUE".parse::<ProxyMode>(), Ok(ProxyMode::Auto));
        assert_eq!("none".parse::<ProxyMode>(), Ok(ProxyMode::Off));
        assert!("v3".parse::<ProxyMode>().is_err());
    }
}
