//! A log destination shared by every thread of a pre-fork process.
//!
//! Writers never lock: they load the current fd number and issue one
//! `write(2)`. That keeps logging safe in a child forked while another
//! thread was reconfiguring, and means a record from several processes
//! appending to one O_APPEND file is never split.
//!
//! Once a file has been opened its fd number is never closed again, only
//! replaced in place with `dup3` (reopen, retarget). A writer racing with a
//! reopen therefore lands its line in the old or the new file, never in an
//! unrelated descriptor that happened to reuse the number.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::open_error::OpenError;

/// Python's `open(path, "a")` creates with 0o666 and lets the umask trim
/// it; Gunicorn creates its logs that way, so ferrocorn does too.
const CREATE_MODE: libc::c_uint = 0o666;

/// Where a sink writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The sink's standard stream: stderr for the error log, stdout for
    /// the access log (what Gunicorn's `"-"` means for each).
    Std,
    File(PathBuf),
}

impl Target {
    /// Gunicorn's convention: `"-"` is the standard stream, anything else
    /// a path.
    pub fn from_setting(value: &str) -> Target {
        if value == "-" {
            Target::Std
        } else {
            Target::File(PathBuf::from(value))
        }
    }
}

struct Control {
    target: Target,
    /// Our own descriptor, allocated on the first file open and only ever
    /// overwritten with dup3 afterwards.
    slot: Option<libc::c_int>,
    /// Extra descriptors (stdout/stderr under `--capture-output`) that
    /// must follow every (re)open of the file.
    mirrors: Vec<libc::c_int>,
}

pub struct Sink {
    std_fd: libc::c_int,
    fd: AtomicI32,
    control: Mutex<Control>,
}

