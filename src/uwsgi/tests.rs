use super::*;
use crate::http::policy::AllowList;

fn block(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn packet(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let data = block(pairs);
    let mut out = vec![0];
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.push(0);
    out.extend_from_slice(&data);
    out
}

fn head(bytes: &[u8]) -> (RequestHead, usize) {
    match parse_packet(bytes, false) {
        Ok(Parsed::Complete(h, n)) => (h, n),
        other => panic!("not a complete packet: {other:?}"),
    }
}

fn names(h: &RequestHead) -> Vec<(&str, &[u8])> {
    h.headers.iter().map(|x| (x.name.as_str(), x.value.as_slice())).collect()
}

#[test]
fn nginx_packet_becomes_a_request_head() {
    let p = packet(&[
        (b"QUERY_STRING", b"a=1"),
        (b"REQUEST_METHOD", b"POST"),
        (b"CONTENT_TYPE", b"text/plain"),
        (b"CONTENT_LENGTH", b"5"),
        (b"REQUEST_URI", b"/x%20y?a=1"),
        (b"PATH_INFO", b"/x y"),
        (b"REMOTE_ADDR", b"192.0.2.1"),
        (b"HTTP_HOST", b"example.org"),
        (b"HTTP_X_FORWARDED_FOR", b"192.0.2.1"),
    ]);
    let mut wire = p.clone();
    wire.extend_from_slice(b"helloNEXT");
    let (h, n) = head(&wire);
    assert_eq!(n, p.len(), "the body and what follows are left");
    assert_eq!((h.method.as_str(), h.path.as_str(), h.query.as_str()), ("POST", "/x y", "a=1"));
    assert_eq!(h.uri, "/x y?a=1");
    assert_eq!(h.version, (1, 1));
    assert_eq!(h.body, BodyFraming::Length(5));
    assert_eq!(h.scheme, Scheme::Http);
    assert!(!h.expect_continue);
    assert_eq!(h.uwsgi.as_ref().map(|u| u.raw_path.as_slice()), Some(&b"/x%20y"[..]));
    // CGI's names back to header fields; the front end's own vars dropped.
    assert_eq!(
        names(&h),
        vec![
            ("CONTENT-TYPE", &b"text/plain"[..]),
            ("CONTENT-LENGTH", b"5"),
            ("HOST", b"example.org"),
            ("X-FORWARDED-FOR", b"192.0.2.1"),
        ]
    );
}

#[test]
fn defaults_without_vars() {
    let (h, n) = head(&[0, 0, 0, 0]);
    assert_eq!(n, 4);
    assert_eq!((h.method.as_str(), h.path.as_str(), h.uri.as_str()), ("GET", "/", "/"));
    assert_eq!(h.body, BodyFraming::Empty);
    assert!(h.headers.is_empty());
    assert_eq!(h.uwsgi.map(|u| u.raw_path), Some(b"/".to_vec()));
}

#[test]
fn partial_until_the_vars_block_is_whole() {
    let p = packet(&[(b"REQUEST_METHOD", b"GET")]);
    for cut in 0..p.len() {
        assert_eq!(parse_packet(&p[..cut], false), Ok(Parsed::Partial), "cut at {cut}");
    }
    assert!(matches!(parse_packet(&p, false), Ok(Parsed::Complete(_, _))));
}

#[test]
fn content_length_read_as_python_int() {
    for (value, want) in [
        (&b"12"[..], BodyFraming::Length(12)),
        (b" 3 ", BodyFraming::Length(3)),
        (b"+3", BodyFraming::Length(3)),
        (b"1_0", BodyFraming::Length(10)),
        (b"-5", BodyFraming::Length(0)),
        (b"abc", BodyFraming::Length(0)),
        (b"", BodyFraming::Length(0)),
    ] {
        let (h, _) = head(&packet(&[(b"CONTENT_LENGTH", value)]));
        assert_eq!(h.body, want, "{value:?}");
        // The environ still shows the var as sent.
        assert_eq!(h.header("CONTENT-LENGTH"), Some(value));
    }
}

#[test]
fn scheme_from_https_or_url_scheme() {
    let scheme = |pairs: &[(&[u8], &[u8])], tls| match parse_packet(&packet(pairs), tls) {
        Ok(Parsed::Complete(h, _)) => h.scheme,
        other => panic!("{other:?}"),
    };
    assert_eq!(scheme(&[(b"HTTPS", b"on")], false), Scheme::Https);
    assert_eq!(scheme(&[(b"HTTPS", b"TRUE")], false), Scheme::Https);
    assert_eq!(scheme(&[(b"HTTPS", b"1")], false), Scheme::Https);
    assert_eq!(scheme(&[(b"HTTPS", b"off")], false), Scheme::Http);
    assert_eq!(scheme(&[(b"wsgi.url_scheme", b"https")], false), Scheme::Https);
    // The var, when present, wins over the listener.
    assert_eq!(scheme(&[(b"wsgi.url_scheme", b"http")], true), Scheme::Http);
    assert_eq!(scheme(&[], true), Scheme::Https);
    // A header is the app's business, not the scheme's.
    assert_eq!(scheme(&[(b"HTTP_X_FORWARDED_PROTO", b"https")], false), Scheme::Http);
}

#[test]
fn repeated_var_keeps_its_place_and_last_value() {
    let (h, _) = head(&packet(&[(b"HTTP_A", b"1"), (b"HTTP_B", b"2"), (b"HTTP_A", b"3")]));
    assert_eq!(names(&h), vec![("A", &b"3"[..]), ("B", b"2")]);
}

#[test]
fn names_and_values_kept_as_latin1_text() {
    let (h, _) =
        head(&packet(&[(b"HTTP_x_low", b"v"), (b"HTTP_", b"e"), (b"http_no", b"x"), (b"PATH_INFO", b"/caf\xe9")]));
    assert_eq!(names(&h), vec![("x-low", &b"v"[..]), ("", b"e")]);
    assert_eq!(h.path, "/caf\u{e9}");
}

#[test]
fn request_uri_gives_raw_path() {
    let (h, _) = head(&packet(&[(b"REQUEST_URI", b"/only?q=1")]));
    assert_eq!(h.path, "/");
    assert_eq!(h.uwsgi.map(|u| u.raw_path), Some(b"/only".to_vec()));
}

#[test]
fn refusals_name_gunicorns_errors() {
    let invalid = |w: &'static str| Err(UwsgiError::InvalidHeader(w));
    assert_eq!(parse_packet(b"GET / HTTP/1.1\r\n\r\n", false), Err(UwsgiError::UnsupportedModifier(b'G')));
    // One var's key size says more than the block holds, and so on.
    assert_eq!(parse_packet(&[0, 1, 0, 0, 5], false), invalid("truncated key size"));
    assert_eq!(parse_packet(&[0, 5, 0, 0, 9, 0, b'a', b'b', b'c'], false), invalid("truncated key"));
    assert_eq!(parse_packet(&[0, 5, 0, 0, 3, 0, b'a', b'b', b'c'], false), invalid("truncated value size"));
    assert_eq!(parse_packet(&[0, 6, 0, 0, 1, 0, b'a', 9, 0, b'b'], false), invalid("truncated value"));
    let many: Vec<(Vec<u8>, Vec<u8>)> = (0..=MAX_VARS).map(|i| (format!("V{i}").into_bytes(), Vec::new())).collect();
    let pairs: Vec<(&[u8], &[u8])> = many.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    assert_eq!(parse_packet(&packet(&pairs), false), invalid("too many variables"));
    assert!(matches!(parse_packet(&packet(&pairs[..MAX_VARS]), false), Ok(Parsed::Complete(_, _))));
    assert_eq!(UwsgiError::InvalidHeader("truncated key").to_string(), "Invalid uWSGI header: truncated key");
    assert_eq!(UwsgiError::UnsupportedModifier(5).to_string(), "Unsupported uWSGI modifier1: 5");
    assert_eq!(UwsgiError::Forbidden("10.0.0.1".into()).to_string(), "uWSGI request from '10.0.0.1' not allowed");
}

#[test]
fn allow_list_and_unix_peers() {
    let local = AllowList::localhost();
    assert_eq!(check_peer(&local, Some("127.0.0.1".parse().unwrap())), Ok(()));
    assert_eq!(check_peer(&local, None), Ok(()));
    assert_eq!(check_peer(&local, Some("192.0.2.9".parse().unwrap())), Err(UwsgiError::Forbidden("192.0.2.9".into())));
    let any = AllowList::parse(&["*".to_owned()]).unwrap();
    assert_eq!(check_peer(&any, Some("192.0.2.9".parse().unwrap())), Ok(()));
}

#[test]
fn no_input_panics_the_parser() {
    // Every prefix and every single-byte change of a valid packet.
    let p = packet(&[(b"REQUEST_METHOD", b"GET"), (b"CONTENT_LENGTH", b"3"), (b"HTTP_HOST", b"h")]);
    for i in 0..p.len() {
        for b in [0u8, 1, 0x7f, 0xff] {
            let mut q = p.clone();
            q[i] = b;
            let _ = parse_packet(&q, false);
            let _ = parse_packet(&q[..i], false);
        }
    }
}
