//! The value of one atom for one request: Gunicorn's `atoms()` entry,
//! looked up through `SafeAtoms`.

use std::io::Write as _;

use super::super::clock;
use super::atom::Atom;
use super::pyformat::Value;
use super::record::{AccessRecord, EnvValue, Text};
use super::user::basic_auth_user;

const DASH: &[Text<'static>] = &[Text::Str("-")];

/// Calls `f` with the atom's value; `Err` carries the exception Gunicorn's
/// `atoms()` would raise.
pub(crate) fn with_value<R>(atom: &Atom, rec: &AccessRecord<'_>, f: impl FnOnce(&Value<'_>) -> R) -> Result<R, String> {
    let timing = Timing::of(rec.request_time);
    let mut scratch = Vec::new();
    let value = match atom {
        Atom::RemoteAddr => or_dash(rec.remote_addr, f),
        Atom::Referer => or_dash(rec.referer, f),
        Atom::UserAgent => or_dash(rec.user_agent, f),
        Atom::Ident | Atom::Missing => f(&Value::Str(DASH)),
        Atom::User => {
            let user = basic_auth_user(rec.authorization);
            match user.as_deref() {
                Some(name) if !name.is_empty() => f(&Value::Str(&[Text::Str(name)])),
                _ => f(&Value::Str(DASH)),
            }
        }
        Atom::Time => {
            clock::append_clf_stamp(rec.time, &mut scratch);
            f(&Value::Str(&[Text::Latin1(&scratch)]))
        }
        Atom::RequestLine => {
            // Gunicorn indexes environ directly here, so a missing key is a
            // KeyError and no line is logged.
            let missing = |key: &str| format!("KeyError: '{key}'");
            let method = rec.method.ok_or_else(|| missing("REQUEST_METHOD"))?;
            let uri = rec.raw_uri.ok_or_else(|| missing("RAW_URI"))?;
            let protocol = rec.protocol.ok_or_else(|| missing("SERVER_PROTOCOL"))?;
            f(&Value::Str(&[method, Text::Str(" "), uri, Text::Str(" "), protocol]))
        }
        Atom::Status => {
            let token = first_token(rec.status).ok_or_else(|| "IndexError: list index out of range".to_owned())?;
            f(&Value::Str(&[token]))
        }
        Atom::Method => or_none(rec.method, f),
        Atom::PathInfo => or_none(rec.path_info, f),
        Atom::Query => or_none(rec.query, f),
        Atom::Protocol => or_none(rec.protocol, f),
        Atom::SentText => {
            let _ = write!(scratch, "{}", rec.sent);
            f(&Value::Str(&[Text::Latin1(&scratch)]))
        }
        Atom::SentInt => f(&Value::Int(i128::from(rec.sent))),
        Atom::Seconds => f(&Value::Int(i128::from(timing.seconds))),
        Atom::Micros => f(&Value::Int(i128::from(timing.seconds) * 1_000_000 + i128::from(timing.micros))),
        Atom::Millis => f(&Value::Int(i128::from(timing.seconds) * 1000 + i128::from(timing.micros / 1000))),
        Atom::DecimalSeconds => {
            let _ = write!(scratch, "{}.{:06}", timing.seconds, timing.micros);
            f(&Value::Str(&[Text::Latin1(&scratch)]))
        }
        Atom::Pid => {
            let _ = write!(scratch, "<{}>", rec.pid);
            f(&Value::Str(&[Text::Latin1(&scratch)]))
        }
        Atom::RequestHeader(name) => or_dash(rec.request_headers.get_last(name), f),
        Atom::ResponseHeader(name) => or_dash(rec.response_headers.get_last(name), f),
        Atom::Environ(name) => match rec.environ.lookup(name) {
            None => f(&Value::Str(DASH)),
            Some(EnvValue::Str(t)) => f(&Value::Str(&[t])),
            Some(EnvValue::Int(v)) => f(&Value::Int(v)),
            Some(EnvValue::Bool(b)) => f(&Value::Bool(b)),
            Some(EnvValue::None) => f(&Value::None),
            Some(EnvValue::Other { text, type_name }) => f(&Value::Other { text, type_name }),
        },
    };
    Ok(value)
}

fn or_dash<R>(text: Option<Text<'_>>, f: impl FnOnce(&Value<'_>) -> R) -> R {
    match text {
        Some(t) => f(&Value::Str(&[t])),
        None => f(&Value::Str(DASH)),
    }
}

fn or_none<R>(text: Option<Text<'_>>, f: impl FnOnce(&Value<'_>) -> R) -> R {
    match text {
        Some(t) => f(&Value::Str(&[t])),
        None => f(&Value::None),
    }
}

/// `request_time` is a `timedelta` in Gunicorn and the atoms read its
/// `.seconds` and `.microseconds` fields, which leave out whole days.
struct Timing {
    seconds: u64,
    micros: u32,
}

impl Timing {
    fn of(d: std::time::Duration) -> Timing {
        Timing { seconds: d.as_secs() % 86_400, micros: d.subsec_micros() }
    }
}

/// Python's `str.isspace()`: Rust's White_Space plus the four ASCII
/// information separators.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// `status.split(None, 1)[0]`; `None` where that raises IndexError.
fn first_token(status: Text<'_>) -> Option<Text<'_>> {
    match status {
        Text::Str(s) => {
            let s = s.trim_start_matches(is_py_space);
            let end = s.find(is_py_space).unwrap_or(s.len());
            s.get(..end).filter(|t| !t.is_empty()).map(Text::Str)
        }
        Text::Latin1(b) => {
            let space = |c: &u8| is_py_space(char::from(*c));
            let start = b.iter().position(|c| !space(c))?;
            let rest = b.get(start..)?;
            let end = rest.iter().position(space).unwrap_or(rest.len());
            rest.get(..end).map(Text::Latin1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_token_like_python_split() {
        assert_eq!(first_token(Text::Str("200 OK")), Some(Text::Str("200")));
        assert_eq!(first_token(Text::Str("  404\x1cNot Found")), Some(Text::Str("404")));
        assert_eq!(first_token(Text::Str("500")), Some(Text::Str("500")));
        assert_eq!(first_token(Text::Str(" \t")), None);
        assert_eq!(first_token(Text::Latin1(b"\xa0201\x85Created")), Some(Text::Latin1(b"201")));
        assert_eq!(first_token(Text::Latin1(b"")), None);
    }

    #[test]
    fn timing_drops_days_like_timedelta_seconds() {
        let t = Timing::of(std::time::Duration::new(86_400 + 5, 123_456_789));
        assert_eq!((t.seconds, t.micros), (5, 123_456));
    }
}
