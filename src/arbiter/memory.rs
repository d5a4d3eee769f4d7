//! Worker memory as the master sees it: resident set size read from /proc.

use std::io;

/// A worker's resident set size in bytes (`/proc/PID/statm`, which the
/// kernel keeps without walking the page tables, unlike smaps). Shared
/// pages (the code and the `--preload`ed app inherited from the master)
/// count in every worker, as `ps` shows them.
pub fn rss_bytes(pid: i32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = text
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/PID/statm"))?;
    Ok(pages.saturating_mul(page_size()))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_rss() {
        let rss = rss_bytes(std::process::id() as i32).expect("statm");
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(rss_bytes(-1).is_err());
    }
}
