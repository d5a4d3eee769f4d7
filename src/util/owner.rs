//! `-u/--user`, `-g/--group`, `--initgroups` and `-m/--umask` as Gunicorn
//! applies them: workers switch identity right after fork (the master keeps
//! its own), and the umask is in force while a Unix socket is bound, which
//! is then chowned to the workers' user so they can use it.

use std::ffi::CString;
use std::io;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn username(uid: libc::uid_t) -> Option<CString> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r writes into `pw` and `buf`, both sized for it.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out);
        if rc != 0 || out.is_null() || pw.pw_name.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(pw.pw_name).to_owned())
    }
}

/// Gunicorn's `util.set_owner_process`: group first (with the user's
/// supplementary groups under `--initgroups`), then user. A zero id means
/// "leave it", as in Gunicorn.
pub fn set_owner_process(uid: i64, gid: i64, initgroups: bool) -> io::Result<()> {
    let (uid, gid) = (uid as libc::uid_t, gid as libc::gid_t);
    if gid != 0 {
        // initgroups needs the user's name; without one it is skipped.
        let name = if uid != 0 { username(uid) } else { None };
        match (initgroups, name) {
            (true, Some(name)) => {
                // SAFETY: a valid C string and a plain gid.
                check(unsafe { libc::initgroups(name.as_ptr(), gid) })?;
                // SAFETY: plain syscall.
                check(unsafe { libc::setgid(gid) })?;
            }
            // SAFETY: plain syscalls.
            _ if gid != unsafe { libc::getgid() } => check(unsafe { libc::setgid(gid) })?,
            _ => {}
        }
    }
    // SAFETY: plain syscalls.
    if uid != 0 && uid != unsafe { libc::getuid() } {
        // SAFETY: plain syscall.
        check(unsafe { libc::setuid(uid) })?;
    }
    Ok(())
}

/// Runs `bind` with the process umask set to `mask`, as Gunicorn binds a
/// Unix socket, then restores the previous mask.
pub fn with_umask<T>(mask: i64, bind: impl FnOnce() -> T) -> T {
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let out = bind();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    out
}

pub fn chown(path: &str, uid: i64, gid: i64) -> io::Result<()> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid C string.
    check(unsafe { libc::chown(c.as_ptr(), uid as libc::uid_t, gid as libc::gid_t) })
}
