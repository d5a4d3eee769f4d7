//! Gunicorn's `util.split_request_uri`: Python 3.11's `urllib.parse.urlsplit`
//! plus its `//` prefix rule.
//!
//! `urlsplit` knows nothing of HTTP request-targets, and Gunicorn exposes its
//! quirks to applications (`CONNECT example.com:443` has the path `443`, since
//! `example.com` reads as a scheme), so they are reproduced rather than fixed.

use crate::http::ip::py_ip_address;

/// The components of a request-target, as slices of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriParts<'a> {
    /// Lowercased by Python; borrowed here, so compare case-insensitively.
    pub scheme: &'a str,
    pub netloc: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub fragment: &'a str,
}

/// `urlsplit` raised `ValueError` (Gunicorn answers `InvalidRequestLine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUri;

/// `util.split_request_uri(uri)`.
///
/// `uri` must already be printable ASCII without spaces, as the request-line
/// parser guarantees: `urlsplit`'s stripping of C0 controls, spaces, tabs
/// and newlines is then a no-op, and its NFKC netloc check too.
pub fn split_request_uri(uri: &str) -> Result<UriParts<'_>, InvalidUri> {
    if uri.starts_with("//") {
        // Gunicorn splits "." + uri so that urlsplit sees a relative path
        // rather than a netloc, then drops the dot again: the whole target
        // up to "?" / "#" is the path, and nothing can fail.
        let (before_frag, fragment) = split_once_or(uri, '#');
        let (path, query) = split_once_or(before_frag, '?');
        return Ok(UriParts { scheme: "", netloc: "", path, query, fragment });
    }
    urlsplit(uri)
}

fn split_once_or(s: &str, c: char) -> (&str, &str) {
    s.split_once(c).unwrap_or((s, ""))
}

fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// Python 3.11.7 `urllib.parse.urlsplit(url)` for printable-ASCII input.
pub fn urlsplit(url: &str) -> Result<UriParts<'_>, InvalidUri> {
    let mut rest = url;
    let mut scheme = "";
    if let Some(i) = url.find(':') {
        let b = url.as_bytes();
        if i > 0
            && b.first().is_some_and(u8::is_ascii_alphabetic)
            && b.get(..i).is_some_and(|s| s.iter().all(|&c| is_scheme_char(c)))
        {
            scheme = &url[..i];
            rest = &url[i + 1..];
        }
    }
    let mut netloc = "";
    if let Some(after) = rest.strip_prefix("//") {
        let delim = after.find(['/', '?', '#']).unwrap_or(after.len());
        netloc = &after[..delim];
        rest = &after[delim..];
        let open = netloc.contains('[');
        let close = netloc.contains(']');
        if open != close {
            return Err(InvalidUri);
        }
        if open {
            let host = netloc.split_once('[').map_or("", |(_, h)| h.split_once(']').map_or(h, |(h, _)| h));
            check_bracketed_host(host)?;
        }
    }
    let (before_frag, fragment) = split_once_or(rest, '#');
    let (path, query) = split_once_or(before_frag, '?');
    Ok(UriParts { scheme, netloc, path, query, fragment })
}

/// `urllib.parse._check_bracketed_host`: an IPvFuture literal or an IPv6
/// address (an IPv4 address in brackets is refused).
fn check_bracketed_host(host: &str) -> Result<(), InvalidUri> {
    if let Some(rest) = host.strip_prefix('v') {
        // \Av[a-fA-F0-9]+\..+\Z
        let hex_len = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        let ok = hex_len > 0 && rest.as_bytes().get(hex_len) == Some(&b'.') && rest.len() > hex_len + 1;
        return if ok { Ok(()) } else { Err(InvalidUri) };
    }
    match py_ip_address(host) {
        Some(std::net::IpAddr::V6(_)) => Ok(()),
        _ => Err(InvalidUri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(u: &str) -> (String, String, String, String, String) {
        let p = split_request_uri(u).unwrap();
        (p.scheme.to_ascii_lowercase(), p.netloc.into(), p.path.into(), p.query.into(), p.fragment.into())
    }

    fn t(s: &str, n: &str, p: &str, q: &str, f: &str) -> (String, String, String, String, String) {
        (s.into(), n.into(), p.into(), q.into(), f.into())
    }

    #[test]
    fn matches_python_urlsplit() {
        // Expected values from Python 3.11.7 gunicorn.util.split_request_uri.
        assert_eq!(parts("/stuff/here?foo=bar"), t("", "", "/stuff/here", "foo=bar", ""));
        assert_eq!(parts("/a?b#c"), t("", "", "/a", "b", "c"));
        assert_eq!(parts("/a#b?c"), t("", "", "/a", "", "b?c"));
        assert_eq!(parts("example.com:443"), t("example.com", "", "443", "", ""));
        assert_eq!(parts("[::1]:443"), t("", "", "[::1]:443", "", ""));
        assert_eq!(parts("*"), t("", "", "*", "", ""));
        assert_eq!(parts("http://h/p?q#f"), t("http", "h", "/p", "q", "f"));
        assert_eq!(parts("HTTP://h"), t("http", "h", "", "", ""));
        assert_eq!(parts("//a:b/c?d"), t("", "", "//a:b/c", "d", ""));
        assert_eq!(parts("//[x/c"), t("", "", "//[x/c", "", ""));
        assert_eq!(parts("http://[::1]:80/x"), t("http", "[::1]:80", "/x", "", ""));
        assert_eq!(parts("http://[v1.x]/"), t("http", "[v1.x]", "/", "", ""));
        assert_eq!(parts("1http://x/y"), t("", "", "1http://x/y", "", ""));
        assert_eq!(parts("a_b://x/y"), t("", "", "a_b://x/y", "", ""));
        assert_eq!(parts("/x:y"), t("", "", "/x:y", "", ""));
        assert_eq!(parts("http://[fe80::1%25eth0]/"), t("http", "[fe80::1%25eth0]", "/", "", ""));
        assert_eq!(parts("http://a[::1]b/"), t("http", "a[::1]b", "/", "", ""));
        assert_eq!(parts("http://[::1]x]/"), t("http", "[::1]x]", "/", "", ""));
    }

    #[test]
    fn python_value_errors() {
        for bad in [
            "s://]ufd/:",
            "s://x]y[z/",
            "http://[::1/",
            "http://[1.2.3.4]/",
            "http://[zz]/",
            "http://[v.x]/",
            "http://[v1.]/",
            "http://[]/",
        ] {
            assert_eq!(split_request_uri(bad), Err(InvalidUri), "{bad}");
        }
    }
}
