//! Everything one access-log line can draw on, as Gunicorn's `atoms()`
//! finds it in the response, request and environ.

use std::borrow::Cow;
use std::time::Duration;

/// A Python `str` as the WSGI side sees it: either real text, or raw HTTP
/// bytes that WSGI exposes as latin-1 (one char per byte). Both print as
/// UTF-8, the encoding of Gunicorn's log streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Text<'a> {
    Str(&'a str),
    Latin1(&'a [u8]),
}

impl<'a> Text<'a> {
    pub(crate) fn chars(self) -> TextChars<'a> {
        match self {
            Text::Str(s) => TextChars::Str(s.chars()),
            Text::Latin1(b) => TextChars::Latin1(b.iter()),
        }
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text::Str(s)
    }
}

#[derive(Clone)]
pub(crate) enum TextChars<'a> {
    Str(std::str::Chars<'a>),
    Latin1(std::slice::Iter<'a, u8>),
}

impl Iterator for TextChars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        match self {
            TextChars::Str(c) => c.next(),
            TextChars::Latin1(b) => b.next().map(|&b| char::from(b)),
        }
    }
}

/// An environ value for `%({name}e)s`, which may be any Python object.
#[derive(Clone, Debug, PartialEq)]
pub enum EnvValue<'a> {
    Str(Text<'a>),
    Int(i128),
    Bool(bool),
    None,
    /// Anything else (tuples, file objects, floats...): its `str()` and
    /// its type name (for the TypeError a numeric conversion raises).
    Other {
        text: Cow<'a, str>,
        type_name: Cow<'a, str>,
    },
}

/// Header lookup for `{name}i` / `{name}o`.
pub trait HeaderLookup {
    /// The value of the *last* header whose lower-cased name equals
    /// `lower_name` (Gunicorn builds a dict from the header list, so later
    /// duplicates win).
    fn get_last(&self, lower_name: &str) -> Option<Text<'_>>;

    /// Every value of that header, in arrival order (the JSON log's arrays).
    fn get_all(&self, lower_name: &str) -> Vec<Text<'_>> {
        self.get_last(lower_name).into_iter().collect()
    }
}

/// Environ lookup for `{name}e`.
pub trait EnvironLookup {
    /// The value of the environ key `k` with `k.lower() == lower_key`
    /// (the last such key in dict order, should several differ only by
    /// case).
    fn lookup(&self, lower_key: &str) -> Option<EnvValue<'_>>;
}

fn name_matches(name: &[u8], lower_name: &str) -> bool {
    name.eq_ignore_ascii_case(lower_name.as_bytes())
}

/// Raw `(name, value)` pairs as the HTTP layer holds them.
impl<N: AsRef<[u8]>, V: AsRef<[u8]>> HeaderLookup for [(N, V)] {
    fn get_last(&self, lower_name: &str) -> Option<Text<'_>> {
        self.iter().rev().find(|(n, _)| name_matches(n.as_ref(), lower_name)).map(|(_, v)| Text::Latin1(v.as_ref()))
    }

    fn get_all(&self, lower_name: &str) -> Vec<Text<'_>> {
        self.iter()
            .filter(|(n, _)| name_matches(n.as_ref(), lower_name))
            .map(|(_, v)| Text::Latin1(v.as_ref()))
            .collect()
    }
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> HeaderLookup for Vec<(N, V)> {
    fn get_last(&self, lower_name: &str) -> Option<Text<'_>> {
        self.as_slice().get_last(lower_name)
    }

    fn get_all(&self, lower_name: &str) -> Vec<Text<'_>> {
        self.as_slice().get_all(lower_name)
    }
}

impl<T: HeaderLookup + ?Sized> HeaderLookup for &T {
    fn get_last(&self, lower_name: &str) -> Option<Text<'_>> {
        (**self).get_last(lower_name)
    }

    fn get_all(&self, lower_name: &str) -> Vec<Text<'_>> {
        (**self).get_all(lower_name)
    }
}

/// `(key, value)` pairs in dict order.
impl<K: AsRef<str>> EnvironLookup for [(K, EnvValue<'_>)] {
    fn lookup(&self, lower_key: &str) -> Option<EnvValue<'_>> {
        self.iter().rev().find(|(k, _)| k.as_ref().to_lowercase() == lower_key).map(|(_, v)| v.clone())
    }
}

