//! The WSGI environ, built in Rust: a per-worker template dict holds what
//! never changes, keys are interned once, and header keys ("HTTP_USER_AGENT")
//! are cached, so a request costs one dict copy plus its own values
//! (Gunicorn's `wsgi.create` and `default_environ`).

use crate::http::error::HttpError;
use crate::http::request::{RequestHead, Scheme};
use crate::http::text::{latin1_to_string, py_repr, unquote_to_bytes};
use crate::net::listener::Address;
use crate::net::proxy_protocol::ProxyInfo;
use crate::net::stream::Peer;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use std::collections::HashMap;

/// Everything about one request the environ is made from.
pub struct RequestView<'a> {
    pub head: &'a RequestHead,
    pub peer: Peer,
    pub proxy: Option<&'a ProxyInfo>,
    pub listener: &'a Address,
    /// The connection's TLS session, if it has one.
    pub tls: Option<&'a crate::net::tls::TlsStream>,
}

pub enum EnvironError {
    /// The request cannot be mapped (path outside SCRIPT_NAME): answered with
    /// the status Gunicorn gives.
    Http(HttpError),
    Py(PyErr),
}

impl From<PyErr> for EnvironError {
    fn from(e: PyErr) -> Self {
        EnvironError::Py(e)
    }
}

macro_rules! keys {
    ($($field:ident = $text:literal),* $(,)?) => {
        struct Keys { $($field: Py<PyString>,)* }
        impl Keys {
            fn new(py: Python<'_>) -> Keys {
                Keys { $($field: PyString::intern(py, $text).unbind(),)* }
            }
        }
    };
}

keys! {
    request_method = "REQUEST_METHOD",
    query_string = "QUERY_STRING",
    raw_uri = "RAW_URI",
    server_protocol = "SERVER_PROTOCOL",
    content_type = "CONTENT_TYPE",
    content_length = "CONTENT_LENGTH",
    url_scheme = "wsgi.url_scheme",
    remote_addr = "REMOTE_ADDR",
    remote_port = "REMOTE_PORT",
    server_name = "SERVER_NAME",
    server_port = "SERVER_PORT",
    path_info = "PATH_INFO",
    script_name = "SCRIPT_NAME",
    input = "wsgi.input",
    early_hints = "wsgi.early_hints",
    proxy_protocol = "PROXY_PROTOCOL",
    proxy_addr = "PROXY_ADDR",
    proxy_port = "PROXY_PORT",
    http = "http",
    https = "https",
    empty = "",
    http10 = "HTTP/1.0",
    http11 = "HTTP/1.1",
    get = "GET",
    post = "POST",
}

/// Header keys kept per worker; the cap bounds what random header names can
/// make a worker remember.
const HEADER_KEY_CACHE: usize = 512;

pub struct EnvironBuilder {
    template: Py<PyDict>,
    keys: Keys,
    header_keys: HashMap<String, Py<PyString>>,
    /// SCRIPT_NAME from the process environment (`-e SCRIPT_NAME=/prefix`).
    script_name: String,
}

pub struct TemplateOptions {
    pub multithread: bool,
    pub multiprocess: bool,
}

impl EnvironBuilder {
    pub fn new(py: Python<'_>, opts: TemplateOptions) -> PyResult<EnvironBuilder> {
        let t = PyDict::new(py);
        t.set_item("wsgi.errors", Py::new(py, super::errors_stream::ErrorStream)?)?;
        t.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        t.set_item("wsgi.multithread", opts.multithread)?;
        t.set_item("wsgi.multiprocess", opts.multiprocess)?;
        t.set_item("wsgi.run_once", false)?;
        t.set_item("wsgi.file_wrapper", py.get_type::<super::file_wrapper::FileWrapper>())?;
        t.set_item("wsgi.input_terminated", true)?;
        t.set_item("SERVER_SOFTWARE", crate::SERVER_SOFTWARE)?;
        let script_name =
            py.import("os")?.getattr("environ")?.call_method1("get", ("SCRIPT_NAME", ""))?.extract::<String>()?;
        Ok(EnvironBuilder { template: t.unbind(), keys: Keys::new(py), header_keys: HashMap::new(), script_name })
    }

