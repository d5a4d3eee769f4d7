//! HTTP/2 (RFC 9113) on top of the `h2` crate: ALPN `h2` over TLS, and
//! cleartext h2c with prior knowledge from trusted peers. The framing,
//! HPACK, flow control and the protocol's own defences (rapid reset,
//! CONTINUATION floods, HPACK bombs through the header-list limit) are
//! `h2`'s; this module drives it from the workers' engines without an async
//! runtime ([`session`]), turns its requests into the same [`RequestHead`]
//! the HTTP/1 parser makes ([`request`]), and gives each stream's body and
//! response to the application through [`stream::StreamShared`].
//!
//! [`RequestHead`]: crate::http::request::RequestHead

pub mod io;
pub mod preface;
pub mod request;
pub mod session;
pub mod stream;

use crate::settings::Settings;
use std::time::Duration;

/// The HTTP/2 limits of a worker, from the `http2_*` settings.
#[derive(Debug, Clone)]
pub struct H2Config {
    pub max_concurrent_streams: u32,
    pub initial_window_size: u32,
    pub max_frame_size: u32,
    /// None: no limit (`http2_max_header_list_size = 0`).
    pub max_header_list_size: Option<u32>,
    /// An idle connection (no stream open) gets a GOAWAY after this.
    pub idle: Duration,
    /// A stream whose response gets no window for this long is reset.
    pub stall: Duration,
    /// The client preface and SETTINGS must come within this.
    pub handshake_timeout: Option<Duration>,
}

/// A stream stalled on a zero window is reset after `--timeout`, or this
/// when `--timeout` is 0.
const DEFAULT_STALL: Duration = Duration::from_secs(30);

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl H2Config {
    pub fn from_settings(s: &Settings) -> H2Config {
        H2Config {
            max_concurrent_streams: clamp_u32(s.http2_max_concurrent_streams),
            initial_window_size: clamp_u32(s.http2_initial_window_size),
            max_frame_size: clamp_u32(s.http2_max_frame_size),
            max_header_list_size: Some(clamp_u32(s.http2_max_header_list_size)).filter(|&n| n > 0),
            idle: s.keepalive,
            stall: if s.timeout.is_zero() { DEFAULT_STALL } else { s.timeout },
            handshake_timeout: Some(s.request_head_timeout).filter(|d| !d.is_zero()),
        }
    }

    /// The `h2` server for these limits. The connection-level window is
    /// larger than a stream's, so that one stream whose application does
    /// not read its body cannot hold up the uploads of the others.
    pub fn builder(&self) -> h2::server::Builder {
        let mut b = h2::server::Builder::new();
        b.max_concurrent_streams(self.max_concurrent_streams)
            .initial_window_size(self.initial_window_size)
            .initial_connection_window_size(self.connection_window())
            .max_frame_size(self.max_frame_size);
        if let Some(n) = self.max_header_list_size {
            b.max_header_list_size(n);
        }
        b
    }

    fn connection_window(&self) -> u32 {
        let streams = self.max_concurrent_streams.clamp(1, 16);
        self.initial_window_size.saturating_mul(streams).clamp(65_535, 16 * 1024 * 1024).max(self.initial_window_size)
    }
}

/// Connection-specific fields have no place in HTTP/2 (RFC 9113 8.2.2).
pub fn connection_specific(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 6] =
        [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te"];
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// `h2` is in `http_protocols`.
pub fn enabled(s: &Settings) -> bool {
    s.http_protocols.split(',').any(|p| p.trim() == "h2")
}

/// The ALPN protocols TLS offers, in `http_protocols`' order of preference.
pub fn alpn_protocols(s: &Settings) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for p in s.http_protocols.split(',').map(str::trim) {
        let id: &[u8] = if p == "h2" { b"h2" } else { b"http/1.1" };
        if !out.iter().any(|o| o == id) {
            out.push(id.to_vec());
        }
    }
    // A client that does not pick h2 is still served HTTP/1.1, as Gunicorn
    // (OpenSSL) serves it; rustls would fail a handshake whose offer
    // matches nothing.
    if !out.iter().any(|o| o == b"http/1.1") {
        out.push(b"http/1.1".to_vec());
    }
    out
}

/// What a worker serves of HTTP/2, decided once from the settings.
#[derive(Debug, Clone)]
pub struct H2Serving {
    pub config: std::sync::Arc<H2Config>,
    /// The listeners are TLS: HTTP/2 by ALPN.
    tls: bool,
    /// `http2_cleartext = prior-knowledge`.
    prior_knowledge: bool,
}

impl H2Serving {
    /// None when the worker serves HTTP/1 only.
    pub fn from_settings(s: &Settings, tls: bool) -> Option<H2Serving> {
        if !enabled(s) {
            return None;
        }
        let prior_knowledge = !tls && s.http2_cleartext == "prior-knowledge";
        if !tls && !prior_knowledge {
            return None;
        }
        Some(H2Serving { config: std::sync::Arc::new(H2Config::from_settings(s)), tls, prior_knowledge })
    }

    /// How a new connection from `peer` may become HTTP/2: by ALPN over
    /// TLS; with the preface from a peer trusted as the TLS-terminating
    /// front end (`forwarded_allow_ips`, Unix sockets), which is then
    /// expected to speak HTTP/2; not at all from anyone else.
    pub fn offer(&self, policy: &crate::http::policy::HttpPolicy, peer: Option<std::net::IpAddr>) -> preface::H2Offer {
        if self.tls {
            preface::H2Offer::Alpn
        } else if self.prior_knowledge && policy.peer_is_trusted(peer) {
            preface::H2Offer::PriorKnowledge { strict: true }
        } else {
            preface::H2Offer::None
        }
    }
}

/// The HTTP/2 settings against the worker type and each other, at start.
/// Ok(Some(warning)) for a combination that serves but never HTTP/2.
pub fn check_settings(s: &Settings, kind: crate::workers::WorkerKind) -> Result<Option<String>, String> {
    use crate::workers::WorkerKind;
    if !enabled(s) {
        if s.http2_cleartext != "off" {
            return Ok(Some(format!(
                "Warning: http2_cleartext is {} but http_protocols does not include h2, so HTTP/2 is not served.",
                s.http2_cleartext
            )));
        }
        return Ok(None);
    }
    if !matches!(kind, WorkerKind::Gthread | WorkerKind::Asgi | WorkerKind::Gevent | WorkerKind::Eventlet) {
        return Err(format!(
            "HTTP/2 (http_protocols = {}) is served by the gthread, asgi, gevent and eventlet workers; -k {} serves \
             HTTP/1 only",
            s.http_protocols,
            kind.name()
        ));
    }
    if matches!(s.http2_cleartext.as_str(), "upgrade" | "both") {
        return Err(format!(
            "http2_cleartext = {}: ferrocorn serves cleartext HTTP/2 with prior knowledge only, not by an HTTP/1.1 \
             Upgrade: h2c request (its HTTP/2 implementation, as hyper's, has no upgrade path); use \
             --http2-cleartext prior-knowledge",
            s.http2_cleartext
        ));
    }
    let tls = s.certfile.is_some() || s.keyfile.is_some();
    if !tls && s.http2_cleartext == "off" {
        return Ok(Some(
            "Warning: http_protocols includes h2 but there is no TLS and http2_cleartext is off, so HTTP/2 will \
             never be negotiated."
                .to_owned(),
        ));
    }
    Ok(None)
}
