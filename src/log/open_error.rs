//! Failure to open a log file, worded as Gunicorn's `check_is_writable`.

use std::fmt;
use std::path::PathBuf;

use crate::util::pyrepr::repr_str;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError {
    pub path: PathBuf,
    pub errno: i32,
}

impl OpenError {
    pub(crate) fn last_os_error(path: PathBuf) -> OpenError {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        OpenError { path, errno }
    }

    pub fn io_error(&self) -> std::io::Error {
        std::io::Error::from_raw_os_error(self.errno)
    }
}

/// Python's `OSError.__new__` picks a subclass by errno; `%r` shows it.
fn python_exception_name(errno: i32) -> &'static str {
    match errno {
        libc::EAGAIN | libc::EALREADY | libc::EINPROGRESS => "BlockingIOError",
        libc::ECHILD => "ChildProcessError",
        libc::EPIPE | libc::ESHUTDOWN => "BrokenPipeError",
        libc::ECONNABORTED => "ConnectionAbortedError",
        libc::ECONNREFUSED => "ConnectionRefusedError",
        libc::ECONNRESET => "ConnectionResetError",
        libc::EEXIST => "FileExistsError",
        libc::ENOENT => "FileNotFoundError",
        libc::EISDIR => "IsADirectoryError",
        libc::ENOTDIR => "NotADirectoryError",
        libc::EINTR => "InterruptedError",
        libc::EACCES | libc::EPERM => "PermissionError",
        libc::ESRCH => "ProcessLookupError",
        libc::ETIMEDOUT => "TimeoutError",
        _ => "OSError",
    }
}

/// `strerror` text without the " (os error N)" std appends.
fn strerror(errno: i32) -> String {
    let full = std::io::Error::from_raw_os_error(errno).to_string();
    match full.rfind(" (os error ") {
        Some(i) => full.get(..i).unwrap_or(&full).to_owned(),
        None => full,
    }
}

/// `Error: '/x/y.log' isn't writable [FileNotFoundError(2, 'No such file or directory')]`,
/// byte for byte what Gunicorn raises (it then prints it after "Error: ").
impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut msg = String::new();
        repr_str(&strerror(self.errno), false, &mut msg);
        write!(
            f,
            "Error: '{}' isn't writable [{}({}, {})]",
            self.path.display(),
            python_exception_name(self.errno),
            self.errno,
            msg
        )
    }
}

impl std::error::Error for OpenError {}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected text copied from running
    // `gunicorn --error-logfile /nonexistent/x.log app:app`.
    #[test]
    fn message_matches_gunicorn() {
        let e = OpenError { path: PathBuf::from("/nonexistent/x.log"), errno: libc::ENOENT };
        assert_eq!(
            e.to_string(),
            "Error: '/nonexistent/x.log' isn't writable [FileNotFoundError(2, 'No such file or directory')]"
        );
        let e = OpenError { path: PathBuf::from("/root/x"), errno: libc::EACCES };
        assert_eq!(e.to_string(), "Error: '/root/x' isn't writable [PermissionError(13, 'Permission denied')]");
        let e = OpenError { path: PathBuf::from("/ro/x"), errno: libc::EROFS };
        assert_eq!(e.to_string(), "Error: '/ro/x' isn't writable [OSError(30, 'Read-only file system')]");
    }
}
