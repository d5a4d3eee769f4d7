//! The `u` atom: Gunicorn's `Logger._get_user`, the user name of a Basic
//! `Authorization` header.

use super::base64::decode_lenient;
use super::record::Text;

/// `None` wherever `_get_user` returns None (no header, not Basic, no
/// space, undecodable base64, non-UTF-8 name); the caller prints "-" for
/// that and for an empty name.
pub fn basic_auth_user(authorization: Option<Text<'_>>) -> Option<String> {
    let (scheme_ok, credentials) = match authorization? {
        Text::Str(s) => (starts_with_basic(s.as_bytes()), s.split_once(' ').map(|(_, c)| c.as_bytes())),
        Text::Latin1(b) => (starts_with_basic(b), b.iter().position(|&c| c == b' ').and_then(|i| b.get(i + 1..))),
    };
    if !scheme_ok {
        return None;
    }
    // Gunicorn strips and UTF-8-encodes the credentials first; neither
    // changes the result, since whitespace and non-ASCII bytes are outside
    // the base64 alphabet and the lenient decoder skips them.
    let decoded = decode_lenient(credentials?)?;
    let name = decoded.split(|&c| c == b':').next().unwrap_or(&[]);
    String::from_utf8(name.to_vec()).ok()
}

/// `http_auth.lower().startswith('basic')`: no non-ASCII character
/// lower-cases onto these five letters, so an ASCII comparison is exact.
fn starts_with_basic(value: &[u8]) -> bool {
    value.get(..5).is_some_and(|p| p.eq_ignore_ascii_case(b"basic"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(h: &str) -> Option<String> {
        basic_auth_user(Some(Text::Str(h)))
    }

    // Expectations from Gunicorn's `Logger._get_user({'HTTP_AUTHORIZATION': h})`
    // run in /tmp/gvenv/bin/python.
    #[test]
    fn matches_gunicorn_get_user() {
        assert_eq!(user("Basic dXNlcjpwYXNz").as_deref(), Some("user"));
        assert_eq!(user("basic dXNlcjpwYXNz").as_deref(), Some("user"));
        assert_eq!(user("BASICX dXNlcjpwYXNz").as_deref(), Some("user"));
        assert_eq!(user("Basic  dXNlcjpwYXNz ").as_deref(), Some("user"));
        assert_eq!(user("Basic dXNlcg==").as_deref(), Some("user"));
        assert_eq!(user("Basic OnBhc3M=").as_deref(), Some(""));
        assert_eq!(user("Basic w6l0w6k6eA==").as_deref(), Some("été"));
        assert_eq!(user("Basic /w==").as_deref(), None);
        assert_eq!(user("Basic Zg=").as_deref(), None);
        assert_eq!(user("Basic"), None);
        assert_eq!(user("Bearer dXNlcjpwYXNz"), None);
        assert_eq!(user(""), None);
        assert_eq!(basic_auth_user(None), None);
        assert_eq!(basic_auth_user(Some(Text::Latin1(b"Basic \xe9dXNlcjpwYXNz"))).as_deref(), Some("user"));
    }
}
