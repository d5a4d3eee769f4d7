//! ASGI messages as Rust values: what `send()` is given, read out of the
//! app's dict, and the dicts `receive()` hands back, built with interned
//! keys. Invalid messages are typed errors the bridge raises into the app
//! as Python exceptions (uvicorn's wording, where it has one).

use super::scope::Keys;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

/// A header pair as the app gave it (bytes, or str encoded as latin-1).
pub type HeaderPair = (Vec<u8>, Vec<u8>);

/// Body bytes: borrowed from a `bytes` object, copied from anything else.
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

pub enum HttpSend<'py> {
    Start { status: i64, headers: Vec<HeaderPair> },
    Body { body: Payload<'py>, more: bool },
    /// The `http.response.pathsend` extension.
    PathSend { path: String },
    /// `http.response.informational` (1xx, e.g. 103 Early Hints).
    Informational { status: i64, headers: Vec<HeaderPair> },
}

pub enum WsSend<'py> {
    Accept { subprotocol: Option<String>, headers: Vec<HeaderPair> },
    Text(String),
    Bytes(Payload<'py>),
    Close { code: u16, reason: String },
    /// The `websocket.http.response` denial extension.
    Http(HttpSend<'py>),
}

fn message_type<'py>(msg: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyDict>, String)> {
    let dict = msg
        .cast::<PyDict>()
        .map_err(|_| pyo3::exceptions::PyTypeError::new_err("ASGI messages must be dicts"))?
        .clone();
    let kind = match dict.get_item("type")? {
        Some(t) => t.extract::<String>()?,
        None => return Err(pyo3::exceptions::PyKeyError::new_err("type")),
    };
    Ok((dict, kind))
}

fn bytes_like(name: &str, value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = value.cast::<PyString>() {
        // Gunicorn accepts str header names and values, as latin-1.
        let text = s.to_str()?;
        return text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| ()))
            .collect::<Result<Vec<u8>, ()>>()
            .map_err(|()| pyo3::exceptions::PyValueError::new_err(format!("{name} is not latin-1: {text:?}")));
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!("{name} must be bytes, not {}", value.get_type().name()?)))
}

fn headers(dict: &Bound<'_, PyDict>) -> PyResult<Vec<HeaderPair>> {
    let Some(list) = dict.get_item("headers")? else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(list.len().unwrap_or(0));
    for item in list.try_iter()? {
        let item = item?;
        let mut pair = item.try_iter()?;
        let (Some(name), Some(value), None) = (pair.next(), pair.next(), pair.next()) else {
            return Err(pyo3::exceptions::PyValueError::new_err("ASGI headers must be (name, value) pairs"));
        };
        out.push((bytes_like("header name", &name?)?, bytes_like("header value", &value?)?));
    }
    Ok(out)
}

fn payload<'py>(value: Option<Bound<'py, PyAny>>) -> PyResult<Payload<'py>> {
    let Some(value) = value else { return Ok(Payload::Owned(Vec::new())) };
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Payload::Bytes(b.clone()));
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(Payload::Owned(b.to_vec()));
    }
    if value.is_instance_of::<pyo3::types::PyMemoryView>() {
        let bytes = value.call_method0("tobytes")?;
        return Ok(Payload::Bytes(bytes.cast_into::<PyBytes>()?));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!("body must be bytes, not {}", value.get_type().name()?)))
}

fn flag(dict: &Bound<'_, PyDict>, key: &str) -> PyResult<bool> {
    match dict.get_item(key)? {
        Some(v) => v.is_truthy(),
        None => Ok(false),
    }
}

fn status(dict: &Bound<'_, PyDict>) -> PyResult<i64> {
    match dict.get_item("status")? {
        Some(v) => v.extract::<i64>(),
        None => Err(pyo3::exceptions::PyKeyError::new_err("status")),
    }
}

fn unexpected(kind: &str, scope: &str) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(format!("Unexpected ASGI message '{kind}' sent in a '{scope}' scope."))
}

pub fn http_send<'py>(msg: &Bound<'py, PyAny>) -> PyResult<HttpSend<'py>> {
    let (dict, kind) = message_type(msg)?;
    Ok(match kind.as_str() {
        "http.response.start" => HttpSend::Start { status: status(&dict)?, headers: headers(&dict)? },
        "http.response.body" => HttpSend::Body { body: payload(dict.get_item("body")?)?, more: flag(&dict, "more_body")? },
        "http.response.pathsend" => match dict.get_item("path")? {
            Some(p) => HttpSend::PathSend { path: p.str()?.to_string() },
            None => return Err(pyo3::exceptions::PyKeyError::new_err("path")),
        },
        "http.response.informational" => HttpSend::Informational { status: status(&dict)?, headers: headers(&dict)? },
        _ => return Err(unexpected(&kind, "http")),
    })
}

pub fn ws_send<'py>(msg: &Bound<'py, PyAny>) -> PyResult<WsSend<'py>> {
    let (dict, kind) = message_type(msg)?;
    Ok(match kind.as_str() {
        "websocket.accept" => {
            let subprotocol = match dict.get_item("subprotocol")? {
                Some(s) if !s.is_none() => Some(s.extract::<String>()?),
                _ => None,
            };
            WsSend::Accept { subprotocol, headers: headers(&dict)? }
        }
        "websocket.send" => {
            let bytes = dict.get_item("bytes")?.filter(|b| !b.is_none());
            let text = dict.get_item("text")?.filter(|t| !t.is_none());
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
        "websocket.close" => {
            let code = match dict.get_item("code")? {
                Some(c) if !c.is_none() => c.extract::<u16>()?,
                _ => 1000,
            };
            let reason = match dict.get_item("reason")? {
                Some(r) if !r.is_none() => r.extract::<String>()?,
                _ => String::new(),
            };
            WsSend::Close { code, reason }
        }
        "websocket.http.response.start" => WsSend::Http(HttpSend::Start { status: status(&dict)?, headers: headers(&dict)? }),
        "websocket.http.response.body" => {
            WsSend::Http(HttpSend::Body { body: payload(dict.get_item("body")?)?, more: flag(&dict, "more_body")? })
        }
        _ => return Err(unexpected(&kind, "websocket")),
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