    pub fn build<'py>(
        &mut self,
        py: Python<'py>,
        req: &RequestView<'_>,
        input: &Bound<'py, PyAny>,
        early_hints: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyDict>, EnvironError> {
        let k = &self.keys;
        let head = req.head;
        let env = self.template.bind(py).copy()?;
        env.set_item(k.input.bind(py), input)?;
        env.set_item(k.request_method.bind(py), self.method(py, &head.method))?;
        env.set_item(k.query_string.bind(py), ascii(py, &head.query))?;
        env.set_item(k.raw_uri.bind(py), ascii(py, &head.uri))?;
        let protocol = match head.version {
            (1, 1) => k.http11.bind(py).clone(),
            (1, 0) => k.http10.bind(py).clone(),
            (a, b) => PyString::new(py, &format!("HTTP/{a}.{b}")),
        };
        env.set_item(k.server_protocol.bind(py), protocol)?;

        let mut host: Option<&[u8]> = None;
        // Repeated fields become one value joined with ",", in arrival order.
        let mut fields: Vec<(Py<PyString>, Vec<&[u8]>)> = Vec::with_capacity(head.headers.len());
        for h in &head.headers {
            match h.name.as_str() {
                "HOST" => host = Some(&h.value),
                "CONTENT-TYPE" => {
                    env.set_item(k.content_type.bind(py), latin1(py, &h.value))?;
                    continue;
                }
                "CONTENT-LENGTH" => {
                    env.set_item(k.content_length.bind(py), latin1(py, &h.value))?;
                    continue;
                }
                _ => {}
            }
            // Interned keys: the same text is the same object.
            let key = header_key(&mut self.header_keys, py, &h.name);
            match fields.iter_mut().find(|(fk, _)| fk.is(&key)) {
                Some((_, values)) => values.push(&h.value),
                None => fields.push((key, vec![&h.value])),
            }
        }
        for (key, values) in fields {
            let value = match values.as_slice() {
                [one] => latin1(py, one),
                many => latin1(py, &many.join(&b","[..])),
            };
            env.set_item(key.bind(py), value)?;
        }

        let scheme = match head.scheme {
            Scheme::Https => k.https.bind(py),
            Scheme::Http => k.http.bind(py),
        };
        env.set_item(k.url_scheme.bind(py), scheme)?;

        match req.peer {
            Peer::Tcp(addr) => {
                env.set_item(k.remote_addr.bind(py), addr.ip().to_string())?;
                env.set_item(k.remote_port.bind(py), addr.port().to_string())?;
            }
            Peer::Unix => env.set_item(k.remote_addr.bind(py), k.empty.bind(py))?,
        }

        let (server_name, server_port) = server_address(req.listener, host, head.scheme);
        env.set_item(k.server_name.bind(py), server_name)?;
        env.set_item(k.server_port.bind(py), server_port)?;

        // SCRIPT_NAME (a trusted forwarder's header, else the process
        // environment) must prefix the path, compared still percent-encoded.
        let (script, path_info) =
            script_and_path_info(head, self.script_name.as_bytes()).map_err(EnvironError::Http)?;
        env.set_item(k.path_info.bind(py), latin1(py, &path_info))?;
        env.set_item(k.script_name.bind(py), latin1(py, &script))?;

        if let Some(info) = req.proxy {
            env.set_item(k.proxy_protocol.bind(py), info.protocol)?;
            let (client_addr, client_port) = split_opt(&info.client);
            let (proxy_addr, proxy_port) = split_opt(&info.proxy);
            env.set_item(k.remote_addr.bind(py), client_addr)?;
            env.set_item(k.remote_port.bind(py), client_port)?;
            env.set_item(k.proxy_addr.bind(py), proxy_addr)?;
            env.set_item(k.proxy_port.bind(py), proxy_port)?;
        }
        if let Some(leaf) = req.tls.and_then(|t| t.peer_certificates().into_iter().next()) {
            // The verified client certificate, as CGI servers pass it.
            env.set_item(pyo3::intern!(py, "SSL_CLIENT_CERT"), crate::net::tls::cert::pem(&leaf))?;
        }
        env.set_item(k.early_hints.bind(py), early_hints)?;
        Ok(env)
    }

    fn method<'py>(&self, py: Python<'py>, m: &str) -> Bound<'py, PyString> {
        match m {
            "GET" => self.keys.get.bind(py).clone(),
            "POST" => self.keys.post.bind(py).clone(),
            other => PyString::new(py, other),
        }
    }
}

fn header_key(cache: &mut HashMap<String, Py<PyString>>, py: Python<'_>, name: &str) -> Py<PyString> {
    if let Some(k) = cache.get(name) {
        return k.clone_ref(py);
    }
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(name.chars().map(|c| if c == '-' { '_' } else { c }));
    let k = PyString::intern(py, &key).unbind();
    if cache.len() >= HEADER_KEY_CACHE {
        cache.clear();
    }
    cache.insert(name.to_owned(), k.clone_ref(py));
    k
}

