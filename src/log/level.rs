//! Error-log severity, named as Gunicorn's `--log-level` names them.

use std::fmt;
use std::str::FromStr;

/// Ordered from most to least verbose so `level >= threshold` filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Level {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
    Critical = 50,
}

impl Level {
    /// The name Python's `logging` prints in `%(levelname)s`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    /// OpenTelemetry's `SeverityNumber` for the level (the JSON error log).
    pub const fn otel_severity(self) -> u8 {
        match self {
            Level::Debug => 5,
            Level::Info => 9,
            Level::Warning => 13,
            Level::Error => 17,
            Level::Critical => 21,
        }
    }

    /// Exact lookup of a `--log-level` name, ignoring case.
    pub fn from_name(name: &str) -> Option<Level> {
        const NAMES: [(&str, Level); 5] = [
            ("critical", Level::Critical),
            ("error", Level::Error),
            ("warning", Level::Warning),
            ("info", Level::Info),
            ("debug", Level::Debug),
        ];
        NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|&(_, level)| level)
    }

    /// Gunicorn's `LOG_LEVELS.get(name.lower(), logging.INFO)`: a name it
    /// does not know silently means info, so a drop-in must accept it too.
    /// The flag says whether the name was known, for a settings layer that
    /// wants to warn.
    pub fn from_name_lenient(name: &str) -> (Level, bool) {
        match Level::from_name(name) {
            Some(level) => (level, true),
            None => (Level::Info, false),
        }
    }

    pub(crate) const fn from_u8(v: u8) -> Level {
        match v {
            0..=10 => Level::Debug,
            11..=20 => Level::Info,
            21..=30 => Level::Warning,
            31..=40 => Level::Error,
            _ => Level::Critical,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned by the strict parse; Gunicorn's lenient behaviour is
/// [`Level::from_name_lenient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownLevel(pub String);

impl fmt::Display for UnknownLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown log level {:?} (expected debug, info, warning, error or critical)", self.0)
    }
}

impl std::error::Error for UnknownLevel {}

impl FromStr for Level {
    type Err = UnknownLevel;

    fn from_str(s: &str) -> Result<Level, UnknownLevel> {
        Level::from_name(s).ok_or_else(|| UnknownLevel(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!("DEBUG".parse::<Level>(), Ok(Level::Debug));
        assert_eq!("Warning".parse::<Level>(), Ok(Level::Warning));
        assert_eq!("critical".parse::<Level>(), Ok(Level::Critical));
        assert!("warn".parse::<Level>().is_err());
    }

    #[test]
    fn lenient_maps_unknown_to_info() {
        assert_eq!(Level::from_name_lenient("ERROR"), (Level::Error, true));
        assert_eq!(Level::from_name_lenient("verbose"), (Level::Info, false));
        assert_eq!(Level::from_name_lenient(""), (Level::Info, false));
    }

    #[test]
    fn ordering_filters_like_logging() {
        assert!(Level::Critical > Level::Error);
        assert!(Level::Info > Level::Debug);
        for l in [Level::Debug, Level::Info, Level::Warning, Level::Error, Level::Critical] {
            assert_eq!(Level::from_u8(l as u8), l);
        }
    }
}