impl<K: AsRef<str>> EnvironLookup for Vec<(K, EnvValue<'_>)> {
    fn lookup(&self, lower_key: &str) -> Option<EnvValue<'_>> {
        self.as_slice().lookup(lower_key)
    }
}

impl<T: EnvironLookup + ?Sized> EnvironLookup for &T {
    fn lookup(&self, lower_key: &str) -> Option<EnvValue<'_>> {
        (**self).lookup(lower_key)
    }
}

/// For formats that use no `{..}i`/`{..}o`/`{..}e` atoms.
#[derive(Clone, Copy, Debug, Default)]
pub struct Nothing;

impl HeaderLookup for Nothing {
    fn get_last(&self, _: &str) -> Option<Text<'_>> {
        None
    }
}

impl EnvironLookup for Nothing {
    fn lookup(&self, _: &str) -> Option<EnvValue<'_>> {
        None
    }
}

/// One finished request. Fields mirror the environ keys Gunicorn reads, so
/// a middleware that rewrote e.g. `REMOTE_ADDR` is honoured if the caller
/// reads them back from the environ.
#[derive(Clone, Copy)]
pub struct AccessRecord<'a> {
    /// `REMOTE_ADDR` (h); absent prints "-".
    pub remote_addr: Option<Text<'a>>,
    /// `REQUEST_METHOD` (m, and the first part of r).
    pub method: Option<Text<'a>>,
    /// `RAW_URI` (second part of r).
    pub raw_uri: Option<Text<'a>>,
    /// `SERVER_PROTOCOL`, e.g. "HTTP/1.1" (H, third part of r).
    pub protocol: Option<Text<'a>>,
    /// `PATH_INFO` (U).
    pub path_info: Option<Text<'a>>,
    /// `QUERY_STRING` (q).
    pub query: Option<Text<'a>>,
    /// The full status line the app gave, e.g. "200 OK"; s is its first
    /// whitespace-separated token.
    pub status: Text<'a>,
    /// Body bytes written (b, B).
    pub sent: u64,
    /// `HTTP_REFERER` (f); absent prints "-".
    pub referer: Option<Text<'a>>,
    /// `HTTP_USER_AGENT` (a); absent prints "-".
    pub user_agent: Option<Text<'a>>,
    /// `HTTP_AUTHORIZATION`, for u.
    pub authorization: Option<Text<'a>>,
    /// Time from request start to logging (T, D, M, L).
    pub request_time: Duration,
    /// Process id for p (read it after fork).
    pub pid: u32,
    /// Logging time, seconds since the epoch, for t.
    pub time: i64,
    /// The same moment, precise, for the JSON log's `timestamp`.
    pub logged_at: std::time::SystemTime,
    /// `wsgi.url_scheme` (the JSON log's `url.scheme`).
    pub scheme: Option<Text<'a>>,
    /// The connection's peer (the JSON log's `network.peer.*`); None on a
    /// Unix socket.
    pub peer: Option<std::net::SocketAddr>,
    // Sync so that a record can be rendered and written with the GIL
    // released (the lookups are plain Rust data copied out of Python).
    pub request_headers: &'a (dyn HeaderLookup + Sync),
    pub response_headers: &'a (dyn HeaderLookup + Sync),
    pub environ: &'a (dyn EnvironLookup + Sync),
}

impl<'a> AccessRecord<'a> {
    /// A record with the given status and duration, the current pid and
    /// time, and nothing else; fill the rest with struct update syntax.
    pub fn new(status: Text<'a>, request_time: Duration) -> AccessRecord<'a> {
        AccessRecord {
            remote_addr: None,
            method: None,
            raw_uri: None,
            protocol: None,
            path_info: None,
            query: None,
            status,
            sent: 0,
            referer: None,
            user_agent: None,
            authorization: None,
            request_time,
            pid: std::process::id(),
            time: super::super::clock::now_secs(),
            logged_at: std::time::SystemTime::now(),
            scheme: None,
            peer: None,
            request_headers: &Nothing,
            response_headers: &Nothing,
            environ: &Nothing,
        }
    }
}
