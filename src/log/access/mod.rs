//! Gunicorn's access log: `--access-logformat` compiled once, rendered per
//! request byte-for-byte as `Logger.access()` with `SafeAtoms` would; or,
//! with `--access-log-json`, one JSON object per request (`otel.rs`).

mod atom;
mod base64;
mod format;
mod otel;
mod pyformat;
mod record;
mod resolve;
mod user;
mod writer;

#[cfg(test)]
mod tests;

pub use format::{AccessFormat, RenderError, DEFAULT_ACCESS_LOG_FORMAT};
pub use record::{AccessRecord, EnvValue, EnvironLookup, HeaderLookup, Nothing, Text};
pub use user::basic_auth_user;
pub use writer::AccessLog;
