//! Process titles for `ps` ("ferrocorn: master [app:app]"), as Gunicorn sets
//! them with setproctitle: the title overwrites the process's original argv
//! area, which is what /proc/PID/cmdline shows, and the short name (comm) is
//! set too. The environment strings that follow argv are left alone, so the
//! title is cut to the argv area's length.

use std::sync::Mutex;

struct Area {
    start: usize,
    len: usize,
}

static AREA: Mutex<Option<Option<Area>>> = Mutex::new(None);

/// Finds the argv area from /proc/self/stat (fields 48 and 49, Linux 3.5+).
fn find_area() -> Option<Area> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields restart after
    // the last ')'. Field 3 (state) is the first one after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<usize> { fields.get(n - 3)?.parse().ok() };
    let (start, end) = (field(48)?, field(49)?);
    if start == 0 || end <= start {
        return None;
    }
    Some(Area { start, len: end - start })
}

pub fn set(title: &str) {
    let mut guard = match AREA.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let area = guard.get_or_insert_with(find_area);
    if let Some(area) = area {
        let bytes = title.as_bytes();
        // Keep the last byte NUL so the kernel does not read on into the
        // environment when it shows cmdline.
        let n = bytes.len().min(area.len.saturating_sub(1));
        // SAFETY: [start, start+len) is this process's own argv area on its
        // stack, mapped and writable for the process's lifetime; nothing in
        // the program reads it back (Python keeps its own copy of argv).
        unsafe {
            let dst = area.start as *mut u8;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n);
            std::ptr::write_bytes(dst.add(n), 0, area.len - n);
        }
    }
    if let Ok(c) = std::ffi::CString::new(title.replace('\0', "")) {
        // SAFETY: PR_SET_NAME copies at most 16 bytes from a valid C string.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
}
