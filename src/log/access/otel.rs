//! `--access-log-json`: the access line as one JSON object whose keys are
//! OpenTelemetry's HTTP semantic-convention attributes, with typed values
//! (status and sizes as numbers, the duration in seconds as a float) and
//! the request headers the configuration names (`--access-log-json-header`).

use super::record::{AccessRecord, Text};
use super::user::basic_auth_user;
use crate::log::json::Object;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonFields {
    /// (lower-cased header name, its attribute key).
    headers: Vec<(String, String)>,
}

impl JsonFields {
    /// Refuses a name that is not an HTTP token: no request could carry it.
    pub fn new(headers: &[String]) -> Result<JsonFields, String> {
        let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
        for name in headers {
            let lower = name.trim().to_ascii_lowercase();
            if !crate::http::text::is_token(lower.as_bytes()) {
                return Err(format!("{name:?} is not a header name"));
            }
            if out.iter().all(|(n, _)| *n != lower) {
                let key = format!("http.request.header.{lower}");
                out.push((lower, key));
            }
        }
        Ok(JsonFields { headers: out })
    }

    pub fn wants_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    pub fn render(&self, rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.timestamp("timestamp", rec.logged_at);
        o.int("process.pid", rec.pid);
        if let Some(addr) = rec.remote_addr {
            o.str("client.address", addr.chars());
        }
        if let Some(peer) = rec.peer {
            let ip = peer.ip().to_string();
            o.str("network.peer.address", ip.chars());
            o.int("network.peer.port", peer.port());
        }
        if let Some(method) = rec.method {
            o.str("http.request.method", method.chars());
        }
        if let Some(uri) = rec.raw_uri {
            let uri: String = uri.chars().collect();
            let (path, query) = split_target(&uri);
            o.str("url.path", path.chars());
            if let Some(q) = query {
                o.str("url.query", q.chars());
            }
        }
        if let Some(scheme) = rec.scheme {
            o.str("url.scheme", scheme.chars());
        }
        if let Some(protocol) = rec.protocol {
            let version: String = protocol.chars().collect();
            let version = version.strip_prefix("HTTP/").unwrap_or(&version);
            o.str("network.protocol.version", version.chars());
        }
        if let Some(code) = status_code(rec.status) {
            o.int("http.response.status_code", code);
        }
        o.int("http.response.body.size", rec.sent);
        o.seconds("http.server.request.duration", rec.request_time);
        if let Some(agent) = rec.user_agent {
            o.str("user_agent.original", agent.chars());
        }
        if let Some(user) = basic_auth_user(rec.authorization).filter(|u| !u.is_empty()) {
            o.str("user.name", user.chars());
        }
        for (lower, key) in &self.headers {
            let values = rec.request_headers.get_all(lower);
            if !values.is_empty() {
                o.strs(key, values.into_iter().map(Text::chars));
            }
        }
        o.end();
    }
}

/// The path and query of a request target as sent (percent-encoding kept);
/// an absolute-form target (a proxy's) loses its scheme and authority.
fn split_target(uri: &str) -> (&str, Option<&str>) {
    let rest = match uri.find("://") {
        Some(i) if !uri[..i].contains('/') => {
            let after = &uri[i + 3..];
            after.find(['/', '?']).map_or("", |j| &after[j..])
        }
        _ => uri,
    };
    match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    }
}

/// The status line's code ("200 OK" gives 200); None when it has none.
fn status_code(status: Text<'_>) -> Option<u16> {
    let digits: String = status.chars().take_while(|c| !c.is_whitespace()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn targets() {
        assert_eq!(split_target("/a/b?x=1&y"), ("/a/b", Some("x=1&y")));
        assert_eq!(split_target("/a%20b"), ("/a%20b", None));
        assert_eq!(split_target("/?"), ("/", Some("")));
        assert_eq!(split_target("http://h:1/p?q"), ("/p", Some("q")));
        assert_eq!(split_target("http://h"), ("", None));
        assert_eq!(split_target("*"), ("*", None));
        assert_eq!(split_target("/x://y"), ("/x://y", None));
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(JsonFields::new(&["X-Request-ID".into(), "x-request-id".into()]).is_ok_and(|f| f.headers.len() == 1));
        assert!(JsonFields::new(&["bad name".into()]).is_err());
        assert!(JsonFields::new(&["".into()]).is_err());
        assert!(JsonFields::new(&["x\"y".into()]).is_err());
    }

    #[test]
    fn a_request_as_typed_json() {
        let headers: Vec<(&[u8], &[u8])> =
            vec![(b"X-Request-Id", b"a\"b"), (b"User-Agent", b"curl"), (b"x-request-id", b"\n{\"forged\": true}\x1b")];
        let fields = JsonFields::new(&["x-request-id".into(), "x-missing".into()]).expect("valid");
        let rec = AccessRecord {
            remote_addr: Some(Text::Str("10.0.0.1")),
            method: Some(Text::Str("GET")),
            raw_uri: Some(Text::Latin1(b"/p\xe9?q=\"1\"")),
            protocol: Some(Text::Str("HTTP/1.1")),
            user_agent: Some(Text::Latin1(b"agent \"x\"\r\n")),
            authorization: Some(Text::Str("Basic dXNlcjpwdw==")),
            scheme: Some(Text::Str("https")),
            peer: Some("127.0.0.1:5000".parse().expect("addr")),
            sent: 1234,
            pid: 42,
            request_headers: &headers,
            ..AccessRecord::new(Text::Str("404 Not Found"), Duration::from_micros(1500))
        };
        let mut out = Vec::new();
        fields.render(&rec, &mut out);
        assert!(!out.contains(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["http.response.status_code"], 404);
        assert_eq!(v["http.response.body.size"], 1234);
        assert_eq!(v["http.server.request.duration"].as_f64(), Some(0.0015));
        assert_eq!(v["process.pid"], 42);
        assert_eq!(v["client.address"], "10.0.0.1");
        assert_eq!(v["network.peer.address"], "127.0.0.1");
        assert_eq!(v["network.peer.port"], 5000);
        assert_eq!(v["url.path"], "/p\u{e9}");
        assert_eq!(v["url.query"], "q=\"1\"");
        assert_eq!(v["url.scheme"], "https");
        assert_eq!(v["network.protocol.version"], "1.1");
        assert_eq!(v["user_agent.original"], "agent \"x\"\r\n");
        assert_eq!(v["user.name"], "user");
        assert_eq!(v["http.request.header.x-request-id"], serde_json::json!(["a\"b", "\n{\"forged\": true}\u{1b}"]));
        assert!(v.get("http.request.header.x-missing").is_none());
        assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn a_status_without_code_is_left_out() {
        let rec = AccessRecord::new(Text::Str("-"), Duration::ZERO);
        let mut out = Vec::new();
        JsonFields::new(&[]).expect("valid").render(&rec, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert!(v.get("http.response.status_code").is_none());
        assert!(v.get("url.path").is_none());
    }
}
