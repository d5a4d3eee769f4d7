//! Sans-I/O HTTP/1.1 for ferrocorn, reproducing Gunicorn 27's request
//! parsing (pure-Python parser path), its error answers and its response
//! framing rules. Functions take byte slices and return typed results; the
//! connection driver owns sockets, buffers and timing.
//!
//! - [`request`]: request line, headers and body framing of a request head.
//! - [`body`]: Content-Length and chunked body decoding, trailers.
//! - [`conn`]: one connection's states (keep-alive, pipelining,
//!   100-continue, drain, linger) over a [`buffer`] of received bytes.
//! - [`response`]: `start_response` validation and body framing.
//! - [`error`]: every refusal and the status/reason/message Gunicorn sends.
//! - [`policy`]: the Gunicorn settings involved and their effective limits.
//! - [`text`], [`uri`], [`ip`], [`date`]: Python/glibc-compatible text forms.

pub mod body;
pub mod buffer;
pub mod conn;
pub mod date;
pub mod error;
pub mod ip;
pub mod policy;
pub mod request;
pub mod response;
pub mod text;
pub mod uri;
