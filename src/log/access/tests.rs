//! Access-log lines checked against Gunicorn itself.
//!
//! GENERATED: every expected line below was produced by running Gunicorn
//! 27.0.1's own `Logger.atoms()` wrapped in `SafeAtoms` and formatted with
//! `%`, in /tmp/gvenv/bin/python (CPython 3.11.7), TZ=UTC, with `now()`
//! pinned to t=1795649106 and `os.getpid()` to 4242. Err entries hold the
//! exception Python raised (`Type: message`). Raw HTTP values are fed as
//! latin-1 bytes here, the way WSGI strings carry them.

use std::time::Duration;

use super::*;

fn fixture_full(check: impl FnOnce(&AccessRecord<'_>)) {
    let req: Vec<(&[u8], &[u8])> = vec![
        (b"HOST", b"localhost:8000"),
        (b"USER-AGENT", b"curl/7.88.1 \"quoted\""),
        (b"X-FORWARDED-FOR", b"10.0.0.1"),
        (b"X-DUP", b"a"),
        (b"X-DUP", b"b"),
        (b"X-LATIN", b"caf\xe9"),
    ];
    let resp: Vec<(&[u8], &[u8])> =
        vec![(b"Content-Type", b"text/plain"), (b"X-Out", b"a\"b"), (b"Content-Length", b"6"), (b"x-out", b"last")];
    let env: Vec<(&str, EnvValue<'_>)> = vec![
        ("REMOTE_ADDR", EnvValue::Str(Text::Str("127.0.0.1"))),
        ("REQUEST_METHOD", EnvValue::Str(Text::Str("GET"))),
        ("RAW_URI", EnvValue::Str(Text::Str("/path?x=1&y=\"2\""))),
        ("SERVER_PROTOCOL", EnvValue::Str(Text::Str("HTTP/1.1"))),
        ("PATH_INFO", EnvValue::Str(Text::Str("/path"))),
        ("QUERY_STRING", EnvValue::Str(Text::Str("x=1&y=\"2\""))),
        ("HTTP_REFERER", EnvValue::Str(Text::Str("http://ref.example/"))),
        ("HTTP_USER_AGENT", EnvValue::Str(Text::Str("curl/7.88.1 \"quoted\""))),
        ("HTTP_AUTHORIZATION", EnvValue::Str(Text::Str("Basic dXNlcjpwYXNz"))),
        ("SERVER_PORT", EnvValue::Str(Text::Str("8000"))),
        ("wsgi.version", EnvValue::Other { text: "(1, 0)".into(), type_name: "tuple".into() }),
        ("wsgi.multithread", EnvValue::Bool(false)),
        ("wsgi.run_once", EnvValue::Bool(true)),
        ("X_INT", EnvValue::Int(17)),
        ("X_NONE", EnvValue::None),
        ("Mixed_Case", EnvValue::Str(Text::Str("mc"))),
        ("X_UNI", EnvValue::Str(Text::Str("\u{e9}t\u{e9} \u{2603}"))),
    ];
    let rec = AccessRecord {
        remote_addr: Some(Text::Str("127.0.0.1")),
        method: Some(Text::Str("GET")),
        raw_uri: Some(Text::Latin1(b"/path?x=1&y=\"2\"")),
        protocol: Some(Text::Str("HTTP/1.1")),
        path_info: Some(Text::Latin1(b"/path")),
        query: Some(Text::Latin1(b"x=1&y=\"2\"")),
        status: Text::Str("200 OK"),
        sent: 6,
        referer: Some(Text::Latin1(b"http://ref.example/")),
        user_agent: Some(Text::Latin1(b"curl/7.88.1 \"quoted\"")),
        authorization: Some(Text::Latin1(b"Basic dXNlcjpwYXNz")),
        request_time: Duration::new(1, 234567321),
        pid: 4242,
        time: 1795649106,
        request_headers: &req,
        response_headers: &resp,
        environ: &env,
        logged_at: std::time::UNIX_EPOCH,
        scheme: None,
        peer: None,
    };
    check(&rec);
}

fn fixture_bare(check: impl FnOnce(&AccessRecord<'_>)) {
    let req: Vec<(&[u8], &[u8])> = vec![];
    let resp: Vec<(&[u8], &[u8])> = vec![];
    let env: Vec<(&str, EnvValue<'_>)> = vec![
        ("REQUEST_METHOD", EnvValue::Str(Text::Str("POST"))),
        ("RAW_URI", EnvValue::Str(Text::Str("/caf\u{e9}?q=\u{ff}"))),
        ("SERVER_PROTOCOL", EnvValue::Str(Text::Str("HTTP/1.0"))),
        ("PATH_INFO", EnvValue::Str(Text::Str("/caf\u{e9}"))),
        ("QUERY_STRING", EnvValue::Str(Text::Str("q=\u{ff}"))),
        ("HTTP_AUTHORIZATION", EnvValue::Str(Text::Str("Bearer abc"))),
    ];
    let rec = AccessRecord {
        remote_addr: None,
        method: Some(Text::Str("POST")),
        raw_uri: Some(Text::Latin1(b"/caf\xe9?q=\xff")),
        protocol: Some(Text::Str("HTTP/1.0")),
        path_info: Some(Text::Latin1(b"/caf\xe9")),
        query: Some(Text::Latin1(b"q=\xff")),
        status: Text::Str("404 Not Found"),
        sent: 0,
        referer: None,
        user_agent: None,
        authorization: Some(Text::Latin1(b"Bearer abc")),
        request_time: Duration::new(86403, 5321),
        pid: 4242,
        time: 1795649106,
        request_headers: &req,
        response_headers: &resp,
        environ: &env,
        logged_at: std::time::UNIX_EPOCH,
        scheme: None,
        peer: None,
    };
    check(&rec);
}

fn fixture_nopath(check: impl FnOnce(&AccessRecord<'_>)) {
    let req: Vec<(&[u8], &[u8])> = vec![];
    let resp: Vec<(&[u8], &[u8])> = vec![];
    let env: Vec<(&str, EnvValue<'_>)> = vec![
        ("REMOTE_ADDR", EnvValue::Str(Text::Str(""))),
        ("REQUEST_METHOD", EnvValue::Str(Text::Str("HEAD"))),
        ("RAW_URI", EnvValue::Str(Text::Str("*"))),
        ("SERVER_PROTOCOL", EnvValue::Str(Text::Str("HTTP/1.1"))),
        ("HTTP_AUTHORIZATION", EnvValue::Str(Text::Str("Basic OnBhc3M="))),
    ];
    let rec = AccessRecord {
        remote_addr: Some(Text::Str("")),
        method: Some(Text::Str("HEAD")),
        raw_uri: Some(Text::Latin1(b"*")),
        protocol: Some(Text::Str("HTTP/1.1")),
        path_info: None,
        query: None,
        status: Text::Str("204 No Content"),
        sent: 0,
        referer: None,
        user_agent: None,
        authorization: Some(Text::Latin1(b"Basic OnBhc3M=")),
        request_time: Duration::new(0, 999321),
        pid: 4242,
        time: 1795649106,
        request_headers: &req,
        response_headers: &resp,
        environ: &env,
        logged_at: std::time::UNIX_EPOCH,
        scheme: None,
        peer: None,
    };
    check(&rec);
}

fn fixture_nomethod(check: impl FnOnce(&AccessRecord<'_>)) {
    let req: Vec<(&[u8], &[u8])> = vec![];
    let resp: Vec<(&[u8], &[u8])> = vec![];
    let env: Vec<(&str, EnvValue<'_>)> = vec![
        ("RAW_URI", EnvValue::Str(Text::Str("/"))),
        ("SERVER_PROTOCOL", EnvValue::Str(Text::Str("HTTP/1.1"))),
        ("PATH_INFO", EnvValue::Str(Text::Str("/"))),
        ("QUERY_STRING", EnvValue::Str(Text::Str(""))),
    ];
    let rec = AccessRecord {
        remote_addr: None,
        method: None,
        raw_uri: Some(Text::Latin1(b"/")),
        protocol: Some(Text::Str("HTTP/1.1")),
        path_info: Some(Text::Latin1(b"/")),
        query: Some(Text::Latin1(b"")),
        status: Text::Str("500 Internal Server Error"),
        sent: 12,
        referer: None,
        user_agent: None,
        authorization: None,
        request_time: Duration::new(2, 321),
        pid: 4242,
        time: 1795649106,
        request_headers: &req,
        response_headers: &resp,
        environ: &env,
        logged_at: std::time::UNIX_EPOCH,
        scheme: None,
        peer: None,
    };
    check(&rec);
}

/// (fixture, format, expected line or Python exception)
const CASES: &[(&str, &str, Result<&str, &str>)] = &[
    ("full", "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\"", Ok("127.0.0.1 - user [25/Nov/2026:23:25:06 +0000] \"GET /path?x=1&y=\\\"2\\\" HTTP/1.1\" 200 6 \"http://ref.example/\" \"curl/7.88.1 \\\"quoted\\\"\"")),
    ("full", "%(m)s %(U)s %(q)s %(H)s %(B)s %(T)s %(D)s %(M)s %(L)s %(p)s", Ok("GET /path x=1&y=\\\"2\\\" HTTP/1.1 6 1 1234567 1234 1.234567 <4242>")),
    ("full", "%({host}i)s %({X-Forwarded-For}i)s %({x-dup}i)s %({missing}i)s %({x-latin}i)s", Ok("localhost:8000 10.0.0.1 b - caf\u{e9}")),
    ("full", "%({content-type}o)s %({X-OUT}O)s %({content-length}o)s %({nope}o)s", Ok("text/plain last 6 -")),
    ("full", "%({remote_addr}e)s %({wsgi.version}e)s %({wsgi.multithread}e)s %({x_int}e)d %({nope}e)s %({server_port}e)r", Ok("127.0.0.1 (1, 0) False 17 - '8000'")),
    ("full", "%({mixed_case}e)s %({MIXED_CASE}E)s %({x_none}e)s %({x_none}e)r %({x_uni}e)s %({x_uni}e)a", Ok("mc mc None None \u{e9}t\u{e9} \u{2603} '\\xe9t\\xe9 \\u2603'")),
    ("full", "%({x_int}e)5.1f|%({wsgi.multithread}e)d|%({wsgi.run_once}e)r|%({x_int}e)#x|%({wsgi.run_once}e)c|", Ok(" 17.0|0|True|0x11|\u{1}|")),
    ("full", "%(x)s %()s %({foo})s %% %(a(b)c)s %(H)s %(h)s", Ok("- - - % - HTTP/1.1 127.0.0.1")),
    ("full", "%(h)r %(a)r %(a)a %(h)20s| %(h)-20s| %(B)05d %(D)x %(D)#o %(M)e %(T)g %(L).3s %(B) d %(B)+d", Ok("'127.0.0.1' 'curl/7.88.1 \\\\\"quoted\\\\\"' 'curl/7.88.1 \\\\\"quoted\\\\\"'            127.0.0.1| 127.0.0.1           | 00006 12d687 0o4553207 1.234000e+03 1 1.2  6 +6")),
    ("full", "%(l)c %(B)c %(r)10.4s| %(u)5s| %(s)-5s| %(t)r", Ok("- \u{6}       GET |  user| 200  | '[25/Nov/2026:23:25:06 +0000]'")),
    ("full", "\u{e9} %(h)s \u{2603} %(f)s", Ok("\u{e9} 127.0.0.1 \u{2603} http://ref.example/")),
    ("full", "%(b)s %(B)s %(B)r %(B)i %(B)u %(B)X %(T)E %(D)G %(D)F", Ok("6 6 6 6 6 6 1.000000E+00 1.23457E+06 1234567.000000")),
    ("full", "%({wsgi.version}e)d", Err("TypeError: %d format: a real number is required, not tuple")),
    ("full", "%({wsgi.version}e)c", Err("TypeError: %c requires int or char")),
    ("full", "%({x_uni}e)c", Err("TypeError: %c requires int or char")),
    ("full", "%({x_int}e)c%({x_int}e)hd%({x_int}e)ld%({x_int}e)Ld", Ok("\u{11}171717")),
    ("bare", "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\"", Ok("- - - [25/Nov/2026:23:25:06 +0000] \"POST /caf\u{e9}?q=\u{ff} HTTP/1.0\" 404 0 \"-\" \"-\"")),
    ("bare", "%(m)s %(U)s %(q)s %(H)s %(B)s %(T)s %(D)s %(M)s %(L)s", Ok("POST /caf\u{e9} q=\u{ff} HTTP/1.0 0 3 3000005 3000 3.000005")),
    ("bare", "%(U)r %(U)a %(r)s %(U)4s|%(U).3s|", Ok("'/caf\u{e9}' '/caf\\xe9' POST /caf\u{e9}?q=\u{ff} HTTP/1.0 /caf\u{e9}|/ca|")),
    ("bare", "%({x-latin}i)s %({content-type}o)s %({remote_addr}e)s", Ok("- - -")),
    ("nopath", "[%(h)s] %(u)s %(U)s %(q)s %(U)r %(U)a %(U).2s %(U)5s|", Ok("[] - None None None None No  None|")),
    ("nopath", "%(q)c", Err("TypeError: %c requires int or char")),
    ("nopath", "%(D)d %(M)d %(L)s %(T)s %(s)s", Ok("999 0 0.000999 0 204")),
    ("nomethod", "%(r)s", Err("KeyError: 'REQUEST_METHOD'")),
    ("nomethod", "%(r)s %(s)s %(b)s", Err("KeyError: 'REQUEST_METHOD'")),
];

fn run_case(fixture: &str, check: impl FnOnce(&AccessRecord<'_>)) {
    match fixture {
        "full" => fixture_full(check),
        "bare" => fixture_bare(check),
        "nopath" => fixture_nopath(check),
        "nomethod" => fixture_nomethod(check),
        other => panic!("unknown fixture {other}"),
    }
}

/// The expectations carry the UTC stamp; the host's TZ may differ, and
/// the stamp itself is checked in clock.rs.
fn localize(expected: &str) -> String {
    let mut local = Vec::new();
    crate::log::clock::append_clf_stamp(1795649106, &mut local);
    expected.replace("[25/Nov/2026:23:25:06 +0000]", &String::from_utf8(local).unwrap())
}

#[test]
fn lines_match_gunicorn() {
    for &(fixture, fmt, expected) in CASES {
        let format = AccessFormat::parse(fmt).unwrap_or_else(|e| panic!("{fmt:?}: {e}"));
        run_case(fixture, |rec| {
            let mut out = b"prefix".to_vec();
            let got = format.render(rec, &mut out).map(|()| String::from_utf8(out.split_off(6)).unwrap());
            let want = expected.map(localize).map_err(|e| RenderError(e.to_owned()));
            assert_eq!(got, want, "fixture {fixture}, format {fmt:?}");
            assert_eq!(out, b"prefix", "output must be untouched on error");
        });
    }
}

/// Gunicorn's `atoms()` indexes `REQUEST_METHOD`, `RAW_URI` and
/// `SERVER_PROTOCOL` for every line, so if the app deleted one of them no
/// line is logged whatever the format. ferrocorn only fails lines that
/// use `r`, so a caller that leaves those fields empty for formats without
/// `r` still logs.
#[test]
fn missing_request_line_parts_only_fail_r() {
    fixture_nomethod(|rec| {
        let mut out = Vec::new();
        let f = AccessFormat::parse("%(s)s %(b)s %(m)s").unwrap();
        assert_eq!(f.render(rec, &mut out), Ok(()));
        assert_eq!(out, b"500 12 None");
    });
}

#[test]
fn needs_flags() {
    let f = AccessFormat::parse(DEFAULT_ACCESS_LOG_FORMAT).unwrap();
    assert!(!f.needs_environ() && !f.needs_request_headers() && !f.needs_response_headers());
    let f = AccessFormat::parse("%({x-real-ip}i)s").unwrap();
    assert!(!f.needs_environ() && f.needs_request_headers() && !f.needs_response_headers());
    let f = AccessFormat::parse("%({content-type}O)s %({remote_addr}e)s").unwrap();
    assert!(f.needs_environ() && !f.needs_request_headers() && f.needs_response_headers());
    assert_eq!(AccessFormat::default().as_str(), DEFAULT_ACCESS_LOG_FORMAT);
}

// Python messages printed by `fmt % SafeAtoms({})` in /tmp/gvenv/bin/python.
#[test]
fn python_rejections_keep_python_messages() {
    let cases = [
        ("%(a)%", "unsupported format character '%' (0x25) at index 4"),
        ("%5%", "unsupported format character '%' (0x25) at index 2"),
        ("%(a", "incomplete format key"),
        ("%(", "incomplete format key"),
        ("abc %", "incomplete format"),
        ("%(a)y", "unsupported format character 'y' (0x79) at index 4"),
        ("é%(a)y", "unsupported format character 'y' (0x79) at index 5"),
        ("%(a)lld", "unsupported format character 'l' (0x6c) at index 5"),
        ("%-(a)s", "unsupported format character '(' (0x28) at index 2"),
        ("%(a)\t", "unsupported format character '?' (0x9) at index 4"),
        ("%(a)é", "unsupported format character '?' (0xe9) at index 4"),
        ("%(a)\x7f", "unsupported format character '?' (0x7f) at index 4"),
        ("%(a)\x1f", "unsupported format character '\x1f' (0x1f) at index 4"),
        ("%(a)h", "incomplete format"),
        ("%(a)5", "incomplete format"),
        ("%(a).", "incomplete format"),
        ("%(a)", "incomplete format"),
        ("%(a)-", "incomplete format"),
    ];
    for (fmt, msg) in cases {
        assert_eq!(AccessFormat::parse(fmt), Err(msg.to_owned()), "{fmt:?}");
    }
}

#[test]
fn always_failing_formats_are_rejected_up_front() {
    let err = |f: &str| AccessFormat::parse(f).unwrap_err();
    assert!(err("%s").contains("has no (name)"), "{}", err("%s"));
    assert!(err("%(h)s %d").contains("%d at index 6"), "{}", err("%(h)s %d"));
    assert!(err("%(h)*d").contains("'*' width"));
    assert!(err("%(h).*d").contains("'*' precision"));
    assert_eq!(
        err("%(h)d"),
        "%(h)d: TypeError: %d format: a real number is required, not str \
         (the 'h' atom is always a string; every request would fail)"
    );
    assert!(err("%(U)x").contains("%x format: an integer is required, not str"));
    assert!(err("%({host}i)f").contains("must be real number, not str"));
    assert!(err("%(zz)e").contains("'zz' is not an atom"));
    assert!(err("%(h)99999999999999999999s").contains("width too big"));
    assert!(err("%(h).70000s").contains("precision too big"));
    // Data-dependent ones stay runtime errors, as in Gunicorn.
    assert!(AccessFormat::parse("%({x}e)d %(h)c %(B)c").is_ok());
}

#[test]
fn writer_appends_whole_lines() {
    let dir = std::env::temp_dir().join(format!("ferrocorn-access-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let log = AccessLog::new();
    let format = AccessFormat::parse("%(s)s %(b)s %(p)s").unwrap();
    let status = Text::Str("201 Created");
    let rec = AccessRecord { sent: 9, pid: 7, ..AccessRecord::new(status, Duration::ZERO) };
    assert_eq!(log.log(&format, &rec), Ok(()), "disabled log is a no-op");
    log.configure(Some(path.to_str().unwrap())).unwrap();
    assert!(log.enabled());
    log.log(&format, &rec).unwrap();
    let bad = AccessFormat::parse("%({x}e)d").unwrap();
    let env: Vec<(&str, EnvValue<'_>)> = vec![("X", EnvValue::Str(Text::Str("nan")))];
    let rec2 = AccessRecord { environ: &env, ..rec };
    assert!(log.log(&bad, &rec2).is_err());
    log.log(&format, &rec).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "201 9 <7>\n201 9 <7>\n");
    log.configure(None).unwrap();
    assert!(!log.enabled());
    let _ = std::fs::remove_dir_all(&dir);
}
