//! TLV payloads to and from Python objects, with Gunicorn's type rules:
//! None, bool, int (64-bit), float, bytes, str, list and tuple (as a list),
//! dict (keys made str with `str()`), and nothing else. Used by the dirty
//! workers (arguments in, results out), by the arbiter's stash, and through
//! the `dirty_*` functions by `ferrocorn.dirty`'s clients.

use super::frame::{FrameError, Header, Kind, HEADER_LEN, MAX_PAYLOAD};
use super::tlv::{self, Item, Reader, TlvError, MAX_BYTES, MAX_DEPTH, MAX_ITEMS};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::fmt;

/// Why a Python value cannot be sent.
#[derive(Debug)]
pub enum EncodeError {
    /// Gunicorn's "Unsupported type for TLV encoding: <type name>".
    Unsupported(String),
    IntRange(String),
    BytesTooLarge(usize),
    StrTooLarge(usize),
    ListTooLarge(usize),
    DictTooLarge(usize),
    /// The whole payload would pass [`MAX_PAYLOAD`].
    MessageTooLarge(usize),
    TooDeep,
    /// Python itself failed (`str()` of a key, a str that is not UTF-8).
    Python(PyErr),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Unsupported(t) => write!(f, "Unsupported type for TLV encoding: {t}"),
            EncodeError::IntRange(n) => write!(f, "int out of the int64 range of TLV encoding: {n}"),
            EncodeError::BytesTooLarge(n) => write!(f, "Bytes too large: {n} bytes (max: {MAX_BYTES})"),
            EncodeError::StrTooLarge(n) => write!(f, "String too large: {n} bytes (max: {MAX_BYTES})"),
            EncodeError::ListTooLarge(n) => write!(f, "List too large: {n} items (max: {MAX_ITEMS})"),
            EncodeError::DictTooLarge(n) => write!(f, "Dict too large: {n} items (max: {MAX_ITEMS})"),
            EncodeError::MessageTooLarge(n) => write!(f, "Message too large: {n} bytes (max: {MAX_PAYLOAD})"),
            EncodeError::TooDeep => write!(f, "Value nested deeper than {MAX_DEPTH} levels"),
            EncodeError::Python(e) => write!(f, "{e}"),
        }
    }
}

impl From<PyErr> for EncodeError {
    fn from(e: PyErr) -> Self {
        EncodeError::Python(e)
    }
}

/// A payload being written at the end of a buffer (which may already hold
/// its frame header): the size limit counts from `start`.
struct Payload<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl Payload<'_> {
    /// Stops as soon as the payload cannot fit, before copying more into it.
    fn room(&self, more: usize) -> Result<(), EncodeError> {
        let total = (self.out.len() - self.start).saturating_add(more);
        if total > MAX_PAYLOAD {
            return Err(EncodeError::MessageTooLarge(total));
        }
        Ok(())
    }
}

/// Appends `obj`'s encoding to `out`.
pub fn encode(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    put(obj, &mut Payload { out, start }, 0)
}

fn put(obj: &Bound<'_, PyAny>, p: &mut Payload<'_>, depth: usize) -> Result<(), EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError::TooDeep);
    }
    // Gunicorn's isinstance order: bool before int (bool is an int).
    if obj.is_none() {
        p.out.push(tlv::NONE);
    } else if let Ok(b) = obj.cast::<PyBool>() {
        p.out.extend_from_slice(&[tlv::BOOL, u8::from(b.is_true())]);
    } else if let Ok(n) = obj.cast::<PyInt>() {
        let n: i64 = n.extract().map_err(|_| EncodeError::IntRange(n.to_string()))?;
        p.out.push(tlv::INT);
        p.out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(x) = obj.cast::<PyFloat>() {
        p.out.push(tlv::FLOAT);
        p.out.extend_from_slice(&x.value().to_be_bytes());
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        let b = b.as_bytes();
        if b.len() > MAX_BYTES {
            return Err(EncodeError::BytesTooLarge(b.len()));
        }
        p.room(b.len())?;
        tlv::put_sized(p.out, tlv::BYTES, b);
    } else if let Ok(s) = obj.cast::<PyString>() {
        put_str(s, p)?;
    } else if let Ok(list) = obj.cast::<PyList>() {
        if list.len() > MAX_ITEMS {
            return Err(EncodeError::ListTooLarge(list.len()));
        }
        tlv::put_count(p.out, tlv::LIST, list.len());
        for item in list.iter() {
            put(&item, p, depth + 1)?;
        }
    } else if let Ok(tuple) = obj.cast::<PyTuple>() {
        if tuple.len() > MAX_ITEMS {
            return Err(EncodeError::ListTooLarge(tuple.len()));
        }
        tlv::put_count(p.out, tlv::LIST, tuple.len());
        for item in tuple.iter() {
            put(&item, p, depth + 1)?;
        }
    } else if let Ok(dict) = obj.cast::<PyDict>() {
        put_dict(dict, p, depth)?;
    } else {
        let name = obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into());
        return Err(EncodeError::Unsupported(name));
    }
    p.room(0)
}

