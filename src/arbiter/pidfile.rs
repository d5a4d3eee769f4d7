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
        let tmp = dir.join(format!(".ferrocorn-pid-{pid}-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{pid}")?;
            std::fs::rename(&tmp, &path)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
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
