//! The pid file (`-p/--pid`), with Gunicorn's rules: refuse to start over a
//! live pid, write atomically through a temp file and rename, mode 0644,
//! remove only a file that still holds our pid.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: i32,
}

impl Pidfile {
    pub fn create(path: &str, pid: i32) -> Result<Pidfile, String> {
        let path = PathBuf::from(path);
        if let Some(old) = live_pid(&path) {
            if old != pid {
                return Err(format!("Already running on PID {old} (or pid file '{}' is stale)", path.display()));
            }
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(format!("{} doesn't exist. Can't create pidfile.", dir.display()));
        }
        let (tmp, mut file) =
            create_exclusive(&dir, pid).map_err(|e| format!("can't write pidfile {}: {e}", path.display()))?;
        let mut write = || -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            writeln!(file, "{pid}")?;
            // On the descriptor: the name may already be someone else's.
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("can't write pidfile {}: {e}", path.display())
        })?;
        Ok(Pidfile { path, pid })
    }

    /// Moves the pid file to `path` (a re-exec'd master taking over the
    /// real name once the old master is gone), as Gunicorn's `rename`.
    pub fn rename(self, path: &str) -> Result<Pidfile, String> {
        self.unlink();
        Pidfile::create(path, self.pid)
    }

    pub fn unlink(&self) {
        if read_pid(&self.path) == Some(self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A new temporary file in `dir` that nobody else can have prepared: a
/// fresh name opened with O_EXCL and O_NOFOLLOW (a root master writing into
/// a directory others can write to must not follow their links).
fn create_exclusive(dir: &Path, pid: i32) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut last = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let tmp = dir.join(format!(".ferrocorn-pid-{pid}-{nanos:x}{attempt:x}"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pid in the file if that process exists (or exists but is not ours).
fn live_pid(path: &Path) -> Option<i32> {
    let pid = read_pid(path)?;
    if pid <= 0 {
        return None;
    }
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
        Some(pid)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_refuses_live_and_unlinks_own() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("app.pid");
        let p = path.to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        let file = Pidfile::create(&p, me).expect("create");
        assert_eq!(read_pid(&path), Some(me));
        // a live pid that is not ours (pid 1 always exists)
        std::fs::write(&path, "1\n").expect("write");
        assert!(Pidfile::create(&p, me).unwrap_err().contains("Already running on PID 1"));
        // a stale file is replaced
        std::fs::write(&path, "999999999\n").expect("write");
        let file2 = Pidfile::create(&p, me).expect("replace stale");
        file.unlink();
        assert!(!path.exists());
        drop(file2);
        assert!(Pidfile::create(&dir.join("missing/x.pid").to_string_lossy(), me).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