fn put_dict(dict: &Bound<'_, PyDict>, p: &mut Payload<'_>, depth: usize) -> Result<(), EncodeError> {
    if dict.len() > MAX_ITEMS {
        return Err(EncodeError::DictTooLarge(dict.len()));
    }
    tlv::put_count(p.out, tlv::DICT, dict.len());
    for (k, v) in dict.iter() {
        // Keys become str, as JSON makes them (Gunicorn's rule).
        match k.cast::<PyString>() {
            Ok(s) => put_str(s, p)?,
            Err(_) => put_str(&k.str()?, p)?,
        }
        put(&v, p, depth + 1)?;
    }
    Ok(())
}

fn put_str(s: &Bound<'_, PyString>, p: &mut Payload<'_>) -> Result<(), EncodeError> {
    let text = crate::stable_abi::utf8(s)?;
    if text.len() > MAX_BYTES {
        return Err(EncodeError::StrTooLarge(text.len()));
    }
    p.room(text.len())?;
    tlv::put_sized(p.out, tlv::STR, text.as_bytes());
    Ok(())
}

/// One whole payload as a Python object.
pub fn decode<'py>(py: Python<'py>, data: &[u8]) -> Result<Bound<'py, PyAny>, DecodeError> {
    let mut r = Reader::new(data);
    let v = take(py, &mut r, 0)?;
    r.finish()?;
    Ok(v)
}

fn take<'py>(py: Python<'py>, r: &mut Reader<'_>, depth: usize) -> Result<Bound<'py, PyAny>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(TlvError::TooDeep.into());
    }
    Ok(match r.item()? {
        Item::None => py.None().into_bound(py),
        Item::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
        Item::Int(n) => PyInt::new(py, n).into_any(),
        Item::Float(x) => PyFloat::new(py, x).into_any(),
        Item::Bytes(b) => PyBytes::new(py, b).into_any(),
        Item::Str(s) => PyString::new(py, s).into_any(),
        Item::List(n) => {
            let list = PyList::empty(py);
            for _ in 0..n {
                list.append(take(py, r, depth + 1)?)?;
            }
            list.into_any()
        }
        Item::Dict(n) => {
            let dict = PyDict::new(py);
            for _ in 0..n {
                let k = PyString::new(py, r.key()?);
                dict.set_item(k, take(py, r, depth + 1)?)?;
            }
            dict.into_any()
        }
    })
}

#[derive(Debug)]
pub enum DecodeError {
    Tlv(TlvError),
    Python(PyErr),
}

impl From<TlvError> for DecodeError {
    fn from(e: TlvError) -> Self {
        DecodeError::Tlv(e)
    }
}

impl From<PyErr> for DecodeError {
    fn from(e: PyErr) -> Self {
        DecodeError::Python(e)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Tlv(e) => e.fmt(f),
            DecodeError::Python(e) => e.fmt(f),
        }
    }
}

