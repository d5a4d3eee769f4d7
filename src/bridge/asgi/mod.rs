//! The ASGI (3.0, spec 2.4) bridge: scopes, the responses' wire rules, and
//! the awaitables `receive()`/`send()` hand back. The event-driven side is
//! in `workers/asgi`.

pub mod awaitable;
pub mod messages;
pub mod response;
pub mod scope;
