//! A codec test, not the conformance test: it feeds the vendored Gunicorn
//! request corpus (tests/conformance) to the sans-I/O codec alone (request
//! head parser, body decoder, PROXY header) and compares with what Gunicorn
//! 27's sync worker answered, but only the status of the first response (or
//! none), and for a 200 the echo app's fields as rebuilt here by an environ
//! builder of this file's own (after `gunicorn.http.wsgi.create`), not the
//! one the workers use. No worker, socket or app runs.
//!
//! The conformance test is the worker-level runner: tests/python/
//! test_conformance.py drives tests/conformance/conformance.py against real
//! `ferrocorn -k sync`, `-k gthread` and `-k asgi` servers and compares every
//! response on each connection.

use std::net::IpAddr;
use std::path::PathBuf;

use _ferrocorn::http::body::{BodyDecoder, Decoded};
use _ferrocorn::http::policy::{AllowList, HttpPolicy};
use _ferrocorn::http::request::{parse_request_head, Parsed, RequestHead};
use _ferrocorn::http::text::latin1_to_string;
use _ferrocorn::net::proxy_protocol::{parse_proxy_header, ProxyInfo};
use serde_json::{json, Map, Value};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let Some(v) = B64.iter().position(|&b| b == c) else {
            continue; // padding and whitespace
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn b64encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The case's Gunicorn settings (its command-line flags) as an HttpPolicy.
fn policy_for(settings: &Map<String, Value>) -> HttpPolicy {
    let mut p = HttpPolicy::default();
    for (k, v) in settings {
        let count = || v.as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or_else(|| panic!("{k}: {v}"));
        let flag = || v.as_bool().unwrap_or_else(|| panic!("{k}: {v}"));
        match k.as_str() {
            "proxy_protocol" => p.proxy_protocol = v.as_str().unwrap().parse().unwrap(),
            "permit_obsolete_folding" => p.permit_obsolete_folding = flag(),
            "header_map" => p.header_map = v.as_str().unwrap().parse().unwrap(),
            "limit_request_field_size" => p.limit_request_field_size = count(),
            "limit_request_line" => p.limit_request_line = count(),
            "limit_request_fields" => p.limit_request_fields = count(),
            "strip_header_spaces" => p.strip_header_spaces = flag(),
            "casefold_http_method" => p.casefold_http_method = flag(),
            "permit_unconventional_http_method" => p.permit_unconventional_http_method = flag(),
            "forwarded_allow_ips" => {
                let items: Vec<String> = match v {
                    Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
                    Value::String(s) => s.split(',').map(|x| x.trim().to_owned()).collect(),
                    _ => panic!("{k}: {v}"),
                };
                p.forwarded_allow = AllowList::parse(&items).unwrap();
            }
            other => panic!("setting {other} not mapped"),
        }
    }
    p
}

/// What the sync worker does with the connection: the statuses it writes,
/// and for a 200 the echo app's JSON.
fn serve(raw: &[u8], policy: &HttpPolicy, peer: IpAddr) -> (Vec<u16>, Option<Value>) {
    let reply = |status: Option<u16>, pre: &[u16]| {
        let mut v = pre.to_vec();
        v.extend(status);
        (v, None)
    };
    let error = |e: _ferrocorn::http::error::HttpError, pre: &[u16]| reply(e.response().map(|r| r.status), pre);

    let (proxy, start) = match parse_proxy_header(raw, policy.proxy_protocol, Some(peer), &policy.proxy_allow) {
        Err(e) => return error(e, &[]),
        // The client never closes its side: Gunicorn keeps waiting.
        Ok(Parsed::Partial) => return reply(None, &[]),
        Ok(Parsed::Complete(info, used)) => (info, used),
    };
    let rest = &raw[start..];
    let (head, used) = match parse_request_head(rest, policy, Some(peer)) {
        Err(e) => return error(e, &[]),
        Ok(Parsed::Partial) => return reply(None, &[]),
        Ok(Parsed::Complete(head, used)) => (head, used),
    };
    // wsgi.create: 100 Continue first, then the environ (SCRIPT_NAME check).
    let pre: Vec<u16> = if head.expect_continue { vec![100] } else { vec![] };
    let (script_name, path_info) = match _ferrocorn::bridge::wsgi::environ::script_and_path_info(&head, b"") {
        Ok(v) => v,
        Err(e) => return error(e, &pre),
    };
    // The app reads the whole body before answering.
    let mut body = Vec::new();
    let mut buf = &rest[used..];
    let mut decoder = BodyDecoder::new(&head.body, policy);
    loop {
        match decoder.decode(buf) {
            Err(e) => return error(e, &pre),
            Ok((n, Decoded::Data(d))) => {
                body.extend_from_slice(d);
                buf = &buf[n..];
            }
            Ok((_, Decoded::Done)) => break,
            Ok((_, Decoded::NeedMore)) => {
                // Everything sent is in; the client waits, so does Gunicorn.
                return reply(None, &pre);
            }
        }
    }
    let echo = echo(&head, proxy.as_ref(), peer, &script_name, &path_info, &body);
    let mut statuses = pre;
    statuses.push(200);
    (statuses, Some(echo))
}

/// `echo_app.app`'s view of the environ `wsgi.create` builds.
fn echo(
    head: &RequestHead,
    proxy: Option<&ProxyInfo>,
    peer: IpAddr,
    script_name: &[u8],
    path_info: &[u8],
    body: &[u8],
) -> Value {
    let mut content_type = Value::Null;
    let mut content_length = Value::Null;
    let mut http: Vec<(String, String)> = Vec::new();
    for h in &head.headers {
        let value = latin1_to_string(&h.value);
        match h.name.as_str() {
            "CONTENT-TYPE" => {
                content_type = Value::String(value);
                continue;
            }
            "CONTENT-LENGTH" => {
                content_length = Value::String(value);
                continue;
            }
            _ => {}
        }
        let key = format!("HTTP_{}", h.name.replace('-', "_"));
        match http.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => http.push((key, value)),
        }
    }
    http.sort();
    let remote_addr = match proxy {
        Some(info) => info.client.as_ref().map_or(Value::Null, |(a, _)| Value::String(a.clone())),
        None => Value::String(peer.to_string()),
    };
    json!({
        "CONTENT_LENGTH": content_length,
        "CONTENT_TYPE": content_type,
        "PATH_INFO": latin1_to_string(path_info),
        "QUERY_STRING": head.query,
        "RAW_URI": head.uri,
        "REMOTE_ADDR": remote_addr,
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": latin1_to_string(script_name),
        "SERVER_PROTOCOL": head.server_protocol(),
        "body": b64encode(body),
        "headers": http.into_iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "wsgi.url_scheme": head.scheme.as_str(),
    })
}

