//! The process-wide logger as the server uses it: macros, reopen, fork.

use std::fs;

/// The only test touching the global error log, so no other test races
/// on its destination.
#[test]
fn global_logger_across_fork_and_reopen() {
    let dir = std::env::temp_dir().join(format!("ferrocorn-log-global-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("error.log");
    super::configure(super::Level::Debug, path.to_str().unwrap()).unwrap();
    super::debug!("Booting worker with pid: {}", 1);

    // Children share the O_APPEND descriptor, log under their own pid, and
    // each record is one write, so long lines never interleave.
    let long = "x".repeat(6000);
    let mut children = Vec::new();
    for _ in 0..4 {
        // SAFETY: the child only formats, writes and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            for i in 0..100 {
                super::info!("{} {}", i, long);
            }
            // SAFETY: leave without running the parent's test harness.
            unsafe { libc::_exit(0) };
        }
        children.push(pid);
    }
    for pid in &children {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(*pid, &mut status, 0) };
    }

    super::set_level(super::Level::Warning);
    super::info!("filtered out");
    super::warning!("still shown");
    fs::rename(&path, dir.join("error.log.1")).unwrap();
    super::reopen().unwrap();
    super::critical!("after reopen");
    super::write_raw(b"app wrote this\n");
    super::configure(super::Level::Info, "-").unwrap();

    let rotated = fs::read_to_string(dir.join("error.log.1")).unwrap();
    let lines: Vec<&str> = rotated.lines().collect();
    assert_eq!(lines.len(), 1 + 400 + 1, "{}", rotated.len());
    let me = std::process::id();
    assert!(lines[0].ends_with(&format!("] [{me}] [DEBUG] Booting worker with pid: 1")));
    for pid in &children {
        let tag = format!("] [{pid}] [INFO] ");
        let mine: Vec<&&str> = lines.iter().filter(|l| l.contains(&tag)).collect();
        assert_eq!(mine.len(), 100);
        assert!(mine.iter().all(|l| l.ends_with(&long)));
    }
    assert!(lines[401].ends_with(&format!("] [{me}] [WARNING] still shown")));
    let fresh = fs::read_to_string(&path).unwrap();
    assert!(fresh.starts_with('['));
    assert!(fresh.ends_with(&format!("] [{me}] [CRITICAL] after reopen\napp wrote this\n")), "{fresh}");
    let _ = fs::remove_dir_all(&dir);
}
