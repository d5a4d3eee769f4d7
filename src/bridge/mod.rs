//! The Python protocol bridges, with no I/O of their own: a worker type
//! supplies where bytes come from and go. `wsgi` is PEP 3333 (environ,
//! `wsgi.input`, `start_response`, the app's result); `asgi` is ASGI 3.0
//! (scopes, `receive()`/`send()` messages, the response's wire rules). The
//! worker types that use them are in `crate::workers` (`workers::asgi` is
//! the asgi worker type, which runs apps through `bridge::asgi`).

pub mod asgi;
pub mod wsgi;
