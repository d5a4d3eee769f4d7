//! Gunicorn 27's control protocol (`gunicorn/ctl/protocol.py`), sans I/O:
//! each message is a 4-byte big-endian length and that many bytes of JSON.
//! Requests are `{"id", "command", "args"}`; answers `{"id", "status":
//! "ok", "data"}` or `{"id", "status": "error", "error"}`.

use serde_json::{Map, Value};
use std::fmt;

/// The largest message accepted. Gunicorn allows 16 MiB; a command is a
/// few dozen bytes, and the master keeps what a client sends in memory, so
/// ferrocorn stops at 1 MiB.
pub const MAX_MESSAGE: usize = 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    TooLarge(usize),
    Json(String),
    /// Valid JSON that is not an object (Gunicorn drops the client too).
    NotAnObject,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "Message too large: {n}"),
            FrameError::Json(e) => write!(f, "Invalid JSON: {e}"),
            FrameError::NotAnObject => write!(f, "a request must be a JSON object"),
        }
    }
}

/// One request, as Gunicorn's server reads it.
#[derive(Debug, PartialEq)]
pub struct Request {
    /// Echoed in the answer whatever it is (`message.get("id", 0)`).
    pub id: Value,
    pub command: Result<String, String>,
    /// `args`, each as Python's `str()` would show it.
    pub args: Result<Vec<String>, String>,
}

/// Whether `buf` starts with a whole message (or an oversized length,
/// which `take_message` refuses at once).
pub fn message_ready(buf: &[u8]) -> bool {
    match buf.get(..4) {
        Some(l) => {
            let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
            len > MAX_MESSAGE || buf.len() >= 4 + len
        }
        None => false,
    }
}

/// Takes one complete message off the front of `buf`; Ok(None) while it is
/// incomplete.
pub fn take_message(buf: &mut Vec<u8>) -> Result<Option<Request>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_MESSAGE {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let parsed = serde_json::from_slice::<Value>(&buf[4..4 + len]);
    buf.drain(..4 + len);
    match parsed {
        Ok(Value::Object(map)) => Ok(Some(request(map))),
        Ok(_) => Err(FrameError::NotAnObject),
        Err(e) => Err(FrameError::Json(e.to_string())),
    }
}

fn request(mut map: Map<String, Value>) -> Request {
    let id = map.remove("id").unwrap_or(Value::from(0));
    let command = match map.remove("command") {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.trim().to_owned()),
        Some(other) => Err(format!("command must be a string, not {}", kind(&other))),
    };
    let args = match map.remove("args") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.iter().map(python_str).collect()),
        Some(other) => Err(format!("args must be a list, not {}", kind(&other))),
    };
    Request { id, command, args }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Python's `str()` of a JSON value, as Gunicorn joins args to a command.
fn python_str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 && f.abs() < 1e16 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        other => other.to_string(),
    }
}

pub fn encode(message: &Value) -> Vec<u8> {
    let payload = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

pub fn ok(id: &Value, data: Value) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), id.clone());
    m.insert("status".into(), "ok".into());
    m.insert("data".into(), data);
    Value::Object(m)
}

pub fn error(id: &Value, message: &str) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), id.clone());
    m.insert("status".into(), "error".into());
    m.insert("error".into(), message.into());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(v: &Value) -> Vec<u8> {
        encode(v)
    }

    #[test]
    fn frames_round_trip_and_wait_for_whole_messages() {
        let bytes = frame(&json!({"id": 7, "command": " show workers ", "args": [2, "x", 1.0, true, null]}));
        assert_eq!(&bytes[..4], &((bytes.len() - 4) as u32).to_be_bytes());
        let mut buf = bytes[..3].to_vec();
        assert_eq!(take_message(&mut buf), Ok(None));
        buf = bytes[..bytes.len() - 1].to_vec();
        assert_eq!(take_message(&mut buf), Ok(None));
        buf = bytes.clone();
        buf.extend_from_slice(&frame(&json!({"command": "help"})));
        let first = take_message(&mut buf).expect("valid").expect("complete");
        assert_eq!(first.id, json!(7));
        assert_eq!(first.command, Ok("show workers".to_owned()));
        assert_eq!(first.args, Ok(vec!["2".into(), "x".into(), "1.0".into(), "True".into(), "None".into()]));
        let second = take_message(&mut buf).expect("valid").expect("complete");
        assert_eq!(second.id, json!(0));
        assert_eq!(second.args, Ok(vec![]));
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_what_gunicorn_refuses() {
        let mut big = ((MAX_MESSAGE + 1) as u32).to_be_bytes().to_vec();
        assert_eq!(take_message(&mut big), Err(FrameError::TooLarge(MAX_MESSAGE + 1)));
        let mut bad = vec![0, 0, 0, 1, b'{'];
        assert!(matches!(take_message(&mut bad), Err(FrameError::Json(_))));
        let mut list = frame(&json!([1, 2]));
        assert_eq!(take_message(&mut list), Err(FrameError::NotAnObject));
        let mut odd = frame(&json!({"command": 3, "args": "x"}));
        let r = take_message(&mut odd).expect("valid").expect("complete");
        assert!(r.command.is_err() && r.args.is_err());
    }

    #[test]
    fn answers() {
        assert_eq!(ok(&json!(3), json!({"a": 1})), json!({"id": 3, "status": "ok", "data": {"a": 1}}));
        assert_eq!(error(&json!("x"), "bad"), json!({"id": "x", "status": "error", "error": "bad"}));
        // keys in Gunicorn's order
        let text = String::from_utf8(encode(&ok(&json!(1), json!({})))[4..].to_vec()).expect("utf8");
        assert_eq!(text, r#"{"id":1,"status":"ok","data":{}}"#);
    }
}
