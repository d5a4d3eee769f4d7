//! The TLS settings (`--certfile`, `--keyfile`, `--ca-certs`,
//! `--cert-reqs`, `--ciphers`, the `ssl_context` hook) made into one rustls
//! server configuration, in the master before it forks: a broken
//! certificate stops the start with its reason, the workers share it (and
//! its session-ticket keys, so a session resumes on any worker), and a HUP
//! that cannot read new files keeps the old configuration.

use crate::settings::Settings;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use std::fmt;
use std::sync::Arc;

/// Why TLS cannot be set up: the message names the file or setting.
#[derive(Debug)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn err(message: impl Into<String>) -> TlsError {
    TlsError(message.into())
}

/// Client certificates (`cert_reqs`, `verify_mode`): Python's `ssl.CERT_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Optional,
    Required,
}

impl ClientAuth {
    pub fn from_cert_reqs(n: i64) -> Result<ClientAuth, TlsError> {
        match n {
            0 => Ok(ClientAuth::None),
            1 => Ok(ClientAuth::Optional),
            2 => Ok(ClientAuth::Required),
            other => Err(err(format!("cert_reqs must be 0 (none), 1 (optional) or 2 (required), not {other}"))),
        }
    }
}

/// A TLS version, as `ssl.TLSVersion` numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// What the server's TLS is made of: from the settings, then whatever the
/// `ssl_context` hook did to the context it was given.
#[derive(Debug, Clone)]
pub struct TlsParams {
    pub certfile: String,
    pub keyfile: Option<String>,
    /// CA certificates for client certificates: files, and PEM text.
    pub ca_files: Vec<String>,
    pub ca_pem: Vec<String>,
    /// The system's CA certificates too (`load_default_certs`).
    pub system_cas: bool,
    pub client_auth: ClientAuth,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    pub ciphers: Option<String>,
    pub alpn: Vec<Vec<u8>>,
}

impl TlsParams {
    /// Gunicorn's default context factory, from the settings.
    pub fn from_settings(settings: &Settings) -> Result<Option<TlsParams>, TlsError> {
        // Gunicorn's `is_ssl`: a certfile or a keyfile.
        if settings.certfile.is_none() && settings.keyfile.is_none() {
            return Ok(None);
        }
        let certfile = match (&settings.certfile, &settings.keyfile) {
            (Some(c), _) => c.clone(),
            (None, Some(_)) => return Err(err("keyfile is set but certfile is not: TLS needs a certificate")),
            (None, None) => return Ok(None),
        };
        let client_auth = ClientAuth::from_cert_reqs(settings.cert_reqs)?;
        Ok(Some(TlsParams {
            certfile,
            keyfile: settings.keyfile.clone(),
            ca_files: settings.ca_certs.iter().cloned().collect(),
            ca_pem: Vec::new(),
            // Python's create_default_context(CLIENT_AUTH) loads the
            // system's CAs when no file is given.
            system_cas: settings.ca_certs.is_none(),
            client_auth,
            min_version: None,
            max_version: None,
            ciphers: settings.ciphers.clone(),
            alpn: crate::http2::alpn_protocols(settings),
        }))
    }

