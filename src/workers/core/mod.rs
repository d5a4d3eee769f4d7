//! The worker core: what every worker type does the same way, whatever
//! its engine and wherever Python runs.
//!
//! - `life.rs`: heartbeat interval, the parent check, `--max-requests`, the stop.
//! - `signals.rs`: the worker's signal handlers and wake-up pipe.
//! - `accept.rs`: epoll tokens and the listening sockets of an event-driven worker.
//! - `slab.rs`: generational tables (connections by token, ASGI calls by key).
//! - `conn.rs`: an event-driven worker's client connection over `http::conn`.
//! - `output.rs`: response bytes a slow client has not taken yet.
//! - `sock.rs`, `blocking.rs`: socket calls, and waiting on sockets with the GIL released.
//! - `linger.rs`: the graceful close of a worker that serves one connection at a time.
//! - `access.rs`: access-log lines, statsd and the scoreboard's request counts.

pub mod accept;
pub mod access;
pub mod blocking;
pub mod conn;
pub mod life;
pub mod linger;
pub mod output;
pub mod signals;
pub mod slab;
pub mod sock;
