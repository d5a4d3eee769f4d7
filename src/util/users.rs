//! User and group lookups for `--user`/`--group` values given by name.

use std::ffi::CString;

/// Runs a `get*_r` lookup with a buffer that grows while the answer is
/// ERANGE ("buffer too small"): a user or group with many members needs
/// more than the usual size, and is not "no such user".
fn with_growing_buffer<T>(mut lookup: impl FnMut(&mut [u8]) -> Result<Option<T>, libc::c_int>) -> Option<T> {
    let mut size = 16 * 1024;
    loop {
        let mut buf = vec![0u8; size];
        match lookup(&mut buf) {
            Ok(found) => return found,
            Err(libc::ERANGE) if size < 16 * 1024 * 1024 => size *= 4,
            Err(_) => return None,
        }
    }
}

pub fn uid_by_name(name: &str) -> Option<i64> {
    let c = CString::new(name).ok()?;
    with_growing_buffer(|buf| {
        // SAFETY: getpwnam_r writes into `pw` and `buf`, both sized for it.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut out: *mut libc::passwd = std::ptr::null_mut();
            match libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) {
                0 if out.is_null() => Ok(None),
                0 => Ok(Some(i64::from(pw.pw_uid))),
                rc => Err(rc),
            }
        }
    })
}

pub fn gid_by_name(name: &str) -> Option<i64> {
    let c = CString::new(name).ok()?;
    with_growing_buffer(|buf| {
        // SAFETY: getgrnam_r writes into `gr` and `buf`, both sized for it.
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut out: *mut libc::group = std::ptr::null_mut();
            match libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out) {
                0 if out.is_null() => Ok(None),
                0 => Ok(Some(i64::from(gr.gr_gid))),
                rc => Err(rc),
            }
        }
    })
}

/// The name of user `uid`, for initgroups.
pub fn name_of_uid(uid: libc::uid_t) -> Option<CString> {
    with_growing_buffer(|buf| {
        // SAFETY: getpwuid_r writes into `pw` and `buf`, both sized for it;
        // the name is copied out before `buf` goes.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut out: *mut libc::passwd = std::ptr::null_mut();
            match libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) {
                0 if out.is_null() || pw.pw_name.is_null() => Ok(None),
                0 => Ok(Some(std::ffi::CStr::from_ptr(pw.pw_name).to_owned())),
                rc => Err(rc),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_exists() {
        assert_eq!(super::uid_by_name("root"), Some(0));
        assert_eq!(super::gid_by_name("root"), Some(0));
        assert_eq!(super::uid_by_name("no-such-user-ferrocorn"), None);
    }
}
