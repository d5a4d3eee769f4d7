//! An HTTP/2 request's headers made into the [`RequestHead`] every worker
//! serves, with the checks Gunicorn 27 applies to HTTP/2 requests: a token
//! method, the request-line and header limits, the header-value rule and
//! the same header policy as HTTP/1 (underscores, secure-scheme and
//! forwarder headers). A request that fails them is reset with
//! PROTOCOL_ERROR, as Gunicorn resets it: an HTTP/2 stream has no room for
//! an HTTP/1 error page before its own response.

use crate::http::error::HttpError;
use crate::http::policy::HttpPolicy;
use crate::http::request::{
    apply_field_policy, BodyFraming, FieldContext, FieldRules, FieldState, Header, RequestHead, Scheme,
    INVALID_VALUE_BYTES,
};
use crate::http::text::is_token;
use crate::http::uri::split_request_uri;
use std::net::IpAddr;

pub const VERSION: (u8, u8) = (2, 0);

/// The head of `parts`; `end_stream`: the HEADERS frame ended the stream
/// (no body follows).
pub fn request_head(
    parts: &http::request::Parts,
    end_stream: bool,
    policy: &HttpPolicy,
    peer: Option<IpAddr>,
) -> Result<RequestHead, HttpError> {
    let method = parts.method.as_str();
    if !is_token(method.as_bytes()) {
        return Err(HttpError::InvalidRequestMethod(method.to_owned()));
    }
    let mut method = method.to_owned();
    if policy.casefold_http_method {
        method.make_ascii_uppercase();
    }
    let trusted = policy.peer_is_trusted(peer);
    let mut scheme = if policy.is_ssl { Scheme::Https } else { Scheme::Http };
    // A trusted front end's :scheme counts, as X-Forwarded-Proto would.
    if trusted {
        match parts.uri.scheme_str() {
            Some("https") => scheme = Scheme::Https,
            Some("http") => scheme = Scheme::Http,
            _ => {}
        }
    }
    // :path (CONNECT has none: its target is the authority).
    let path = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str().to_owned(),
        None => parts.uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default(),
    };
    if policy.limit_request_line > 0 && path.len() > policy.limit_request_line {
        return Err(HttpError::LimitRequestLine { size: path.len(), max: policy.limit_request_line });
    }
    let count = parts.headers.len();
    if policy.limit_request_fields > 0 && count > policy.limit_request_fields {
        return Err(HttpError::LimitRequestHeaders("limit request headers fields"));
    }

    let ctx = FieldContext {
        rules: FieldRules::from_policy(policy),
        forwarding: trusted.then_some(policy),
        from_trailer: false,
        version: VERSION,
    };
    let mut state = FieldState::new(scheme);
    let mut headers: Vec<Header> = Vec::with_capacity(count + 1);
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in parts.headers.iter() {
        let (name, value) = (name.as_str(), value.as_bytes());
        if policy.limit_request_field_size > 0 && name.len() + value.len() + 2 > policy.limit_request_field_size {
            return Err(HttpError::LimitRequestHeaders("limit request headers fields size"));
        }
        let upper = name.to_ascii_uppercase();
        if value.iter().any(|&b| INVALID_VALUE_BYTES[usize::from(b)]) {
            return Err(HttpError::InvalidHeader(upper));
        }
        // RFC 9113 8.2.3: split cookie fields are one field to an
        // HTTP/1-style application, joined with "; ".
        if upper == "COOKIE" {
            cookies.push(value);
            continue;
        }
        if apply_field_policy(&upper, value, &ctx, &mut state)? {
            headers.push(Header { name: upper, value: value.to_vec() });
        }
    }
    if !cookies.is_empty() {
        headers.push(Header { name: "COOKIE".to_owned(), value: cookies.join(&b"; "[..]) });
    }
    // :authority stands for Host.
    if let Some(authority) = parts.uri.authority() {
        headers.retain(|h| h.name != "HOST");
        headers.push(Header { name: "HOST".to_owned(), value: authority.as_str().as_bytes().to_vec() });
    }
    let (uri_path, query, fragment) = match split_request_uri(&path) {
        Ok(p) => (p.path.to_owned(), p.query.to_owned(), p.fragment.to_owned()),
        Err(_) => (path.clone(), String::new(), String::new()),
    };
    let body = if end_stream {
        BodyFraming::Empty
    } else {
        match headers.iter().find(|h| h.name == "CONTENT-LENGTH") {
            // The h2 crate checks the DATA frames against it.
            Some(h) => std::str::from_utf8(&h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(BodyFraming::Stream, BodyFraming::Length),
            None => BodyFraming::Stream,
        }
    };
    Ok(RequestHead {
        method,
        uri: path,
        path: uri_path,
        query,
        fragment,
        version: VERSION,
        headers,
        scheme: state.scheme,
        expect_continue: state.expect_continue,
        body,
        must_close: false,
        uwsgi: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    fn get(uri: &str) -> http::request::Builder {
        http::Request::builder().method("GET").uri(uri)
    }

    #[test]
    fn pseudo_headers_become_the_head() {
        let p =
            parts(get("https://example.com/a/b?x=1").header("cookie", "a=1").header("cookie", "b=2").body(()).unwrap());
        let head = request_head(&p, true, &HttpPolicy::default(), None).unwrap();
        assert_eq!((head.method.as_str(), head.uri.as_str()), ("GET", "/a/b?x=1"));
        assert_eq!((head.path.as_str(), head.query.as_str()), ("/a/b", "x=1"));
        assert_eq!(head.version, (2, 0));
        assert_eq!(head.header("HOST"), Some(&b"example.com"[..]));
        assert_eq!(head.header("COOKIE"), Some(&b"a=1; b=2"[..]));
        assert_eq!(head.body, BodyFraming::Empty);
        // A Unix-socket peer is trusted: its :scheme counts.
        assert_eq!(head.scheme, Scheme::Https);
    }

    #[test]
    fn untrusted_scheme_is_the_listeners() {
        let p = parts(get("https://example.com/").body(()).unwrap());
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let head = request_head(&p, false, &HttpPolicy::default(), Some(peer)).unwrap();
        assert_eq!(head.scheme, Scheme::Http);
        assert_eq!(head.body, BodyFraming::Stream);
    }

    #[test]
    fn gunicorns_limits_and_rules() {
        let policy = HttpPolicy { limit_request_line: 8, ..HttpPolicy::default() };
        let p = parts(get("http://h/123456789").body(()).unwrap());
        assert!(matches!(request_head(&p, true, &policy, None), Err(HttpError::LimitRequestLine { .. })));

        let policy = HttpPolicy { limit_request_fields: 1, ..HttpPolicy::default() };
        let p = parts(get("http://h/").header("a", "1").header("b", "2").body(()).unwrap());
        assert!(matches!(request_head(&p, true, &policy, None), Err(HttpError::LimitRequestHeaders(_))));

        // Underscored names are dropped by default, as in HTTP/1.
        let p = parts(get("http://h/").header("x_a", "1").body(()).unwrap());
        assert!(request_head(&p, true, &HttpPolicy::default(), None).unwrap().header("X_A").is_none());

        let p = parts(get("http://h/").header("content-length", "5").body(()).unwrap());
        assert_eq!(request_head(&p, false, &HttpPolicy::default(), None).unwrap().body, BodyFraming::Length(5));
    }
}
