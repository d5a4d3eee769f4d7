//! ASGI messages as Rust values: what `send()` is given, read out of the
//! app's dict, and the dicts `receive()` hands back, built with interned
//! keys. Invalid messages are typed errors the bridge raises into the app
//! as Python exceptions (uvicorn's wording, where it has one).

use super::scope::Keys;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};

/// Bytes from the app: borrowed from a `bytes` object, copied from anything
/// else (str header names and values as latin-1, bytearray, memoryview).
pub enum Payload<'py> {
    Bytes(Bound<'py, PyBytes>),
    Owned(Vec<u8>),
}

impl Payload<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Bytes(b) => b.as_bytes(),
            Payload::Owned(v) => v,
        }
    }
}

/// A header pair as the app gave it.
pub type HeaderPair<'py> = (Payload<'py>, Payload<'py>);

/// The pairs as slices, for the response writers.
pub fn header_slices<'a>(headers: &'a [HeaderPair<'_>]) -> Vec<(&'a [u8], &'a [u8])> {
    headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect()
}

pub enum HttpSend<'py> {
    Start {
        status: i64,
        headers: Vec<HeaderPair<'py>>,
    },
    Body {
        body: Payload<'py>,
        more: bool,
    },
    /// The `http.response.pathsend` extension.
    PathSend {
        path: String,
    },
    /// `http.response.informational` (1xx, e.g. 103 Early Hints).
    Informational {
        status: i64,
        headers: Vec<HeaderPair<'py>>,
    },
}

pub enum WsSend<'py> {
    Accept {
        subprotocol: Option<String>,
        headers: Vec<HeaderPair<'py>>,
    },
    Text(String),
    Bytes(Payload<'py>),
    Close {
        code: u16,
        reason: String,
    },
    /// The `websocket.http.response` denial extension.
    Http(HttpSend<'py>),
}

fn as_dict<'a, 'py>(msg: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyDict>> {
    msg.cast::<PyDict>().map_err(|_| pyo3::exceptions::PyTypeError::new_err("ASGI messages must be dicts"))
}

fn get<'py>(dict: &Bound<'py, PyDict>, key: &Bound<'py, PyString>) -> PyResult<Option<Bound<'py, PyAny>>> {
    dict.get_item(key)
}

fn required<'py>(dict: &Bound<'py, PyDict>, key: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
    get(dict, key)?.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(key.clone().unbind()))
}

fn bytes_like<'py>(name: &str, value: Bound<'py, PyAny>) -> PyResult<Payload<'py>> {
    let value = match value.cast_into::<PyBytes>() {
        Ok(b) => return Ok(Payload::Bytes(b)),
        Err(e) => e.into_inner(),
    };
    if let Ok(s) = value.cast::<PyString>() {
        // Gunicorn accepts str header names and values, as latin-1.
        let text = crate::stable_abi::utf8(s)?;
        return text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| ()))
            .collect::<Result<Vec<u8>, ()>>()
            .map(Payload::Owned)
            .map_err(|()| pyo3::exceptions::PyValueError::new_err(format!("{name} is not latin-1: {text:?}")));
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(Payload::Owned(b.to_vec()));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!("{name} must be bytes, not {}", value.get_type().name()?)))
}

fn pair<'py>(item: Bound<'py, PyAny>) -> PyResult<HeaderPair<'py>> {
    // The usual case: a 2-tuple (or list) of bytes.
    if let Ok(t) = item.cast::<PyTuple>() {
        if t.len() == 2 {
            return Ok((bytes_like("header name", t.get_item(0)?)?, bytes_like("header value", t.get_item(1)?)?));
        }
    } else if let Ok(l) = item.cast::<PyList>() {
        if l.len() == 2 {
            return Ok((bytes_like("header name", l.get_item(0)?)?, bytes_like("header value", l.get_item(1)?)?));
        }
    } else {
        let mut it = item.try_iter()?;
        if let (Some(n), Some(v), None) = (it.next(), it.next(), it.next()) {
            return Ok((bytes_like("header name", n?)?, bytes_like("header value", v?)?));
        }
    }
    Err(pyo3::exceptions::PyValueError::new_err("ASGI headers must be (name, value) pairs"))
}

fn headers<'py>(dict: &Bound<'py, PyDict>) -> PyResult<Vec<HeaderPair<'py>>> {
    let py = dict.py();
    let Some(list) = get(dict, pyo3::intern!(py, "headers"))? else { return Ok(Vec::new()) };
    if let Ok(l) = list.cast::<PyList>() {
        return l.iter().map(pair).collect();
    }
    if let Ok(t) = list.cast::<PyTuple>() {
        return t.iter().map(pair).collect();
    }
    list.try_iter()?.map(|item| pair(item?)).collect()
}

fn payload<'py>(value: Option<Bound<'py, PyAny>>) -> PyResult<Payload<'py>> {
    let Some(value) = value else { return Ok(Payload::Owned(Vec::new())) };
    let value = match value.cast_into::<PyBytes>() {
        Ok(b) => return Ok(Payload::Bytes(b)),
        Err(e) => e.into_inner(),
    };
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(Payload::Owned(b.to_vec()));
    }
    if value.is_instance_of::<pyo3::types::PyMemoryView>() {
        let bytes = value.call_method0("tobytes")?;
        return Ok(Payload::Bytes(bytes.cast_into::<PyBytes>()?));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!("body must be bytes, not {}", value.get_type().name()?)))
}

