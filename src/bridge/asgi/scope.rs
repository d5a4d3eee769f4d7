//! ASGI `http` and `websocket` scopes, built in Rust from the parsed request
//! with interned keys (ASGI 3.0, spec 2.4, as Gunicorn's ASGI worker builds
//! them: lowercased byte header names, `path` percent-decoded as UTF-8,
//! `raw_path` as sent, `state` a shallow copy of the lifespan state).

use crate::http::request::{RequestHead, Scheme};
use crate::net::listener::Address;
use crate::net::proxy_protocol::ProxyInfo;
use crate::net::stream::Peer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

macro_rules! keys {
    ($($field:ident = $text:literal),* $(,)?) => {
        pub struct Keys { $(pub $field: Py<PyString>,)* }
        impl Keys {
            pub fn new(py: Python<'_>) -> Keys {
                Keys { $($field: PyString::intern(py, $text).unbind(),)* }
            }
        }
    };
}

keys! {
    type_ = "type",
    asgi = "asgi",
    http_version = "http_version",
    method = "method",
    scheme = "scheme",
    path = "path",
    raw_path = "raw_path",
    query_string = "query_string",
    root_path = "root_path",
    headers = "headers",
    client = "client",
    server = "server",
    state = "state",
    extensions = "extensions",
    subprotocols = "subprotocols",
    http = "http",
    websocket = "websocket",
    https = "https",
    ws = "ws",
    wss = "wss",
    v10 = "1.0",
    v11 = "1.1",
    body = "body",
    more_body = "more_body",
    http_request = "http.request",
    http_disconnect = "http.disconnect",
    ws_connect = "websocket.connect",
    ws_receive = "websocket.receive",
    ws_disconnect = "websocket.disconnect",
    bytes = "bytes",
    text = "text",
    code = "code",
    reason = "reason",
    status = "status",
    message = "message",
    path_key = "path",
    subprotocol = "subprotocol",
}

/// What a worker fixes once for all its scopes.
pub struct ScopeBase {
    pub keys: Keys,
    asgi: Py<PyDict>,
    extensions: Py<PyDict>,
    root_path: Py<PyString>,
}

pub struct RequestView<'a> {
    pub head: &'a RequestHead,
    pub peer: Peer,
    pub proxy: Option<&'a ProxyInfo>,
    pub listener: &'a Address,
    /// The connection's TLS session, if it has one.
    pub tls: Option<&'a crate::net::tls::TlsStream>,
}

/// `scope["client"]` and `scope["server"]`, which stay the same for every
/// request on a connection: built once, shared (tuples are immutable).
pub struct Addresses {
    pub client: Py<PyAny>,
    pub server: Py<PyAny>,
}

impl Addresses {
    pub fn new(py: Python<'_>, req: &RequestView<'_>) -> PyResult<Addresses> {
        let client: Option<(String, u16)> = match (req.proxy, req.peer) {
            (Some(info), _) if info.client.is_some() => info.client.clone(),
            (_, Peer::Tcp(addr)) => Some((addr.ip().to_string(), addr.port())),
            (_, Peer::Unix) => None,
        };
        let client = match client {
            Some(pair) => pair.into_pyobject(py)?.into_any(),
            None => py.None().into_bound(py),
        };
        let server = match req.listener {
            Address::Tcp(addr) => (addr.ip().to_string(), addr.port()).into_pyobject(py)?.into_any(),
            Address::Unix(path) => (path.as_str(), py.None()).into_pyobject(py)?.into_any(),
        };
        Ok(Addresses { client: client.unbind(), server: server.unbind() })
    }
}

/// The usual methods as interned strings.
fn method<'py>(py: Python<'py>, method: &str) -> Bound<'py, PyString> {
    match method {
        "GET" => pyo3::intern!(py, "GET").clone(),
        "POST" => pyo3::intern!(py, "POST").clone(),
        "HEAD" => pyo3::intern!(py, "HEAD").clone(),
        "PUT" => pyo3::intern!(py, "PUT").clone(),
        "DELETE" => pyo3::intern!(py, "DELETE").clone(),
        "PATCH" => pyo3::intern!(py, "PATCH").clone(),
        "OPTIONS" => pyo3::intern!(py, "OPTIONS").clone(),
        other => PyString::new(py, other),
    }
}

impl ScopeBase {
    pub fn new(py: Python<'_>, root_path: &str) -> PyResult<ScopeBase> {
        let asgi = PyDict::new(py);
        asgi.set_item("version", "3.0")?;
        asgi.set_item("spec_version", "2.4")?;
        let extensions = PyDict::new(py);
        extensions.set_item("http.response.pathsend", PyDict::new(py))?;
        Ok(ScopeBase {
            keys: Keys::new(py),
            asgi: asgi.unbind(),
            extensions: extensions.unbind(),
            root_path: PyString::new(py, root_path).unbind(),
        })
    }