#[test]
fn base64_helpers_roundtrip() {
    for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar", b"\xff\x00\x80"] {
        assert_eq!(b64decode(&b64encode(s)), s);
    }
    assert_eq!(b64encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(b64encode(b"fo"), "Zm8=");
}

#[test]
fn codec_first_status_matches_gunicorn_sync() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // A crate that links this file in from elsewhere finds the corpus too.
    let corpus = ["tests/conformance", "../../main/tests/conformance"]
        .iter()
        .map(|p| dir.join(p))
        .find(|p| p.join("cases.json").exists())
        .expect("tests/conformance not found");
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(corpus.join("cases.json")).unwrap()).unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("expected-sync.json")).unwrap()).unwrap();
    let peer = IpAddr::from([127, 0, 0, 1]);

    let cases = cases["cases"].as_array().unwrap();
    let (mut same_outcome, mut identical, mut failures) = (0, 0, Vec::new());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let raw = b64decode(case["raw"].as_str().unwrap());
        let policy = policy_for(case["settings"].as_object().unwrap());
        let golden = expected[name].as_array().unwrap_or_else(|| panic!("{name}: no golden"));
        let want_statuses: Vec<u16> = golden.iter().map(|r| r["status"].as_u64().unwrap() as u16).collect();
        // The sync worker serves one request per connection.
        let want_statuses: Vec<u16> = want_statuses.into_iter().take(1).collect();
        let want_echo = golden.first().and_then(|r| r.get("echo")).cloned();

        let (statuses, echo) = serve(&raw, &policy, peer);
        let accepted = |s: &[u16]| s.contains(&200);
        if accepted(&statuses) == accepted(&want_statuses) {
            same_outcome += 1;
        }
        if statuses == want_statuses && echo == want_echo {
            identical += 1;
        } else {
            failures.push(format!(
                "{name}\n  want {want_statuses:?} {}\n  got  {statuses:?} {}",
                want_echo.map(|e| e.to_string()).unwrap_or_default(),
                echo.map(|e| e.to_string()).unwrap_or_default()
            ));
        }
    }
    let total = cases.len();
    println!("codec corpus: {identical}/{total} identical, {same_outcome}/{total} same accept/reject");
    assert_eq!(total, 92, "corpus size changed");
    assert!(failures.is_empty(), "{} case(s) differ:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(same_outcome, total);
}