fn flag(dict: &Bound<'_, PyDict>, key: &Bound<'_, PyString>) -> PyResult<bool> {
    match get(dict, key)? {
        Some(v) => v.is_truthy(),
        None => Ok(false),
    }
}

fn status(dict: &Bound<'_, PyDict>) -> PyResult<i64> {
    required(dict, pyo3::intern!(dict.py(), "status"))?.extract::<i64>()
}

fn unexpected(kind: &str, scope: &str) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(format!("Unexpected ASGI message '{kind}' sent in a '{scope}' scope."))
}

fn optional_str(dict: &Bound<'_, PyDict>, key: &Bound<'_, PyString>) -> PyResult<Option<String>> {
    match get(dict, key)? {
        Some(v) if !v.is_none() => Ok(Some(v.extract::<String>()?)),
        _ => Ok(None),
    }
}

pub fn http_send<'py>(msg: &Bound<'py, PyAny>) -> PyResult<HttpSend<'py>> {
    let py = msg.py();
    let dict = as_dict(msg)?;
    let kind = required(dict, pyo3::intern!(py, "type"))?;
    let kind = crate::stable_abi::utf8(kind.cast::<PyString>()?)?;
    Ok(match kind {
        "http.response.body" => HttpSend::Body {
            body: payload(get(dict, pyo3::intern!(py, "body"))?)?,
            more: flag(dict, pyo3::intern!(py, "more_body"))?,
        },
        "http.response.start" => HttpSend::Start { status: status(dict)?, headers: headers(dict)? },
        "http.response.pathsend" => {
            HttpSend::PathSend { path: required(dict, pyo3::intern!(py, "path"))?.str()?.to_string() }
        }
        "http.response.informational" => HttpSend::Informational { status: status(dict)?, headers: headers(dict)? },
        other => return Err(unexpected(other, "http")),
    })
}

pub fn ws_send<'py>(msg: &Bound<'py, PyAny>) -> PyResult<WsSend<'py>> {
    let py = msg.py();
    let dict = as_dict(msg)?;
    let kind = required(dict, pyo3::intern!(py, "type"))?;
    let kind = crate::stable_abi::utf8(kind.cast::<PyString>()?)?;
    Ok(match kind {
        "websocket.send" => {
            let bytes = get(dict, pyo3::intern!(py, "bytes"))?.filter(|b| !b.is_none());
            let text = get(dict, pyo3::intern!(py, "text"))?.filter(|t| !t.is_none());
            match (bytes, text) {
                (Some(b), None) => WsSend::Bytes(payload(Some(b))?),
                (None, Some(t)) => WsSend::Text(t.extract::<String>()?),
                _ => {
                    return Err(pyo3::exceptions::PyValueError::new_err(
                        "websocket.send needs exactly one of 'bytes' and 'text'",
                    ))
                }
            }
        }
        "websocket.accept" => WsSend::Accept {
            subprotocol: optional_str(dict, pyo3::intern!(py, "subprotocol"))?,
            headers: headers(dict)?,
        },
        "websocket.close" => WsSend::Close {
            code: match get(dict, pyo3::intern!(py, "code"))? {
                Some(c) if !c.is_none() => c.extract::<u16>()?,
                _ => 1000,
            },
            reason: optional_str(dict, pyo3::intern!(py, "reason"))?.unwrap_or_default(),
        },
        "websocket.http.response.start" => {
            WsSend::Http(HttpSend::Start { status: status(dict)?, headers: headers(dict)? })
        }
        "websocket.http.response.body" => WsSend::Http(HttpSend::Body {
            body: payload(get(dict, pyo3::intern!(py, "body"))?)?,
            more: flag(dict, pyo3::intern!(py, "more_body"))?,
        }),
        other => return Err(unexpected(other, "websocket")),
    })
}

/// `{"type": "http.request", "body": ..., "more_body": ...}`
pub fn http_request<'py>(py: Python<'py>, k: &Keys, body: &[u8], more: bool) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(k.type_.bind(py), k.http_request.bind(py))?;
    d.set_item(k.body.bind(py), PyBytes::new(py, body))?;
    d.set_item(k.more_body.bind(py), more)?;
    Ok(d)
}

/// `{"type": "http.disconnect"}`
pub fn http_disconnect<'py>(py: Python<'py>, k: &Keys) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(k.type_.bind(py), k.http_disconnect.bind(py))?;
    Ok(d)
}

pub fn ws_connect<'py>(py: Python<'py>, k: &Keys) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(k.type_.bind(py), k.ws_connect.bind(py))?;
    Ok(d)
}

pub fn ws_text<'py>(py: Python<'py>, k: &Keys, text: &str) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(k.type_.bind(py), k.ws_receive.bind(py))?;
    d.set_item(k.text.bind(py), PyString::new(py, text))?;
    Ok(d)
}

pub fn ws_bytes<'py>(py: Python<'py>, k: &Keys, data: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(k.type_.bind(py), k.ws_receive.bind(py))?;
    d.set_item(k.bytes.bind(py), PyBytes::new(py, data))?;
    Ok(d)
}

pub fn ws_disconnect<'py>(py: Python<'py>, k: &Keys, code: u16, reason: &str) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(k.type_.bind(py), k.ws_disconnect.bind(py))?;
    d.set_item(k.code.bind(py), code)?;
    d.set_item(k.reason.bind(py), PyString::new(py, reason))?;
    Ok(d)
}