    /// The `http` scope; `websocket` adds its own keys to the same base.
    pub fn build<'py>(
        &self,
        py: Python<'py>,
        req: &RequestView<'_>,
        addresses: &Addresses,
        websocket: Option<&[String]>,
        state: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let k = &self.keys;
        let head = req.head;
        let scope = PyDict::new(py);
        match websocket {
            None => scope.set_item(k.type_.bind(py), k.http.bind(py))?,
            Some(_) => scope.set_item(k.type_.bind(py), k.websocket.bind(py))?,
        }
        // A fresh copy: an app may write into its scope.
        scope.set_item(k.asgi.bind(py), self.asgi.bind(py).copy()?)?;
        let version = match head.version {
            (1, 0) => k.v10.bind(py).clone(),
            (1, 1) => k.v11.bind(py).clone(),
            // The ASGI spec's name for HTTP/2.
            (2, _) => PyString::new(py, "2"),
            (a, b) => PyString::new(py, &format!("{a}.{b}")),
        };
        scope.set_item(k.http_version.bind(py), version)?;
        let https = head.scheme == Scheme::Https;
        if websocket.is_none() {
            scope.set_item(k.method.bind(py), method(py, &head.method))?;
            scope.set_item(k.scheme.bind(py), if https { k.https.bind(py) } else { k.http.bind(py) })?;
        } else {
            scope.set_item(k.scheme.bind(py), if https { k.wss.bind(py) } else { k.ws.bind(py) })?;
        }
        // raw_path is the target's path as sent (urlsplit's, as Gunicorn
        // takes it); path its percent-decoded UTF-8 text (invalid bytes
        // replaced).
        // A uwsgi packet's PATH_INFO is already decoded by the front end,
        // and REQUEST_URI is the target as sent (Gunicorn's reading).
        if let Some(uwsgi) = &head.uwsgi {
            scope.set_item(k.path.bind(py), PyString::new(py, &head.path))?;
            scope.set_item(k.raw_path.bind(py), PyBytes::new(py, &uwsgi.raw_path))?;
        } else {
            let raw = head.path.as_str();
            let decoded = crate::http::text::unquote_to_bytes(raw.as_bytes());
            scope.set_item(k.path.bind(py), PyString::new(py, &String::from_utf8_lossy(&decoded)))?;
            scope.set_item(k.raw_path.bind(py), PyBytes::new(py, raw.as_bytes()))?;
        }
        scope.set_item(k.query_string.bind(py), PyBytes::new(py, head.query.as_bytes()))?;
        scope.set_item(k.root_path.bind(py), self.root_path.bind(py))?;
        let headers = PyList::empty(py);
        for h in &head.headers {
            let name = h.name.to_ascii_lowercase();
            headers.append(PyTuple::new(py, [PyBytes::new(py, name.as_bytes()), PyBytes::new(py, &h.value)])?)?;
        }
        scope.set_item(k.headers.bind(py), headers)?;
        scope.set_item(k.client.bind(py), addresses.client.bind(py))?;
        scope.set_item(k.server.bind(py), addresses.server.bind(py))?;
        if let Some(state) = state {
            scope.set_item(k.state.bind(py), state.copy()?)?;
        }
        let extensions = match websocket {
            // An HTTP/2 stream: trailers can be sent; pathsend is not
            // offered (its file would bypass the stream's flow control).
            None if head.version.0 == 2 => {
                let ext = PyDict::new(py);
                ext.set_item("http.response.trailers", PyDict::new(py))?;
                ext
            }
            None => self.extensions.bind(py).copy()?,
            Some(protocols) => {
                scope.set_item(k.subprotocols.bind(py), PyList::new(py, protocols)?)?;
                let ext = PyDict::new(py);
                ext.set_item("websocket.http.response", PyDict::new(py))?;
                ext
            }
        };
        if let Some(tls) = req.tls {
            extensions.set_item("tls", tls_extension(py, tls)?)?;
        }
        scope.set_item(k.extensions.bind(py), extensions)?;
        Ok(scope)
    }
}

/// The ASGI TLS extension: the client's certificate chain (PEM) and name
/// when one was verified, the TLS version and cipher suite numbers.
fn tls_extension<'py>(py: Python<'py>, tls: &crate::net::tls::TlsStream) -> PyResult<Bound<'py, PyDict>> {
    use crate::net::tls::cert;
    let chain = tls.peer_certificates();
    let ext = PyDict::new(py);
    ext.set_item("server_cert", py.None())?;
    ext.set_item("client_cert_chain", PyList::new(py, chain.iter().map(|der| cert::pem(der)))?)?;
    ext.set_item("client_cert_name", chain.first().and_then(|der| cert::subject_name(der)))?;
    ext.set_item("client_cert_error", py.None())?;
    let (version, suite) = tls.negotiated().unzip();
    ext.set_item("tls_version", version)?;
    ext.set_item("cipher_suite", suite)?;
    Ok(ext)
}
