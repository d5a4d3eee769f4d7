//! TLS with rustls: the configuration made from the settings (and the
//! `ssl_context` hook) in the master, and one connection's session driven
//! by a worker's non-blocking I/O.

pub mod cert;
pub mod config;
pub mod stream;

pub use config::{server_config, TlsError};
pub use stream::{Recv, TlsFailure, TlsStream};

use crate::net::stream::Stream;
use std::sync::Arc;

/// What a worker needs to put each accepted connection under TLS.
#[derive(Clone)]
pub struct TlsAcceptor {
    pub config: Arc<rustls::ServerConfig>,
    /// `--suppress-ragged-eofs`: a peer that closes without close_notify
    /// has just closed (else it is an error).
    pub suppress_ragged_eofs: bool,
}

impl TlsAcceptor {
    /// The listeners' TLS, from the settings (None: plain HTTP).
    pub fn from_settings(
        py: pyo3::Python<'_>,
        settings: &crate::settings::Settings,
    ) -> Result<Option<TlsAcceptor>, TlsError> {
        Ok(server_config(py, settings)?
            .map(|config| TlsAcceptor { config, suppress_ragged_eofs: settings.suppress_ragged_eofs }))
    }

    pub fn wrap(&self, stream: Stream) -> std::io::Result<Stream> {
        stream.into_tls(self.config.clone(), self.suppress_ragged_eofs)
    }
}
