//! `-D/--daemon`: Gunicorn's `util.daemonize`, run before anything is bound:
//! fork (the parent exits), setsid, fork again, umask 022, and the standard
//! streams on /dev/null. With `-R/--enable-stdio-inheritance` only stdin
//! goes to /dev/null, and stdout/stderr only if they are terminals, so
//! `ferrocorn -D ... > out.log 2>&1` keeps writing to out.log.

use crate::python::Forked;
use pyo3::prelude::*;
use std::io;

fn exit_parent(py: Python<'_>) -> io::Result<()> {
    match crate::python::fork(py)? {
        // SAFETY: _exit ends the parent at once without running Python's
        // or Rust's exit handlers, as os._exit does.
        Forked::Parent(_) => unsafe { libc::_exit(0) },
        Forked::Child => Ok(()),
    }
}

pub fn daemonize(py: Python<'_>, enable_stdio_inheritance: bool) -> io::Result<()> {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        eprintln!("Warning: you shouldn't specify `daemon = True` when launching by systemd with `Type = notify`");
    }
    exit_parent(py)?;
    // SAFETY: plain syscalls on our own process.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    exit_parent(py)?;
    // SAFETY: plain syscalls on our own descriptors.
    unsafe {
        libc::umask(0o022);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null < 0 {
            return Err(io::Error::last_os_error());
        }
        if enable_stdio_inheritance {
            libc::dup2(null, 0);
            for fd in [1, 2] {
                if libc::isatty(fd) == 1 {
                    libc::dup2(null, fd);
                }
            }
        } else {
            for fd in [0, 1, 2] {
                libc::dup2(null, fd);
            }
        }
        if null > 2 {
            libc::close(null);
        }
    }
    Ok(())
}