    /// The `ssl_context` hook: it gets a stand-in for Python's SSLContext
    /// (`ferrocorn._tls`) that records what the hook does, read back here.
    fn apply_hook(self, py: Python<'_>, settings: &Settings, hook: &Py<PyAny>) -> Result<TlsParams, TlsError> {
        let run = || -> PyResult<Bound<'_, PyDict>> {
            let cfg = crate::hooks::context::config_object(py, settings)?;
            let m = py.import("ferrocorn._tls")?;
            let given = PyDict::new(py);
            given.set_item("certfile", &self.certfile)?;
            given.set_item("keyfile", &self.keyfile)?;
            given.set_item("ca_files", &self.ca_files)?;
            given.set_item("system_cas", self.system_cas)?;
            given.set_item("verify_mode", self.client_auth as i64)?;
            given.set_item("ciphers", &self.ciphers)?;
            let served: &[&str] = if crate::http2::enabled(settings) {
                &["h2", "http/1.1", "http/1.0"]
            } else {
                &["http/1.1", "http/1.0"]
            };
            given.set_item("alpn_served", served.to_vec())?;
            given.set_item(
                "alpn",
                self.alpn.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>(),
            )?;
            Ok(m.call_method1("run_hook", (hook.bind(py), cfg, given))?.cast_into::<PyDict>()?)
        };
        let got = run().map_err(|e| err(format!("ssl_context hook: {}", crate::python::exception_text(py, &e))))?;
        let get = |k: &str| got.get_item(k).ok().flatten();
        let string = |k: &str| get(k).and_then(|v| v.extract::<Option<String>>().ok()).flatten();
        let strings = |k: &str| get(k).and_then(|v| v.extract::<Vec<String>>().ok()).unwrap_or_default();
        let version = |k: &str| -> Result<Option<TlsVersion>, TlsError> {
            match get(k).and_then(|v| v.extract::<Option<String>>().ok()).flatten().as_deref() {
                None => Ok(None),
                Some("TLSv1_2") => Ok(Some(TlsVersion::Tls12)),
                Some("TLSv1_3") => Ok(Some(TlsVersion::Tls13)),
                Some(other) => Err(err(format!(
                    "ssl_context hook: TLS version {other} is not available (rustls has TLS 1.2 and 1.3)"
                ))),
            }
        };
        let verify = get("verify_mode").and_then(|v| v.extract::<i64>().ok()).unwrap_or(0);
        Ok(TlsParams {
            certfile: string("certfile").ok_or_else(|| err("ssl_context hook: no certificate was loaded"))?,
            keyfile: string("keyfile"),
            ca_files: strings("ca_files"),
            ca_pem: strings("ca_pem"),
            system_cas: get("system_cas").and_then(|v| v.extract::<bool>().ok()).unwrap_or(false),
            client_auth: ClientAuth::from_cert_reqs(verify)?,
            min_version: version("minimum_version")?,
            max_version: version("maximum_version")?,
            ciphers: string("ciphers"),
            alpn: strings("alpn").into_iter().map(String::into_bytes).collect(),
        })
    }
}

/// The server's TLS configuration, or None when TLS is off.
pub fn server_config(py: Python<'_>, settings: &Settings) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let Some(mut params) = TlsParams::from_settings(settings)? else { return Ok(None) };
    if let Some(hook) = &settings.ssl_context.0 {
        params = params.apply_hook(py, settings, hook)?;
    }
    build(&params).map(|c| Some(Arc::new(c)))
}

fn build(params: &TlsParams) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(&params.certfile)?;
    let key_path = params.keyfile.as_deref().unwrap_or(&params.certfile);
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| err(format!("keyfile {key_path}: no usable private key (PKCS#1, PKCS#8 or SEC1 PEM): {e}")))?;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = cipher_suites(params.ciphers.as_deref(), &provider.cipher_suites)?;
    let provider = Arc::new(provider);
    let versions = protocol_versions(params)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| err(format!("TLS versions: {e}")))?;
    let builder = match params.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let roots = Arc::new(client_roots(params)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if auth == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| err(format!("client certificates: {e}")))?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| err(format!("certfile {} with keyfile {key_path}: {e}", params.certfile)))?;
    config.alpn_protocols = params.alpn.clone();
    // Resumption: tickets (their keys made here, before the fork, so any
    // worker resumes a session), and a cache for clients without them.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| err(format!("session tickets: {e}")))?;
    config.session_storage = ServerSessionMemoryCache::new(4096);
    Ok(config)
}

fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("certfile {path}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("certfile {path}: {e}")))?;
    if certs.is_empty() {
        return Err(err(format!("certfile {path}: no PEM certificate in it")));
    }
    Ok(certs)
}