/// Gunicorn's `str(None)`-free rendering of PROXY addresses: None stays None.
fn split_opt(addr: &Option<(String, u16)>) -> (Option<String>, String) {
    match addr {
        Some((a, p)) => (Some(a.clone()), p.to_string()),
        None => (None, "None".to_owned()),
    }
}

/// SERVER_NAME/SERVER_PORT: the listening address; for a Unix socket, the
/// Host header (or the scheme's port), as Gunicorn does.
fn server_address(listener: &Address, host: Option<&[u8]>, scheme: Scheme) -> (String, String) {
    match listener {
        Address::Tcp(a) => (a.ip().to_string(), a.port().to_string()),
        Address::Unix(_) => match host {
            Some(h) => {
                let h: String = h.iter().map(|&b| b as char).collect();
                let mut parts = h.split(':');
                let name = parts.next().unwrap_or("").to_owned();
                match parts.next() {
                    Some(port) => (name, port.to_owned()),
                    None => (name, if scheme == Scheme::Https { "443" } else { "80" }.to_owned()),
                }
            }
            None => (String::new(), String::new()),
        },
    }
}

/// A latin-1 str, as Gunicorn decodes every header value.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if s.is_ascii() {
            return PyString::new(py, s);
        }
    }
    let s: String = bytes.iter().map(|&b| b as char).collect();
    PyString::new(py, &s)
}

fn ascii<'py>(py: Python<'py>, s: &str) -> Bound<'py, PyString> {
    PyString::new(py, s)
}

/// `SCRIPT_NAME` and `PATH_INFO` (latin-1 bytes) the way `wsgi.create`
/// computes them: the last `SCRIPT_NAME` header (only present when the
/// header policy kept it) overrides `env_script_name` (the process's
/// `SCRIPT_NAME` environment variable), the path must start with it, and
/// the remainder is percent-decoded.
pub fn script_and_path_info(head: &RequestHead, env_script_name: &[u8]) -> Result<(Vec<u8>, Vec<u8>), HttpError> {
    let script =
        head.headers.iter().rev().find(|h| h.name == "SCRIPT_NAME").map_or(env_script_name, |h| h.value.as_slice());
    let path_info = path_info_under(&head.path, script)?;
    Ok((script.to_vec(), path_info))
}

/// `PATH_INFO` for `path` under `script_name`, or Gunicorn's 500.
fn path_info_under(path: &str, script_name: &[u8]) -> Result<Vec<u8>, HttpError> {
    if script_name.is_empty() {
        return Ok(unquote_to_bytes(path.as_bytes()));
    }
    match path.as_bytes().strip_prefix(script_name) {
        Some(rest) => Ok(unquote_to_bytes(rest)),
        None => Err(HttpError::ConfigurationProblem(format!(
            "Request path {} does not start with SCRIPT_NAME {}",
            py_repr(path),
            py_repr(&latin1_to_string(script_name))
        ))),
    }
}

#[cfg(test)]
mod script_name_tests {
    use super::*;
    use crate::http::policy::HttpPolicy;
    use crate::http::request::{parse_request_head, Parsed};

    fn head(raw: &[u8]) -> RequestHead {
        match parse_request_head(raw, &HttpPolicy::default(), Some(std::net::IpAddr::from([127, 0, 0, 1]))) {
            Ok(Parsed::Complete(h, _)) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn script_name_prefixes_the_path() {
        let h = head(b"GET /app/a%20b HTTP/1.1\r\n\r\n");
        assert_eq!(script_and_path_info(&h, b"").unwrap().1, b"/app/a b");
        assert_eq!(script_and_path_info(&h, b"/app").unwrap().1, b"/a b");
        let e = script_and_path_info(&h, b"/other").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Configuration problem: Request path '/app/a%20b' does not start with SCRIPT_NAME '/other'"
        );
        assert_eq!(e.response().unwrap().status, 500);
    }

    #[test]
    fn a_kept_script_name_header_wins() {
        let h = head(b"GET /app/x HTTP/1.1\r\nScript-Name: /app\r\n\r\n");
        assert_eq!(script_and_path_info(&h, b"").unwrap().1, b"/app/x", "Script-Name is not SCRIPT_NAME");
        let mut h = h;
        h.headers.push(crate::http::request::Header { name: "SCRIPT_NAME".into(), value: b"/app".to_vec() });
        assert_eq!(script_and_path_info(&h, b"/other").unwrap(), (b"/app".to_vec(), b"/x".to_vec()));
    }
}
