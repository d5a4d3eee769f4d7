//! The dirty protocol's payloads: Gunicorn 27's TLV encoding (`dirty/tlv.py`).
//! A value is a type byte, then: nothing (None), one byte (bool), eight
//! (int64, float64, big-endian), a u32 length and the bytes (bytes, UTF-8
//! str), or a u32 count and that many values (list) or key/value pairs with
//! str keys (dict).
//!
//! [`Reader`] is the one tokenizer: it yields one value's head at a time,
//! with every bound checked, and the three consumers walk it: [`decode`]
//! builds a [`Value`], [`validate`] only checks (the arbiter checks a call's
//! arguments without copying them), and `wire::py` builds Python objects.

use std::fmt;

pub const NONE: u8 = 0x00;
pub const BOOL: u8 = 0x01;
pub const INT: u8 = 0x05;
pub const FLOAT: u8 = 0x06;
pub const BYTES: u8 = 0x10;
pub const STR: u8 = 0x11;
pub const LIST: u8 = 0x20;
pub const DICT: u8 = 0x21;

/// Gunicorn's bounds: 64 MiB for one bytes or str, a million items for one
/// list or dict.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
pub const MAX_ITEMS: usize = 1024 * 1024;
/// Nesting deeper than this is refused (Gunicorn's recursive codec stops at
/// Python's recursion limit; a Rust one must stop before its stack does).
pub const MAX_DEPTH: usize = 200;