fn client_roots(params: &TlsParams) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let mut add = |certs: Vec<CertificateDer<'static>>, from: &str| -> Result<(), TlsError> {
        for cert in certs {
            roots.add(cert).map_err(|e| err(format!("CA certificate in {from}: {e}")))?;
        }
        Ok(())
    };
    for path in &params.ca_files {
        add(load_certs(path)?, path)?;
    }
    for pem in &params.ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("cadata: {e}")))?;
        add(certs, "cadata")?;
    }
    if params.system_cas {
        let system = std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into());
        if let Ok(certs) = load_certs(&system) {
            // Some entries of a system bundle may not parse as trust
            // anchors; the others still count.
            let _ = roots.add_parsable_certificates(certs);
        }
    }
    if roots.is_empty() {
        return Err(err("client certificates are asked for (cert_reqs) but no CA certificate was given (ca_certs)"));
    }
    Ok(roots)
}

fn protocol_versions(params: &TlsParams) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let min = params.min_version.unwrap_or(TlsVersion::Tls12);
    let max = params.max_version.unwrap_or(TlsVersion::Tls13);
    let mut out = Vec::new();
    if min <= TlsVersion::Tls12 && TlsVersion::Tls12 <= max {
        out.push(&rustls::version::TLS12);
    }
    if min <= TlsVersion::Tls13 && TlsVersion::Tls13 <= max {
        out.push(&rustls::version::TLS13);
    }
    if out.is_empty() {
        return Err(err("minimum_version is above maximum_version: no TLS version is left"));
    }
    Ok(out)
}

/// OpenSSL's names for the suites rustls has.
const SUITE_NAMES: &[(&str, &str)] = &[
    ("TLS_AES_128_GCM_SHA256", "TLS13_AES_128_GCM_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS13_AES_256_GCM_SHA384"),
    ("TLS_CHACHA20_POLY1305_SHA256", "TLS13_CHACHA20_POLY1305_SHA256"),
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
];

/// Cipher-string words that only exclude what rustls never offers (weak,
/// anonymous, legacy): `!` or `-` before them changes nothing.
const NEVER_OFFERED: &[&str] = &[
    "aNULL", "eNULL", "NULL", "MD5", "RC4", "DES", "3DES", "DSS", "PSK", "SRP", "EXP", "EXPORT", "LOW", "MEDIUM",
    "IDEA", "SEED", "CAMELLIA", "ARIA", "CCM", "CCM8", "SHA1", "ADH", "AECDH", "kRSA", "RSA+SHA1", "aDSS", "kDHE",
    "DHE", "EDH", "ADH", "SSLv3", "TLSv1", "kECDHe", "kECDHr", "AESCCM", "CBC", "SHA",
];

