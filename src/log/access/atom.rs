//! The names a `%(name)s` key can refer to, resolved once at parse time
//! with `SafeAtoms.__getitem__`'s rules.

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Atom {
    /// h
    RemoteAddr,
    /// l
    Ident,
    /// u
    User,
    /// t
    Time,
    /// r
    RequestLine,
    /// s
    Status,
    /// m
    Method,
    /// U
    PathInfo,
    /// q
    Query,
    /// H
    Protocol,
    /// b
    SentText,
    /// B
    SentInt,
    /// f
    Referer,
    /// a
    UserAgent,
    /// T
    Seconds,
    /// D
    Micros,
    /// M
    Millis,
    /// L
    DecimalSeconds,
    /// p
    Pid,
    /// `{name}i`, name lower-cased.
    RequestHeader(String),
    /// `{name}o`, name lower-cased.
    ResponseHeader(String),
    /// `{name}e`, name lower-cased.
    Environ(String),
    /// Any other key: SafeAtoms answers "-".
    Missing,
}

impl Atom {
    /// Plain keys match exactly (`h` and `H` differ); keys starting with
    /// `{` are lower-cased whole, suffix included, so `{Host}I` works.
    pub(crate) fn from_key(key: &str) -> Atom {
        match key {
            "h" => Atom::RemoteAddr,
            "l" => Atom::Ident,
            "u" => Atom::User,
            "t" => Atom::Time,
            "r" => Atom::RequestLine,
            "s" => Atom::Status,
            "m" => Atom::Method,
            "U" => Atom::PathInfo,
            "q" => Atom::Query,
            "H" => Atom::Protocol,
            "b" => Atom::SentText,
            "B" => Atom::SentInt,
            "f" => Atom::Referer,
            "a" => Atom::UserAgent,
            "T" => Atom::Seconds,
            "D" => Atom::Micros,
            "M" => Atom::Millis,
            "L" => Atom::DecimalSeconds,
            "p" => Atom::Pid,
            _ if key.starts_with('{') => Atom::braced(&key.to_lowercase()),
            _ => Atom::Missing,
        }
    }

    fn braced(lower: &str) -> Atom {
        let inner = |suffix: &str| lower.strip_prefix('{').and_then(|k| k.strip_suffix(suffix));
        if let Some(name) = inner("}i") {
            Atom::RequestHeader(name.to_owned())
        } else if let Some(name) = inner("}o") {
            Atom::ResponseHeader(name.to_owned())
        } else if let Some(name) = inner("}e") {
            Atom::Environ(name.to_owned())
        } else {
            Atom::Missing
        }
    }

    /// What Python type the atom has, when that is fixed.
    pub(crate) fn static_type(&self) -> StaticType {
        match self {
            Atom::SentInt | Atom::Seconds | Atom::Micros | Atom::Millis => StaticType::Int,
            Atom::Environ(_) => StaticType::Unknown,
            // m, U, q, H are None rather than str when the app deleted the
            // key; neither is a number.
            Atom::Method | Atom::PathInfo | Atom::Query | Atom::Protocol => StaticType::StrOrNone,
            _ => StaticType::Str,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StaticType {
    Str,
    StrOrNone,
    Int,
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_atoms_key_rules() {
        assert_eq!(Atom::from_key("h"), Atom::RemoteAddr);
        assert_eq!(Atom::from_key("H"), Atom::Protocol);
        assert_eq!(Atom::from_key("x"), Atom::Missing);
        assert_eq!(Atom::from_key(""), Atom::Missing);
        assert_eq!(Atom::from_key("{X-Forwarded-For}i"), Atom::RequestHeader("x-forwarded-for".into()));
        assert_eq!(Atom::from_key("{Host}I"), Atom::RequestHeader("host".into()));
        assert_eq!(Atom::from_key("{content-type}O"), Atom::ResponseHeader("content-type".into()));
        assert_eq!(Atom::from_key("{REMOTE_ADDR}e"), Atom::Environ("remote_addr".into()));
        assert_eq!(Atom::from_key("{}i"), Atom::RequestHeader(String::new()));
        assert_eq!(Atom::from_key("{host}x"), Atom::Missing);
        assert_eq!(Atom::from_key("{host"), Atom::Missing);
        assert_eq!(Atom::from_key("host}i"), Atom::Missing);
    }
}
