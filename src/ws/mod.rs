//! Sans-I/O WebSocket (RFC 6455), server side, for the ASGI worker. Functions
//! take byte slices and return typed results; the connection driver owns the
//! socket, its buffers and the timing, and bridges events to ASGI
//! `websocket.*` messages.
//!
//! No extension is ever negotiated (permessage-deflate included), so every
//! frame with an RSV bit set is a protocol error.
//!
//! - [`handshake`]: is a request an upgrade, validating it (RFC 6455 §4.2.1),
//!   the `101 Switching Protocols` answer and the rejection answers.
//! - [`frame`]: frame header parsing and encoding, payload masking.
//! - [`codec`]: the per-connection reader turning bytes into messages, close
//!   codes and the close frame.
//! - [`close`]: the closing handshake's states.

pub mod close;
pub mod codec;
pub mod frame;
pub mod handshake;

mod sha1;
mod utf8;