/// `--ciphers`: an OpenSSL cipher list, for the TLS 1.2 suites (as in
/// Python's `set_ciphers`, TLS 1.3 suites stay on). Suite names, and the
/// keywords that select among what rustls has (`HIGH`, `DEFAULT`, `ALL`,
/// `ECDHE`/`EECDH`, `AESGCM`, `AES128`, `AES256`, `CHACHA20`, `ECDSA`,
/// `aECDSA`, `aRSA`, `kECDHE`), are understood; an exclusion of something
/// rustls never offers changes nothing; anything else stops the start,
/// named.
fn cipher_suites(
    ciphers: Option<&str>,
    available: &[SupportedCipherSuite],
) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let Some(ciphers) = ciphers.map(str::trim).filter(|c| !c.is_empty()) else { return Ok(available.to_vec()) };
    let name = |s: &SupportedCipherSuite| format!("{:?}", s.suite());
    let is13 = |s: &SupportedCipherSuite| matches!(s, SupportedCipherSuite::Tls13(_));
    let tls12: Vec<SupportedCipherSuite> = available.iter().filter(|s| !is13(s)).copied().collect();
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    let mut excluded: Vec<String> = Vec::new();
    for word in ciphers.split([':', ',', ' ']).filter(|w| !w.is_empty()) {
        if word.starts_with('@') || word.starts_with('+') {
            // Ordering directives: rustls orders by strength itself.
            continue;
        }
        let (negated, item) = match word.strip_prefix('!').or_else(|| word.strip_prefix('-')) {
            Some(rest) => (true, rest),
            None => (false, word),
        };
        let matching: Vec<SupportedCipherSuite> = match item {
            "HIGH" | "DEFAULT" | "ALL" | "ECDHE" | "EECDH" | "kECDHE" | "AESGCM" | "AES" => tls12.clone(),
            "AES128" => tls12.iter().filter(|s| name(s).contains("AES_128")).copied().collect(),
            "AES256" => tls12.iter().filter(|s| name(s).contains("AES_256")).copied().collect(),
            "CHACHA20" => tls12.iter().filter(|s| name(s).contains("CHACHA20")).copied().collect(),
            "ECDSA" | "aECDSA" => tls12.iter().filter(|s| name(s).contains("ECDSA")).copied().collect(),
            "aRSA" | "RSA" => tls12.iter().filter(|s| name(s).contains("_RSA_")).copied().collect(),
            other => match SUITE_NAMES.iter().find(|(openssl, rust)| *openssl == other || *rust == other) {
                Some((_, rust)) => available.iter().filter(|s| name(s) == *rust).copied().collect(),
                None if negated && NEVER_OFFERED.contains(&other) => Vec::new(),
                None => {
                    return Err(err(format!(
                        "ciphers: '{other}' is not a cipher rustls offers or a keyword ferrocorn maps"
                    )))
                }
            },
        };
        if negated {
            excluded.extend(matching.iter().map(name));
        } else {
            for s in matching {
                if !chosen.iter().any(|c| name(c) == name(&s)) {
                    chosen.push(s);
                }
            }
        }
    }
    chosen.retain(|s| !excluded.contains(&name(s)));
    if !chosen.iter().any(|s| !is13(s)) {
        return Err(err(format!("ciphers '{ciphers}' leaves no TLS 1.2 cipher suite")));
    }
    // TLS 1.3 suites are not set by a cipher list (Python's set_ciphers
    // leaves them too).
    let mut out: Vec<SupportedCipherSuite> = available.iter().filter(|s| is13(s)).copied().collect();
    out.extend(chosen.into_iter().filter(|s| !is13(s)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(suites: &[SupportedCipherSuite]) -> Vec<String> {
        suites.iter().map(|s| format!("{:?}", s.suite())).collect()
    }

    #[test]
    fn cipher_strings_map_to_what_rustls_has() {
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        assert_eq!(cipher_suites(None, &all).expect("default").len(), all.len());
        let got = names(&cipher_suites(Some("ECDHE-RSA-AES128-GCM-SHA256:!aNULL:!MD5"), &all).expect("one"));
        assert!(got.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_owned()));
        assert!(got.iter().filter(|n| !n.starts_with("TLS13")).count() == 1, "{got:?}");
        assert!(got.iter().any(|n| n.starts_with("TLS13")), "TLS 1.3 suites stay");
        let got = names(&cipher_suites(Some("HIGH:!CHACHA20"), &all).expect("high"));
        assert!(!got.iter().any(|n| n.contains("CHACHA20") && !n.starts_with("TLS13")), "{got:?}");
        let e = cipher_suites(Some("AES128-SHA"), &all).expect_err("CBC suite");
        assert!(e.0.contains("AES128-SHA"), "{e}");
        assert!(cipher_suites(Some("!ECDSA:!aRSA"), &all).is_err());
    }

    #[test]
    fn versions_follow_the_hook_bounds() {
        let mut p = TlsParams {
            certfile: String::new(),
            keyfile: None,
            ca_files: vec![],
            ca_pem: vec![],
            system_cas: false,
            client_auth: ClientAuth::None,
            min_version: Some(TlsVersion::Tls13),
            max_version: None,
            ciphers: None,
            alpn: vec![],
        };
        assert_eq!(protocol_versions(&p).expect("1.3").len(), 1);
        p.max_version = Some(TlsVersion::Tls12);
        assert!(protocol_versions(&p).is_err());
    }
}
