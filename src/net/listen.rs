//! Binding every `--bind` address, as the master does at start and on HUP,
//! and as each worker does with `--reuse-port`.

use crate::net::bind::BindSpec;
use crate::net::listener::Listener;
use crate::settings::Settings;
use pyo3::prelude::*;
use std::time::Duration;

/// Binds one address; a Unix socket is bound under `--umask` and chowned to
/// the workers' user and group, as Gunicorn does.
fn bind_one(spec: &BindSpec, settings: &Settings) -> std::io::Result<Listener> {
    let backlog = settings.listen_backlog();
    match spec {
        BindSpec::Unix(path) => {
            let l =
                crate::util::owner::with_umask(settings.umask, || Listener::bind(spec, backlog, settings.reuse_port))?;
            if !path.starts_with('\0') {
                crate::util::owner::chown(path, settings.user, settings.group)?;
            }
            Ok(l)
        }
        _ => Listener::bind(spec, backlog, settings.reuse_port),
    }
}

/// Binds every `--bind` address, retrying a busy address like Gunicorn
/// (five attempts a second apart).
pub fn bind_all(py: Python<'_>, settings: &Settings) -> Result<Vec<Listener>, String> {
    // The addresses are read with Python's int() and str.lower(), as
    // Gunicorn reads them.
    let specs = settings.bind.iter().map(|b| BindSpec::parse(py, b)).collect::<Result<Vec<_>, _>>()?;
    // Like Gunicorn, once any fd:// is given only the inherited sockets are
    // used; unlike it, say so about the addresses left out.
    let any_fd = specs.iter().any(|s| matches!(s, BindSpec::Fd(_)));
    let mut out = Vec::new();
    let mut taken_fds = Vec::new();
    for spec in specs {
        if any_fd && !matches!(spec, BindSpec::Fd(_)) {
            crate::log::warning!("Not binding {spec}: with fd:// binds only the inherited sockets are used");
            continue;
        }
        if let BindSpec::Fd(fd) = spec {
            // One owner per descriptor: a second would close it twice.
            if taken_fds.contains(&fd) {
                crate::log::warning!("{spec} is given twice: using it once");
                continue;
            }
            taken_fds.push(fd);
        }
        let mut last = None;
        for attempt in 0..5 {
            match bind_one(&spec, settings) {
                Ok(l) => {
                    last = None;
                    out.push(l);
                    break;
                }
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        crate::log::error!("Connection in use: {spec}");
                    }
                    if e.kind() == std::io::ErrorKind::AddrNotAvailable {
                        crate::log::error!("Invalid address: {spec}");
                    }
                    crate::log::error!("connection to {spec} failed: {e}");
                    last = Some(e);
                    if attempt < 4 {
                        crate::log::debug!("Retrying in 1 second.");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        }
        if last.is_some() {
            return Err(format!("Can't connect to {spec}"));
        }
    }
    Ok(out)
}
