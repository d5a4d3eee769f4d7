//! User and group lookups for `--user`/`--group` values given by name.

use std::ffi::CString;

pub fn uid_by_name(name: &str) -> Option<i64> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwnam_r writes into `pw` and `buf`, both sized for it.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out);
        if rc != 0 || out.is_null() {
            return None;
        }
        Some(i64::from(pw.pw_uid))
    }
}

pub fn gid_by_name(name: &str) -> Option<i64> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getgrnam_r writes into `gr` and `buf`, both sized for it.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut out: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out);
        if rc != 0 || out.is_null() {
            return None;
        }
        Some(i64::from(gr.gr_gid))
    }
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
