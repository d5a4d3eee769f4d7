//! The Gunicorn settings the HTTP/1.1 codec obeys, and the limits Gunicorn
//! derives from them in `Message.__init__` / `Request.__init__`.

use std::net::IpAddr;

use crate::http::ip::{py_ip_network, Network};
use crate::net::proxy_protocol::ProxyMode;

/// Gunicorn's `MAX_REQUEST_LINE`.
pub const MAX_REQUEST_LINE: usize = 8190;
/// Gunicorn's `MAX_HEADERS`.
pub const MAX_HEADERS: usize = 32768;
/// Gunicorn's `DEFAULT_MAX_HEADERFIELD_SIZE`.
pub const DEFAULT_MAX_HEADERFIELD_SIZE: usize = 8190;

/// `header_map`: what to do with a header whose name has an underscore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HeaderMapPolicy {
    #[default]
    Drop,
    Refuse,
    Dangerous,
}

impl HeaderMapPolicy {
    /// The setting's value as `cfg.header_map` gives it.
    pub fn name(self) -> &'static str {
        match self {
            HeaderMapPolicy::Drop => "drop",
            HeaderMapPolicy::Refuse => "refuse",
            HeaderMapPolicy::Dangerous => "dangerous",
        }
    }
}

impl std::str::FromStr for HeaderMapPolicy {
    type Err = String;
    /// Gunicorn's `validate_header_map_behaviour`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "drop" => Ok(Self::Drop),
            "refuse" => Ok(Self::Refuse),
            "dangerous" => Ok(Self::Dangerous),
            _ => Err(format!("Invalid header map behaviour: {s}")),
        }
    }
}

/// `forwarded_allow_ips` / `proxy_allow_ips`: `*`, addresses and networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    wildcard: bool,
    networks: Vec<Network>,
}

impl AllowList {
    /// Entries as Gunicorn's `validate_string_to_addr_list` leaves them
    /// (already split on commas). Each must be `*` or what
    /// `ipaddress.ip_network(entry)` accepts (strict: no host bits set).
    pub fn parse(items: &[String]) -> Result<Self, String> {
        let mut list = AllowList::default();
        for item in items {
            let item = item.trim();
            if item == "*" {
                list.wildcard = true;
                continue;
            }
            list.networks.push(py_ip_network(item)?);
        }
        Ok(list)
    }

    /// `_ip_in_allow_list`: `*` allows all; otherwise the address must lie in
    /// one of the networks of its own family (no IPv4-mapped matching).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.wildcard || self.networks.iter().any(|n| n.contains(ip))
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Gunicorn's default, `"127.0.0.1,::1"`.
    pub fn localhost() -> Self {
        AllowList {
            wildcard: false,
            networks: vec![
                Network { addr: IpAddr::from([127, 0, 0, 1]), prefix: 32 },
                Network { addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), prefix: 128 },
            ],
        }
    }
}

/// The settings that shape request parsing, as Gunicorn's `cfg` holds them.
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    /// Raw setting; see [`HttpPolicy::limit_request_line`] for the value used.
    pub limit_request_line: usize,
    /// Raw setting; see [`HttpPolicy::limit_request_fields`].
    pub limit_request_fields: usize,
    /// Raw setting; see [`HttpPolicy::limit_request_field_size`].
    pub limit_request_field_size: usize,
    pub header_map: HeaderMapPolicy,
    pub permit_unconventional_http_method: bool,
    pub permit_unconventional_http_version: bool,
    pub casefold_http_method: bool,
    pub permit_obsolete_folding: bool,
    pub strip_header_spaces: bool,
    pub forwarded_allow: AllowList,
    /// Names as configured: Gunicorn looks the uppercased header name up in
    /// this dict, so a lowercase key never matches. Values compare exactly.
    pub secure_scheme_headers: Vec<(String, String)>,
    /// Underscore names a trusted front end may set; `"*"` allows any.
    pub forwarder_headers: Vec<String>,
    pub proxy_protocol: ProxyMode,
    pub proxy_allow: AllowList,
    /// Whether the listener is TLS (`cfg.is_ssl`): the initial URL scheme.
    pub is_ssl: bool,
    /// `--protocol uwsgi`: requests are uwsgi packets from these peers.
    pub uwsgi: Option<UwsgiPolicy>,
}

/// How a worker takes uwsgi packets.
#[derive(Clone, Debug)]
pub struct UwsgiPolicy {
    /// `--uwsgi-allow-from`.
    pub allow: AllowList,
    /// A refused packet gets Gunicorn's 500 page (its WSGI workers), or the
    /// connection just closes (its asgi worker).
    pub answer_errors: bool,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            limit_request_line: 4094,
            limit_request_fields: 100,
            limit_request_field_size: 8190,
            header_map: HeaderMapPolicy::Drop,
            permit_unconventional_http_method: false,
            permit_unconventional_http_version: false,
            casefold_http_method: false,
            permit_obsolete_folding: false,
            strip_header_spaces: false,
            forwarded_allow: AllowList::localhost(),
            secure_scheme_headers: vec![
                ("X-FORWARDED-PROTOCOL".to_owned(), "ssl".to_owned()),
                ("X-FORWARDED-PROTO".to_owned(), "https".to_owned()),
                ("X-FORWARDED-SSL".to_owned(), "on".to_owned()),
            ],
            forwarder_headers: vec!["SCRIPT_NAME".to_owned(), "PATH_INFO".to_owned()],
            proxy_protocol: ProxyMode::Off,
            proxy_allow: AllowList::localhost(),
            is_ssl: false,
            uwsgi: None,
        }
    }
}

