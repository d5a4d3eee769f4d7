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

/// Gunicorn's `util.set_owner_process`: group first (with the user's
/// supplementary groups under `--initgroups`), then user. A zero id means
/// "leave it", as in Gunicorn. Unlike Gunicorn, a worker that switches to
/// another user without `--initgroups` keeps no supplementary groups of
/// the master's (often root's): it would otherwise still act with them.
pub fn set_owner_process(uid: i64, gid: i64, initgroups: bool) -> io::Result<()> {
    let out_of_range =
        |what: &str, v: i64| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} {v} is out of range"));
    let uid = libc::uid_t::try_from(uid).map_err(|_| out_of_range("user id", uid))?;
    let gid = libc::gid_t::try_from(gid).map_err(|_| out_of_range("group id", gid))?;
    // SAFETY: getuid cannot fail.
    let switching_user = uid != 0 && uid != unsafe { libc::getuid() };
    let mut groups_set = false;
    if gid != 0 {
        // initgroups needs the user's name; without one it is skipped.
        let name = if uid != 0 { crate::util::users::name_of_uid(uid) } else { None };
        match (initgroups, name) {
            (true, Some(name)) => {
                // SAFETY: a valid C string and a plain gid.
                check(unsafe { libc::initgroups(name.as_ptr(), gid) })?;
                groups_set = true;
                // SAFETY: plain syscall.
                check(unsafe { libc::setgid(gid) })?;
            }
            // SAFETY: plain syscalls.
            _ if gid != unsafe { libc::getgid() } => check(unsafe { libc::setgid(gid) })?,
            _ => {}
        }
    }
    if switching_user {
        if !groups_set {
            // SAFETY: an empty list; needs the privilege setuid needs too.
            check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
        }
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
    check(unsafe { libc::lchown(c.as_ptr(), uid as libc::uid_t, gid as libc::gid_t) })
}
