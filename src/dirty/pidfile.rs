//! The dirty arbiter's pid file at Gunicorn's well-known path,
//! `$TMPDIR/gunicorn-dirty-<proc_name>.pid`, so `kill -TTIN $(cat ...)`
//! works as Gunicorn's documentation shows, and a dirty arbiter left behind
//! by a crashed server can be stopped by the next one. The directory is
//! shared with other users, so a file is only trusted when it is a regular
//! file of ours that nobody else can write, and the process it names is
//! ours and is a dirty arbiter.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn path(proc_name: &str) -> PathBuf {
    let safe: String = proc_name.chars().map(|c| if c == '/' || c == ' ' { '_' } else { c }).collect();
    std::env::temp_dir().join(format!("gunicorn-dirty-{safe}.pid"))
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// A regular file owned by us that group and others cannot write.
fn trusted(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_file() && meta.uid() == euid() && meta.mode() & 0o022 == 0
}

/// Writes `pid`, replacing a stale file of ours; another user's file or a
/// symlink is left alone (an error).
pub fn write(path: &Path, pid: i32) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if trusted(&meta) => std::fs::remove_file(path)?,
        Ok(_) => return Err(io::Error::new(io::ErrorKind::PermissionDenied, "it exists and is not a file of ours")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f =
        OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)?;
    f.write_all(pid.to_string().as_bytes())
}

fn read_trusted(path: &Path) -> Option<i32> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !trusted(&meta) {
        return None;
    }
    let mut text = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?
        .take(32)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok().filter(|p| *p > 0)
}

/// Removes the file if it still holds our pid (a newer arbiter may have
/// replaced it).
pub fn remove(path: &Path, pid: i32) {
    if read_trusted(path) == Some(pid) {
        let _ = std::fs::remove_file(path);
    }
}

fn cmdline_has(pid: i32, word: &[u8]) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.windows(word.len()).any(|w| w == word)
}

fn is_our_dirty_arbiter(pid: i32) -> bool {
    let owned = std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == euid());
    owned && cmdline_has(pid, b"dirty-arbiter")
}

/// The parent pid from `/proc/<pid>/stat` (after the command's closing
/// parenthesis, which the command itself may contain).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Still the child of a running master (another server that happens to
/// have the same process name): not an orphan, whatever the pid file says.
/// Gunicorn stops it anyway; that would take a live server's dirty apps.
fn has_a_master(pid: i32) -> bool {
    parent_of(pid).is_some_and(|ppid| ppid > 1 && cmdline_has(ppid, b"master"))
}

/// A dirty arbiter named by a pid file of ours that is still running (its
/// server crashed): TERM, a second to go, then KILL. Done by a new dirty
/// arbiter before it starts, so the master never waits on it.
pub fn stop_orphan(path: &Path, me: i32) {
    let Some(pid) = read_trusted(path) else { return };
    if pid == me || !is_our_dirty_arbiter(pid) {
        return;
    }
    if has_a_master(pid) {
        crate::log::warning!(
            "Dirty arbiter PID file {} names another server's dirty arbiter (pid: {pid}); replacing the file",
            path.display()
        );
        return;
    }
    crate::log::warning!("Killing orphaned dirty arbiter (pid: {pid})");
    // SAFETY: kill(2) on a process checked to be ours and a dirty arbiter.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() || !is_our_dirty_arbiter(pid) {
            return;
        }
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_read_and_removed_only_when_trusted() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-pidfile-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("a.pid");
        write(&p, 4242).expect("write");
        assert_eq!(std::fs::metadata(&p).expect("made").permissions().mode() & 0o777, 0o600);
        assert_eq!(read_trusted(&p), Some(4242));
        write(&p, 4343).expect("a stale file of ours is replaced");
        remove(&p, 4242);
        assert!(p.exists(), "another pid: left");
        remove(&p, 4343);
        assert!(!p.exists());
        std::fs::write(&p, "1").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(read_trusted(&p), None, "writable by others: not trusted");
        assert!(write(&p, 1).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_like_gunicorn() {
        assert!(path("my app/x").ends_with("gunicorn-dirty-my_app_x.pid"));
    }
}
