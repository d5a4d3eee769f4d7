//! Every way a request can be refused, and the one table that turns each into
//! the status, reason and message Gunicorn's `Worker.handle_error` sends.
//!
//! String payloads hold Python `str` values as Gunicorn builds them: latin-1
//! text, one character per byte off the wire. `Display` is Gunicorn's
//! `str(exc)`, with `repr()` where Gunicorn formats with `%r`.

use std::fmt;

use crate::http::text::{html_escape, py_repr, py_repr_bytes, string_to_latin1};

/// A request Gunicorn would refuse, named after the Gunicorn exception.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    InvalidRequestLine(String),
    InvalidRequestMethod(String),
    /// `InvalidHTTPVersion` raised with the version text that failed `VERSION_RE`.
    InvalidHttpVersion(String),
    /// `InvalidHTTPVersion` raised with a parsed version outside 1.0..2.0;
    /// Gunicorn renders the tuple, e.g. `(2, 0)`.
    UnsupportedHttpVersion {
        major: u8,
        minor: u8,
    },
    InvalidHeader(String),
    InvalidHeaderName(String),
    ObsoleteFolding(String),
    LimitRequestLine {
        size: usize,
        max: usize,
    },
    LimitRequestHeaders(&'static str),
    /// A trusted peer on a prior-knowledge-only h2c port sent something else
    /// than the HTTP/2 preface (what it sent, up to the preface's length).
    InvalidH2cPreface(Vec<u8>),
    UnsupportedTransferCoding(String),
    ExpectationFailed(String),
    InvalidSchemeHeaders,
    InvalidProxyLine(String),
    /// Gunicorn's worker does not list this one as a client error: 500.
    InvalidProxyHeader(String),
    ForbiddenProxyRequest(String),
    /// Payload is the offending bytes as latin-1 text; shown as `bytes` repr.
    InvalidChunkSize(String),
    /// Payload is the offending bytes as latin-1 text; shown as `bytes` repr.
    ChunkMissingTerminator(String),
    InvalidChunkExtension(String),
    /// The peer closed mid-message: Gunicorn sends no response.
    NoMoreData,
    /// e.g. the path is not under SCRIPT_NAME: 500.
    ConfigurationProblem(String),
    /// A uwsgi packet refused; `answered`: with Gunicorn's 500 page (not a
    /// client error in its WSGI workers' eyes), else by closing (its asgi
    /// worker).
    Uwsgi {
        error: crate::uwsgi::UwsgiError,
        answered: bool,
    },
}

/// What `util.write_error` puts on the wire for a refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HttpError::*;
        match self {
            InvalidRequestLine(s) => write!(f, "Invalid HTTP request line: {}", py_repr(s)),
            InvalidRequestMethod(s) => write!(f, "Invalid HTTP method: {}", py_repr(s)),
            InvalidHttpVersion(s) => write!(f, "Invalid HTTP Version: {}", py_repr(s)),
            UnsupportedHttpVersion { major, minor } => {
                write!(f, "Invalid HTTP Version: ({major}, {minor})")
            }
            InvalidHeader(s) => write!(f, "Invalid HTTP Header: {}", py_repr(s)),
            InvalidHeaderName(s) => write!(f, "Invalid HTTP header name: {}", py_repr(s)),
            ObsoleteFolding(s) => {
                write!(f, "Obsolete line folding is unacceptable: {}", py_repr(s))
            }
            LimitRequestLine { size, max } => {
                write!(f, "Request Line is too large ({size} > {max})")
            }
            LimitRequestHeaders(s) => f.write_str(s),
            InvalidH2cPreface(b) => {
                write!(f, "Expected HTTP/2 connection preface, got {}", crate::http::text::py_repr_bytes(b))
            }
            UnsupportedTransferCoding(s) => {
                write!(f, "Unsupported transfer coding: {}", py_repr(s))
            }
            ExpectationFailed(s) => {
                write!(f, "Unable to comply with expectation: {}", py_repr(s))
            }
            InvalidSchemeHeaders => f.write_str("Contradictory scheme headers"),
            InvalidProxyLine(s) => write!(f, "Invalid PROXY line: {}", py_repr(s)),
            InvalidProxyHeader(s) => write!(f, "Invalid PROXY header: {s}"),
            ForbiddenProxyRequest(s) => write!(f, "Proxy request from {} not allowed", py_repr(s)),
            InvalidChunkSize(s) => {
                write!(f, "Invalid chunk size: {}", py_repr_bytes(&string_to_latin1(s)))
            }
            ChunkMissingTerminator(s) => {
                write!(f, "Invalid chunk terminator is not '\\r\\n': {}", py_repr_bytes(&string_to_latin1(s)))
            }
            InvalidChunkExtension(s) => write!(f, "Invalid chunk extension: {s}"),
            NoMoreData => f.write_str("No more data after: None"),
            ConfigurationProblem(s) => write!(f, "Configuration problem: {s}"),
            Uwsgi { error, .. } => error.fmt(f),
        }
    }
}