impl Sink {
    pub const fn new(std_fd: libc::c_int) -> Sink {
        Sink {
            std_fd,
            fd: AtomicI32::new(std_fd),
            control: Mutex::new(Control { target: Target::Std, slot: None, mirrors: Vec::new() }),
        }
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        // A panic while holding this lock leaves nothing half-updated that
        // matters more than continuing to log.
        self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn target(&self) -> Target {
        self.control().target.clone()
    }

    /// The descriptor writers currently use (for handing to code that
    /// needs a raw fd, e.g. a `wsgi.errors` fallback).
    pub fn raw_fd(&self) -> libc::c_int {
        self.fd.load(Ordering::Acquire)
    }

    /// Points the sink at `target`, opening the file now so a bad path is
    /// reported at configuration time as Gunicorn does.
    pub fn set_target(&self, target: Target) -> Result<(), OpenError> {
        let mut ctl = self.control();
        match &target {
            Target::Std => {
                if let Some(slot) = ctl.slot {
                    // Keep the slot pointing somewhere harmless for any
                    // writer that already loaded its number.
                    let _ = replace_fd(self.std_fd, slot);
                }
                self.fd.store(self.std_fd, Ordering::Release);
                ctl.mirrors.clear();
            }
            Target::File(path) => {
                let fresh = open_append(path)?;
                let fd = install(&mut ctl, fresh, path)?;
                self.fd.store(fd, Ordering::Release);
                mirror(&ctl, fd);
            }
        }
        ctl.target = target;
        Ok(())
    }

    /// Re-opens the file by path (after logrotate moved it). A standard
    /// stream target has nothing to reopen.
    pub fn reopen(&self) -> Result<(), OpenError> {
        let mut ctl = self.control();
        let Target::File(path) = ctl.target.clone() else {
            return Ok(());
        };
        let fresh = open_append(&path)?;
        let fd = install(&mut ctl, fresh, &path)?;
        self.fd.store(fd, Ordering::Release);
        mirror(&ctl, fd);
        Ok(())
    }

    /// Gunicorn's `--capture-output`: make `fds` (stdout, stderr) write to
    /// this sink's file, now and after every reopen. No effect while the
    /// target is the standard stream, as in Gunicorn.
    pub fn capture(&self, fds: &[libc::c_int]) -> Result<(), OpenError> {
        let mut ctl = self.control();
        let Target::File(path) = ctl.target.clone() else {
            return Ok(());
        };
        let fd = self.fd.load(Ordering::Acquire);
        for &target in fds {
            replace_fd(fd, target).map_err(|errno| OpenError { path: path.clone(), errno })?;
        }
        ctl.mirrors = fds.to_vec();
        Ok(())
    }

    /// Gunicorn chowns its log files to the worker user so workers can
    /// reopen them after dropping privileges.
    pub fn chown(&self, uid: libc::uid_t, gid: libc::gid_t) -> std::io::Result<()> {
        let ctl = self.control();
        if !matches!(ctl.target, Target::File(_)) {
            return Ok(());
        }
        let fd = self.fd.load(Ordering::Acquire);
        // SAFETY: fchown on a descriptor we own; no memory is passed.
        if unsafe { libc::fchown(fd, uid, gid) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Writes `buf` with a single `write(2)` whenever the kernel accepts it
    /// whole (always for regular files); only a short write to a pipe or
    /// an EINTR makes it continue with the rest. Errors are dropped: a log
    /// that cannot be written must not take the server down.
    pub fn write(&self, buf: &[u8]) {
        write_fd(self.fd.load(Ordering::Acquire), buf);
    }
}

fn write_fd(fd: libc::c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let Ok(n) = usize::try_from(n) else { return };
        if n == 0 {
            return;
        }
        buf = buf.get(n..).unwrap_or(&[]);
    }
}

fn open_append(path: &Path) -> Result<libc::c_int, OpenError> {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return Err(OpenError { path: path.to_owned(), errno: libc::EINVAL });
    };
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC;
    loop {
        // SAFETY: c_path is a valid NUL-terminated string.
        let fd = unsafe { libc::open(c_path.as_ptr(), flags, CREATE_MODE) };
        if fd >= 0 {
            return Ok(fd);
        }
        let err = OpenError::last_os_error(path.to_owned());
        if err.errno != libc::EINTR {
            return Err(err);
        }
    }
}

/// Moves `fresh` into the slot (allocating the slot the first time) and
/// returns the descriptor writers should use.
fn install(ctl: &mut Control, fresh: libc::c_int, path: &Path) -> Result<libc::c_int, OpenError> {
    match ctl.slot {
        None => {
            ctl.slot = Some(fresh);
            Ok(fresh)
        }
        Some(slot) => {
            let result = replace_fd(fresh, slot);
            // SAFETY: fresh is ours and no longer needed either way.
            unsafe { libc::close(fresh) };
            result.map_err(|errno| OpenError { path: path.to_owned(), errno })?;
            Ok(slot)
        }
    }
}

fn mirror(ctl: &Control, fd: libc::c_int) {
    for &target in &ctl.mirrors {
        let _ = replace_fd(fd, target);
    }
}

/// Atomically makes `target` refer to what `source` refers to, keeping
/// close-on-exec on our own slot (dup2 would clear it) but not on the
/// standard streams, which children must inherit.
fn replace_fd(source: libc::c_int, target: libc::c_int) -> Result<(), i32> {
    if source == target {
        return Ok(());
    }
    let cloexec = target > 2;
    loop {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        // SAFETY: plain descriptor syscalls.
        let rc = unsafe { libc::dup3(source, target, if cloexec { libc::O_CLOEXEC } else { 0 }) };
        #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
        // SAFETY: plain descriptor syscalls.
        let rc = unsafe {
            let rc = libc::dup2(source, target);
            if rc >= 0 && cloexec {
                libc::fcntl(target, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            rc
        };
        if rc >= 0 {
            return Ok(());
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        if errno != libc::EINTR && errno != libc::EBUSY {
            return Err(errno);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrocorn-sink-{}-{}", std::process::id(), name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn appends_and_reopens_after_rotation() {
        let dir = scratch("rotate");
        let path = dir.join("a.log");
        let sink = Sink::new(2);
        sink.set_target(Target::File(path.clone())).unwrap();
        let fd = sink.raw_fd();
        sink.write(b"one\n");
        fs::rename(&path, dir.join("a.log.1")).unwrap();
        sink.write(b"two\n");
        sink.reopen().unwrap();
        assert_eq!(sink.raw_fd(), fd, "fd number must stay stable across reopen");
        sink.write(b"three\n");
        assert_eq!(fs::read_to_string(dir.join("a.log.1")).unwrap(), "one\ntwo\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "three\n");
        // SAFETY: checking flags of our own descriptor.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_path_reports_errno() {
        let sink = Sink::new(2);
        let err = sink.set_target(Target::File(PathBuf::from("/nonexistent-dir/x.log"))).unwrap_err();
        assert_eq!(err.errno, libc::ENOENT);
        assert_eq!(sink.raw_fd(), 2);
        assert_eq!(sink.target(), Target::Std);
    }

    #[test]
    fn retarget_keeps_slot_and_back_to_std() {
        let dir = scratch("retarget");
        let sink = Sink::new(1);
        sink.set_target(Target::File(dir.join("a"))).unwrap();
        let slot = sink.raw_fd();
        sink.set_target(Target::File(dir.join("b"))).unwrap();
        assert_eq!(sink.raw_fd(), slot);
        sink.write(b"b\n");
        sink.set_target(Target::Std).unwrap();
        assert_eq!(sink.raw_fd(), 1);
        sink.set_target(Target::File(dir.join("a"))).unwrap();
        assert_eq!(sink.raw_fd(), slot);
        sink.write(b"a\n");
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "a\n");
        assert_eq!(fs::read_to_string(dir.join("b")).unwrap(), "b\n");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_mode_follows_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let sink = Sink::new(2);
        sink.set_target(Target::File(dir.join("m.log"))).unwrap();
        // SAFETY: umask only reads/sets the process mask; restored at once.
        let mask = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        };
        let mode = fs::metadata(dir.join("m.log")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !(mask as u32));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn setting_dash_is_std() {
        assert_eq!(Target::from_setting("-"), Target::Std);
        assert_eq!(Target::from_setting("x.log"), Target::File(PathBuf::from("x.log")));
    }
}