impl HttpPolicy {
    /// The request-line limit in force; `0` means unlimited.
    pub fn limit_request_line(&self) -> usize {
        self.limit_request_line.min(MAX_REQUEST_LINE)
    }

    /// The header-count limit in force (never 0).
    pub fn limit_request_fields(&self) -> usize {
        match self.limit_request_fields {
            n if n > 0 && n <= MAX_HEADERS => n,
            _ => MAX_HEADERS,
        }
    }

    /// The per-field size limit in force (never 0). Also bounds a chunk-size line.
    pub fn limit_request_field_size(&self) -> usize {
        match self.limit_request_field_size {
            0 => DEFAULT_MAX_HEADERFIELD_SIZE,
            n => n,
        }
    }

    /// `max_buffer_headers`: how much header data may be buffered without
    /// its terminator. Also bounds a trailer section.
    pub fn max_buffer_headers(&self) -> usize {
        self.limit_request_fields().saturating_mul(self.limit_request_field_size().saturating_add(2)).saturating_add(4)
    }

    /// `_peer_is_trusted_proxy`: Unix-socket peers (`None`) always are.
    pub fn peer_is_trusted(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            None => true,
            Some(ip) => self.forwarded_allow.allows(ip),
        }
    }

    pub(crate) fn secure_scheme_value(&self, upper_name: &str) -> Option<&str> {
        // A dict keeps the last value given for a key.
        self.secure_scheme_headers.iter().rev().find(|(k, _)| k == upper_name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn is_forwarder_header(&self, upper_name: &str) -> bool {
        self.forwarder_headers.iter().any(|h| h == upper_name || h == "*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_limits_follow_gunicorn() {
        let mut p = HttpPolicy::default();
        assert_eq!(p.limit_request_line(), 4094);
        p.limit_request_line = 0;
        assert_eq!(p.limit_request_line(), 0);
        p.limit_request_line = 9000;
        assert_eq!(p.limit_request_line(), 8190);
        p.limit_request_line = 8190;
        assert_eq!(p.limit_request_line(), 8190);

        assert_eq!(p.limit_request_fields(), 100);
        p.limit_request_fields = 0;
        assert_eq!(p.limit_request_fields(), 32768);
        p.limit_request_fields = 40000;
        assert_eq!(p.limit_request_fields(), 32768);
        p.limit_request_fields = 100;

        assert_eq!(p.limit_request_field_size(), 8190);
        p.limit_request_field_size = 0;
        assert_eq!(p.limit_request_field_size(), 8190);
        p.limit_request_field_size = 100_000;
        assert_eq!(p.limit_request_field_size(), 100_000);
        p.limit_request_field_size = 8190;
        assert_eq!(p.max_buffer_headers(), 100 * 8192 + 4);
    }

    #[test]
    fn allow_lists() {
        let l = AllowList::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        assert!(l.allows("10.2.3.4".parse().unwrap()));
        assert!(l.allows("::1".parse().unwrap()));
        assert!(!l.allows("127.0.0.1".parse().unwrap()));
        assert!(!l.is_wildcard());
        let w = AllowList::parse(&["*".into()]).unwrap();
        assert!(w.is_wildcard() && w.allows("8.8.8.8".parse().unwrap()));
        assert!(AllowList::parse(&["10.0.0.1/8".into()]).is_err());
        assert!(AllowList::parse(&["bogus".into()]).is_err());
        let d = AllowList::localhost();
        assert!(d.allows("127.0.0.1".parse().unwrap()));
        assert!(!d.allows("127.0.0.2".parse().unwrap()));
        assert!(!d.allows("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn trust_and_lookups() {
        let p = HttpPolicy::default();
        assert!(p.peer_is_trusted(None));
        assert!(p.peer_is_trusted(Some("127.0.0.1".parse().unwrap())));
        assert!(!p.peer_is_trusted(Some("10.0.0.1".parse().unwrap())));
        assert_eq!(p.secure_scheme_value("X-FORWARDED-PROTO"), Some("https"));
        assert_eq!(p.secure_scheme_value("x-forwarded-proto"), None);
        assert!(p.is_forwarder_header("SCRIPT_NAME"));
        assert!(!p.is_forwarder_header("REMOTE_USER"));
        assert_eq!("Refuse ".parse::<HeaderMapPolicy>(), Ok(HeaderMapPolicy::Refuse));
    }
}