impl std::error::Error for HttpError {}

impl HttpError {
    /// The answer Gunicorn's `handle_error` writes, or `None` when it writes
    /// nothing (the peer went away).
    pub fn response(&self) -> Option<ErrorResponse> {
        use HttpError::*;
        const BAD: &str = "Bad Request";
        let exc = self.to_string();
        let (status, reason, message) = match self {
            NoMoreData | Uwsgi { answered: false, .. } => return None,
            InvalidRequestLine(_) => (400, BAD, format!("Invalid Request Line '{exc}'")),
            InvalidRequestMethod(_) => (400, BAD, format!("Invalid Method '{exc}'")),
            InvalidHttpVersion(_) | UnsupportedHttpVersion { .. } => {
                (400, BAD, format!("Invalid HTTP Version '{exc}'"))
            }
            // Gunicorn changes the status but keeps the "Bad Request" reason.
            UnsupportedTransferCoding(_) => (501, BAD, exc),
            ConfigurationProblem(_) => (500, BAD, exc),
            ObsoleteFolding(_) | InvalidHeaderName(_) | InvalidHeader(_) => (400, BAD, exc),
            LimitRequestLine { .. } => (414, "URI Too Long", exc),
            ExpectationFailed(_) => (417, "Expectation Failed", exc),
            LimitRequestHeaders(_) => {
                (431, "Request Header Fields Too Large", format!("Error parsing headers: '{exc}'"))
            }
            InvalidProxyLine(_) => (400, BAD, format!("'{exc}'")),
            ForbiddenProxyRequest(_) => (403, "Forbidden", "Request forbidden".to_owned()),
            InvalidSchemeHeaders | InvalidH2cPreface(_) => (400, BAD, exc),
            InvalidChunkSize(_) | ChunkMissingTerminator(_) | InvalidChunkExtension(_) => (400, BAD, exc),
            // Missing from handle_error's list of client errors, so it is
            // answered like an application crash.
            InvalidProxyHeader(_) | Uwsgi { answered: true, .. } => (500, "Internal Server Error", String::new()),
        };
        Some(ErrorResponse { status, reason, message })
    }

    /// Whether Gunicorn leaves the connection without writing anything.
    pub fn is_silent(&self) -> bool {
        matches!(self, HttpError::NoMoreData | HttpError::Uwsgi { answered: false, .. })
    }
}

impl ErrorResponse {
    /// The page's HTML body.
    pub fn html(&self) -> Vec<u8> {
        let html = format!(
            "<html>\n  <head>\n    <title>{r}</title>\n  </head>\n  <body>\n    <h1><p>{r}</p></h1>\n    {m}\n  </body>\n</html>\n",
            r = self.reason,
            m = html_escape(&self.message),
        );
        string_to_latin1(&html)
    }

