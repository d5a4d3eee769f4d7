//! `dirty_apps` entries: `module.path:ClassName`, or `module.path:ClassName:N`
//! for an app only N workers load (Gunicorn's `parse_dirty_app_spec`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// `module.path:ClassName`: what callers name in `execute()`.
    pub import_path: String,
    /// The `:N` of the entry; when absent the class's `workers` attribute
    /// decides (read when the dirty arbiter starts), else every worker.
    pub workers: Option<usize>,
}

/// The most apps one server loads (each is a bit in a worker's app set).
pub const MAX_APPS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    Format(String),
    Count { spec: String, count: String },
    Zero { spec: String, count: i64 },
    TooMany(usize),
    Twice(String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Format(spec) => write!(
                f,
                "Invalid import path format: {spec}. Expected 'module.path:ClassName' or 'module.path:ClassName:N'"
            ),
            SpecError::Count { spec, count } => {
                write!(f, "Invalid worker count in spec: {spec}. Expected integer, got '{count}'")
            }
            SpecError::Zero { spec, count } => {
                write!(f, "Invalid worker count in spec: {spec}. Worker count must be >= 1, got {count}")
            }
            SpecError::TooMany(n) => write!(f, "{n} dirty apps: ferrocorn loads at most {MAX_APPS}"),
            SpecError::Twice(path) => write!(f, "dirty app {path} is listed twice"),
        }
    }
}

impl AppSpec {
    pub fn parse(spec: &str) -> Result<AppSpec, SpecError> {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.as_slice() {
            [_, _] => Ok(AppSpec { import_path: spec.to_owned(), workers: None }),
            [module, class, count] => {
                // Python's int(): surrounding whitespace and underscores
                // between digits are allowed.
                let digits: String = count.trim().chars().filter(|c| *c != '_').collect();
                let n: i64 =
                    digits.parse().map_err(|_| SpecError::Count { spec: spec.into(), count: (*count).into() })?;
                if n < 1 {
                    return Err(SpecError::Zero { spec: spec.into(), count: n });
                }
                let workers = usize::try_from(n).ok();
                Ok(AppSpec { import_path: format!("{module}:{class}"), workers })
            }
            _ => Err(SpecError::Format(spec.to_owned())),
        }
    }

    /// Every entry of `dirty_apps`, in order. Gunicorn keys its specs by
    /// import path, so a path listed twice would silently keep the last;
    /// that is refused here.
    pub fn parse_all(specs: &[String]) -> Result<Vec<AppSpec>, SpecError> {
        if specs.len() > MAX_APPS {
            return Err(SpecError::TooMany(specs.len()));
        }
        let mut out: Vec<AppSpec> = Vec::with_capacity(specs.len());
        for s in specs {
            let spec = AppSpec::parse(s)?;
            if out.iter().any(|o| o.import_path == spec.import_path) {
                return Err(SpecError::Twice(spec.import_path));
            }
            out.push(spec);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gunicorn_forms() {
        assert_eq!(AppSpec::parse("myapp:App"), Ok(AppSpec { import_path: "myapp:App".into(), workers: None }));
        assert_eq!(AppSpec::parse("my.app:App:2"), Ok(AppSpec { import_path: "my.app:App".into(), workers: Some(2) }));
        assert_eq!(AppSpec::parse("m:A: 3 ").map(|s| s.workers), Ok(Some(3)));
        assert!(matches!(AppSpec::parse("m:A:0"), Err(SpecError::Zero { count: 0, .. })));
        assert!(matches!(AppSpec::parse("m:A:-1"), Err(SpecError::Zero { count: -1, .. })));
        assert!(matches!(AppSpec::parse("m:A:x"), Err(SpecError::Count { .. })));
        assert_eq!(AppSpec::parse("nocolon"), Err(SpecError::Format("nocolon".into())));
        assert_eq!(AppSpec::parse("a:b:c:d"), Err(SpecError::Format("a:b:c:d".into())));
        assert_eq!(
            AppSpec::parse("x").map_err(|e| e.to_string()),
            Err("Invalid import path format: x. Expected 'module.path:ClassName' or 'module.path:ClassName:N'".into())
        );
    }

    #[test]
    fn the_list() {
        let two = vec!["a:A".to_owned(), "b:B:1".to_owned()];
        assert_eq!(AppSpec::parse_all(&two).map(|v| v.len()), Ok(2));
        let twice = vec!["a:A".to_owned(), "a:A:2".to_owned()];
        assert_eq!(AppSpec::parse_all(&twice), Err(SpecError::Twice("a:A".into())));
        let many: Vec<String> = (0..=MAX_APPS).map(|i| format!("m:A{i}")).collect();
        assert_eq!(AppSpec::parse_all(&many), Err(SpecError::TooMany(MAX_APPS + 1)));
    }
}