/// Why bytes are not a TLV value; the texts follow Gunicorn's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlvError {
    /// The data ended inside a value (what was being read).
    Truncated(&'static str),
    BytesTooLarge(usize),
    StrTooLarge(usize),
    ListTooLarge(usize),
    DictTooLarge(usize),
    InvalidUtf8,
    /// A dict key that is not a str (the type byte found).
    KeyNotStr(u8),
    UnknownType(u8),
    /// Bytes left over after one whole value.
    Trailing(usize),
    TooDeep,
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlvError::Truncated(what) => write!(f, "Truncated TLV data: {what}"),
            TlvError::BytesTooLarge(n) => write!(f, "Bytes too large: {n} bytes (max: {MAX_BYTES})"),
            TlvError::StrTooLarge(n) => write!(f, "String too large: {n} bytes (max: {MAX_BYTES})"),
            TlvError::ListTooLarge(n) => write!(f, "List too large: {n} items (max: {MAX_ITEMS})"),
            TlvError::DictTooLarge(n) => write!(f, "Dict too large: {n} items (max: {MAX_ITEMS})"),
            TlvError::InvalidUtf8 => f.write_str("Invalid UTF-8 in string"),
            TlvError::KeyNotStr(t) => write!(f, "Dict key must be string, got {}", type_name(*t)),
            TlvError::UnknownType(t) => write!(f, "Unknown TLV type code: 0x{t:02x}"),
            TlvError::Trailing(n) => write!(f, "Trailing data after TLV: {n} bytes"),
            TlvError::TooDeep => write!(f, "TLV data nested deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl std::error::Error for TlvError {}

/// Python's name for what a type byte decodes to.
fn type_name(t: u8) -> &'static str {
    match t {
        NONE => "NoneType",
        BOOL => "bool",
        INT => "int",
        FLOAT => "float",
        BYTES => "bytes",
        LIST => "list",
        DICT => "dict",
        _ => "str",
    }
}

/// One value's head, borrowed from the data: scalars whole, containers by
/// their item count (the items follow).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(&'a [u8]),
    Str(&'a str),
    List(usize),
    Dict(usize),
}

pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TlvError> {
        if self.remaining() < n {
            return Err(TlvError::Truncated(what));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], TlvError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// The next value's head.
    pub fn item(&mut self) -> Result<Item<'a>, TlvError> {
        let [tag] = self.array::<1>("no type byte")?;
        Ok(match tag {
            NONE => Item::None,
            BOOL => Item::Bool(self.array::<1>("missing bool value")?[0] != 0),
            INT => Item::Int(i64::from_be_bytes(self.array("incomplete int64")?)),
            FLOAT => Item::Float(f64::from_be_bytes(self.array("incomplete float64")?)),
            BYTES => {
                let n = u32::from_be_bytes(self.array("incomplete bytes length")?) as usize;
                if n > MAX_BYTES {
                    return Err(TlvError::BytesTooLarge(n));
                }
                Item::Bytes(self.take(n, "bytes shorter than their length")?)
            }
            STR => {
                let n = u32::from_be_bytes(self.array("incomplete string length")?) as usize;
                if n > MAX_BYTES {
                    return Err(TlvError::StrTooLarge(n));
                }
                let raw = self.take(n, "string shorter than its length")?;
                Item::Str(std::str::from_utf8(raw).map_err(|_| TlvError::InvalidUtf8)?)
            }
            LIST => {
                let n = u32::from_be_bytes(self.array("incomplete list count")?) as usize;
                if n > MAX_ITEMS {
                    return Err(TlvError::ListTooLarge(n));
                }
                Item::List(n)
            }
            DICT => {
                let n = u32::from_be_bytes(self.array("incomplete dict count")?) as usize;
                if n > MAX_ITEMS {
                    return Err(TlvError::DictTooLarge(n));
                }
                Item::Dict(n)
            }
            other => return Err(TlvError::UnknownType(other)),
        })
    }

    /// A dict key: a str, nothing else.
    pub fn key(&mut self) -> Result<&'a str, TlvError> {
        let tag = self.data.get(self.pos).copied();
        match self.item()? {
            Item::Str(s) => Ok(s),
            _ => Err(TlvError::KeyNotStr(tag.unwrap_or(NONE))),
        }
    }

    /// Skips one whole value, checking it as [`decode`] would.
    pub fn skip(&mut self, depth: usize) -> Result<(), TlvError> {
        if depth > MAX_DEPTH {
            return Err(TlvError::TooDeep);
        }
        match self.item()? {
            Item::List(n) => {
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
            }
            Item::Dict(n) => {
                for _ in 0..n {
                    self.key()?;
                    self.skip(depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// After the one value a payload holds: nothing may follow.
    pub fn finish(&self) -> Result<(), TlvError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(TlvError::Trailing(n)),
        }
    }
}

/// A payload as Rust sees it (what the arbiter reads and writes itself:
/// its errors, status and management answers).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    List(Vec<Value>),
    /// In the order sent (Python dicts keep it).
    Dict(Vec<(String, Value)>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// A dict from (key, value) pairs.
    pub fn dict<const N: usize>(pairs: [(&str, Value); N]) -> Value {
        Value::Dict(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// The value of `key` in a dict (the last one, as a Python dict keeps).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(pairs) => pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// Appends the encoding. Values made by ferrocorn itself are far below
    /// the size limits, which are checked where outside data is encoded.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::None => out.push(NONE),
            Value::Bool(b) => out.extend_from_slice(&[BOOL, u8::from(*b)]),
            Value::Int(n) => {
                out.push(INT);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Value::Float(x) => {
                out.push(FLOAT);
                out.extend_from_slice(&x.to_be_bytes());
            }
            Value::Bytes(b) => put_sized(out, BYTES, b),
            Value::Str(s) => put_sized(out, STR, s.as_bytes()),
            Value::List(items) => {
                put_count(out, LIST, items.len());
                for item in items {
                    item.encode_into(out);
                }
            }
            Value::Dict(pairs) => {
                put_count(out, DICT, pairs.len());
                for (k, v) in pairs {
                    put_sized(out, STR, k.as_bytes());
                    v.encode_into(out);
                }
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// A type byte, a u32 length and the bytes.
pub fn put_sized(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    put_count(out, tag, bytes.len());
    out.extend_from_slice(bytes);
}

/// A type byte and a u32 count (or length).
pub fn put_count(out: &mut Vec<u8>, tag: u8, n: usize) {
    out.push(tag);
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

/// One whole payload as a [`Value`].
pub fn decode(data: &[u8]) -> Result<Value, TlvError> {
    let mut r = Reader::new(data);
    let v = value(&mut r, 0)?;
    r.finish()?;
    Ok(v)
}

fn value(r: &mut Reader<'_>, depth: usize) -> Result<Value, TlvError> {
    if depth > MAX_DEPTH {
        return Err(TlvError::TooDeep);
    }
    Ok(match r.item()? {
        Item::None => Value::None,
        Item::Bool(b) => Value::Bool(b),
        Item::Int(n) => Value::Int(n),
        Item::Float(x) => Value::Float(x),
        Item::Bytes(b) => Value::Bytes(b.to_vec()),
        Item::Str(s) => Value::Str(s.to_owned()),
        Item::List(n) => {
            // The count is only a claim: reserve what the data can hold.
            let mut items = Vec::with_capacity(n.min(r.remaining()));
            for _ in 0..n {
                items.push(value(r, depth + 1)?);
            }
            Value::List(items)
        }
        Item::Dict(n) => {
            let mut pairs = Vec::with_capacity(n.min(r.remaining() / 2));
            for _ in 0..n {
                let k = r.key()?.to_owned();
                pairs.push((k, value(r, depth + 1)?));
            }
            Value::Dict(pairs)
        }
    })
}

/// Checks a whole payload without building anything.
pub fn validate(data: &[u8]) -> Result<(), TlvError> {
    let mut r = Reader::new(data);
    r.skip(0)?;
    r.finish()
}

/// What the arbiter needs of a call's payload (`{"app_path", "action",
/// "args", "kwargs"}`), read without copying the arguments: the payload is
/// checked whole on the way, and the str fields are borrowed.
#[derive(Debug, Default, PartialEq)]
pub struct CallFields<'a> {
    /// `None` when absent or not a str.
    pub app_path: Option<&'a str>,
    pub action: Option<&'a str>,
}

/// Reads a request payload: a dict (anything else is refused, as Gunicorn
/// refuses a message that is not one), checked through.
pub fn call_fields(data: &[u8]) -> Result<CallFields<'_>, CallError> {
    let mut r = Reader::new(data);
    let n = match r.item()? {
        Item::Dict(n) => n,
        _ => return Err(CallError::NotADict),
    };
    let mut out = CallFields::default();
    for _ in 0..n {
        let key = r.key()?;
        let field = match key {
            "app_path" => Some(&mut out.app_path),
            "action" => Some(&mut out.action),
            _ => None,
        };
        match field {
            Some(slot) => {
                let before = r.pos;
                *slot = match r.item()? {
                    Item::Str(s) => Some(s),
                    _ => {
                        r.pos = before;
                        r.skip(1)?;
                        None
                    }
                };
            }
            None => r.skip(1)?,
        }
    }
    r.finish()?;
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    Tlv(TlvError),
    NotADict,
}

impl From<TlvError> for CallError {
    fn from(e: TlvError) -> Self {
        CallError::Tlv(e)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Tlv(e) => e.fmt(f),
            CallError::NotADict => f.write_str("Message payload is not a dict"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        Value::Dict(vec![
            ("app_path".into(), Value::str("m:App")),
            ("action".into(), Value::str("run")),
            (
                "args".into(),
                Value::List(vec![
                    Value::None,
                    Value::Bool(true),
                    Value::Int(-3),
                    Value::Float(0.5),
                    Value::Bytes(vec![0, 255]),
                    Value::str("é"),
                ]),
            ),
            ("kwargs".into(), Value::Dict(vec![])),
        ])
    }

    #[test]
    fn round_trip() {
        let v = sample();
        let bytes = v.encode();
        assert_eq!(decode(&bytes), Ok(v));
        assert_eq!(validate(&bytes), Ok(()));
        let f = call_fields(&bytes).expect("fields");
        assert_eq!((f.app_path, f.action), (Some("m:App"), Some("run")));
    }

    #[test]
    fn encodes_as_gunicorn_does() {
        // TLVEncoder.encode({"a": [1, None, True]}) in Gunicorn 27.
        let v = Value::dict([("a", Value::List(vec![Value::Int(1), Value::None, Value::Bool(true)]))]);
        assert_eq!(
            v.encode(),
            b"\x21\x00\x00\x00\x01\x11\x00\x00\x00\x01a\x20\x00\x00\x00\x03\x05\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\x01"
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
            assert!(validate(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(decode(b"\x07"), Err(TlvError::UnknownType(7)));
        assert_eq!(decode(b"\x00\x00"), Err(TlvError::Trailing(1)));
        assert_eq!(decode(b"\x11\x00\x00\x00\x01\xff"), Err(TlvError::InvalidUtf8));
        assert_eq!(decode(b"\x21\x00\x00\x00\x01\x05\0\0\0\0\0\0\0\x01\x00"), Err(TlvError::KeyNotStr(INT)));
        assert_eq!(decode(b"\x20\x00\x10\x00\x01"), Err(TlvError::ListTooLarge(MAX_ITEMS + 1)));
        assert_eq!(decode(b"\x10\x04\x00\x00\x01"), Err(TlvError::BytesTooLarge(MAX_BYTES + 1)));
        // A huge count with no items behind it allocates nothing.
        assert_eq!(decode(b"\x20\x00\x10\x00\x00"), Err(TlvError::Truncated("no type byte")));
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH + 1 {
            deep.extend_from_slice(b"\x20\x00\x00\x00\x01");
        }
        deep.push(NONE);
        assert_eq!(decode(&deep), Err(TlvError::TooDeep));
        assert_eq!(validate(&deep), Err(TlvError::TooDeep));
    }

    #[test]
    fn call_fields_of_odd_payloads() {
        assert_eq!(call_fields(&Value::List(vec![]).encode()), Err(CallError::NotADict));
        let odd = Value::dict([("app_path", Value::Int(1)), ("action", Value::str("x"))]).encode();
        assert_eq!(call_fields(&odd), Ok(CallFields { app_path: None, action: Some("x") }));
        let bad_args = b"\x21\x00\x00\x00\x01\x11\x00\x00\x00\x04args\x20\x00\x00\x00\x01\x11\x00\x00\x00\x01\xff";
        assert_eq!(call_fields(bad_args), Err(CallError::Tlv(TlvError::InvalidUtf8)));
    }
}