    /// Byte-identical to `util.write_error(sock, status, reason, mesg)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let html = self.html();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
            self.status,
            self.reason,
            html.len()
        )
        .into_bytes();
        out.extend_from_slice(&html);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(e: &HttpError) -> String {
        let bytes = e.response().unwrap().to_bytes();
        crate::http::text::latin1_to_string(&bytes)
    }

    #[test]
    fn error_page_is_byte_identical() {
        // Recorded from gunicorn 27.0.1: util.write_error(sock, 400,
        // "Bad Request", "Invalid Request Line '%s'" % str(InvalidRequestLine("GET <x> 'a'"))).
        let e = HttpError::InvalidRequestLine("GET <x> 'a'".to_owned());
        let expected = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: 220\r\n\r\n<html>\n  <head>\n    <title>Bad Request</title>\n  </head>\n  <body>\n    <h1><p>Bad Request</p></h1>\n    Invalid Request Line &#x27;Invalid HTTP request line: &quot;GET &lt;x&gt; &#x27;a&#x27;&quot;&#x27;\n  </body>\n</html>\n";
        assert_eq!(wire(&e), expected);
    }

    #[test]
    fn live_gunicorn_answers() {
        // Captured from a running gunicorn 27.0.1 (-k sync --proxy-protocol auto).
        let proxy = HttpError::InvalidProxyHeader("unsupported version 1".into());
        assert_eq!(
            wire(&proxy),
            "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: 141\r\n\r\n<html>\n  <head>\n    <title>Internal Server Error</title>\n  </head>\n  <body>\n    <h1><p>Internal Server Error</p></h1>\n    \n  </body>\n</html>\n"
        );
        let line = HttpError::InvalidRequestLine("GET <x> HTTP/1.1".into());
        assert_eq!(
            wire(&line),
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: 215\r\n\r\n<html>\n  <head>\n    <title>Bad Request</title>\n  </head>\n  <body>\n    <h1><p>Bad Request</p></h1>\n    Invalid Request Line &#x27;Invalid HTTP request line: &#x27;GET &lt;x&gt; HTTP/1.1&#x27;&#x27;\n  </body>\n</html>\n"
        );
        let te = HttpError::UnsupportedTransferCoding("foo".into());
        assert_eq!(
            wire(&te),
            "HTTP/1.1 501 Bad Request\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: 165\r\n\r\n<html>\n  <head>\n    <title>Bad Request</title>\n  </head>\n  <body>\n    <h1><p>Bad Request</p></h1>\n    Unsupported transfer coding: &#x27;foo&#x27;\n  </body>\n</html>\n"
        );
    }

    #[test]
    fn statuses_and_reasons() {
        use HttpError::*;
        let cases: Vec<(HttpError, u16, &str)> = vec![
            (InvalidRequestLine("x".into()), 400, "Bad Request"),
            (InvalidRequestMethod("x".into()), 400, "Bad Request"),
            (InvalidHttpVersion("x".into()), 400, "Bad Request"),
            (UnsupportedHttpVersion { major: 2, minor: 0 }, 400, "Bad Request"),
            (InvalidHeader("x".into()), 400, "Bad Request"),
            (InvalidHeaderName("x".into()), 400, "Bad Request"),
            (ObsoleteFolding("x".into()), 400, "Bad Request"),
            (LimitRequestLine { size: 5, max: 4 }, 414, "URI Too Long"),
            (LimitRequestHeaders("x"), 431, "Request Header Fields Too Large"),
            (UnsupportedTransferCoding("x".into()), 501, "Bad Request"),
            (ExpectationFailed("x".into()), 417, "Expectation Failed"),
            (InvalidSchemeHeaders, 400, "Bad Request"),
            (InvalidProxyLine("x".into()), 400, "Bad Request"),
            (InvalidProxyHeader("x".into()), 500, "Internal Server Error"),
            (ForbiddenProxyRequest("x".into()), 403, "Forbidden"),
            (InvalidChunkSize("x".into()), 400, "Bad Request"),
            (ChunkMissingTerminator("x".into()), 400, "Bad Request"),
            (InvalidChunkExtension("x".into()), 400, "Bad Request"),
            (ConfigurationProblem("x".into()), 500, "Bad Request"),
        ];
        for (e, status, reason) in cases {
            let r = e.response().unwrap();
            assert_eq!((r.status, r.reason), (status, reason), "{e:?}");
        }
        assert!(NoMoreData.response().is_none());
    }

    #[test]
    fn messages_match_gunicorn() {
        use HttpError::*;
        let msg = |e: HttpError| e.response().unwrap().message;
        assert_eq!(
            msg(UnsupportedHttpVersion { major: 2, minor: 0 }),
            "Invalid HTTP Version 'Invalid HTTP Version: (2, 0)'"
        );
        assert_eq!(msg(InvalidHttpVersion("FTP/1.1".into())), "Invalid HTTP Version 'Invalid HTTP Version: 'FTP/1.1''");
        assert_eq!(msg(LimitRequestHeaders("max buffer headers")), "Error parsing headers: 'max buffer headers'");
        assert_eq!(msg(InvalidChunkSize(" 0".into())), "Invalid chunk size: b' 0'");
        assert_eq!(msg(ChunkMissingTerminator("\r".into())), "Invalid chunk terminator is not '\\r\\n': b'\\r'");
        assert_eq!(msg(InvalidProxyLine("PROXY TCP4".into())), "'Invalid PROXY line: 'PROXY TCP4''");
        assert_eq!(msg(ForbiddenProxyRequest("10.0.0.1".into())), "Request forbidden");
        assert_eq!(msg(InvalidProxyHeader("x".into())), "");
        assert_eq!(msg(LimitRequestLine { size: 4105, max: 4094 }), "Request Line is too large (4105 > 4094)");
    }
}