/// `ferrocorn.dirty.errors.DirtyProtocolError(message)`, the exception the
/// codec raises into Python.
pub fn protocol_error(py: Python<'_>, message: &str) -> PyErr {
    let made = py
        .import("ferrocorn.dirty.errors")
        .and_then(|m| m.getattr("DirtyProtocolError"))
        .and_then(|cls| cls.call1((message,)));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

impl EncodeError {
    /// As a Python exception: Python's own errors as they are, the rest as
    /// DirtyProtocolError.
    pub fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            EncodeError::Python(e) => e,
            other => protocol_error(py, &other.to_string()),
        }
    }
}

impl DecodeError {
    pub fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            DecodeError::Python(e) => e,
            DecodeError::Tlv(e) => protocol_error(py, &e.to_string()),
        }
    }
}

/// A whole frame whose payload is `payload` (none for END and STATUS).
pub fn frame(kind: Kind, id: u64, payload: Option<&Bound<'_, PyAny>>) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![0u8; HEADER_LEN];
    if let Some(p) = payload {
        encode(p, &mut out)?;
    }
    let header = Header::new(kind, id, out.len() - HEADER_LEN).encode();
    out[..HEADER_LEN].copy_from_slice(&header);
    Ok(out)
}

fn public_kind(py: Python<'_>, code: u8) -> PyResult<Kind> {
    let mut b = Header::new(Kind::End, 0, 0).encode();
    b[3] = code;
    Header::parse(&b, false).map(|h| h.kind).map_err(|e| protocol_error(py, &e.to_string()))
}

/// `dirty_frame(kind, request_id, payload=None)`: a frame of one of
/// Gunicorn's message kinds, ready to send.
#[pyfunction]
#[pyo3(signature = (kind, request_id, payload=None))]
pub fn dirty_frame<'py>(
    py: Python<'py>,
    kind: u8,
    request_id: u64,
    payload: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let kind = public_kind(py, kind)?;
    let bytes = frame(kind, request_id, payload).map_err(|e| e.into_py(py))?;
    Ok(PyBytes::new(py, &bytes))
}

/// `dirty_call_frame(request_id, app_path, action, args, kwargs)`: a
/// request frame, its payload laid out as Gunicorn's client lays it out.
#[pyfunction]
pub fn dirty_call_frame<'py>(
    py: Python<'py>,
    request_id: u64,
    app_path: &Bound<'py, PyAny>,
    action: &Bound<'py, PyAny>,
    args: &Bound<'py, PyAny>,
    kwargs: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let built = (|| -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0u8; HEADER_LEN];
        let mut p = Payload { out: &mut out, start: HEADER_LEN };
        tlv::put_count(p.out, tlv::DICT, 4);
        for (key, value) in [("app_path", app_path), ("action", action), ("args", args), ("kwargs", kwargs)] {
            tlv::put_sized(p.out, tlv::STR, key.as_bytes());
            put(value, &mut p, 1)?;
        }
        let header = Header::new(Kind::Request, request_id, out.len() - HEADER_LEN).encode();
        out[..HEADER_LEN].copy_from_slice(&header);
        Ok(out)
    })();
    let bytes = built.map_err(|e| e.into_py(py))?;
    Ok(PyBytes::new(py, &bytes))
}

/// `dirty_parse_header(data) -> (kind, request_id, length)`; a header that
/// is not one of Gunicorn's raises DirtyProtocolError.
#[pyfunction]
pub fn dirty_parse_header(py: Python<'_>, data: &[u8]) -> PyResult<(u8, u64, usize)> {
    let b: &[u8; HEADER_LEN] = data
        .get(..HEADER_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| protocol_error(py, &format!("Header too short: {} bytes, expected {HEADER_LEN}", data.len())))?;
    let h = Header::parse(b, false).map_err(|e: FrameError| protocol_error(py, &e.to_string()))?;
    Ok((h.kind.code(), h.id, h.len))
}

/// `dirty_decode(payload)`: a TLV payload as a Python object.
#[pyfunction]
pub fn dirty_decode<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    decode(py, data).map_err(|e| e.into_py(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(dirty_frame, m)?)?;
    m.add_function(wrap_pyfunction!(dirty_call_frame, m)?)?;
    m.add_function(wrap_pyfunction!(dirty_parse_header, m)?)?;
    m.add_function(wrap_pyfunction!(dirty_decode, m)?)?;
    Ok(())
}
