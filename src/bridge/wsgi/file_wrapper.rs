//! `wsgi.file_wrapper`: iterates a file in blocks, and lets the worker send a
//! real file with sendfile(2) instead (Gunicorn's FileWrapper semantics).

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

#[pyclass(module = "ferrocorn._ferrocorn", subclass)]
pub struct FileWrapper {
    #[pyo3(get)]
    filelike: Py<PyAny>,
    #[pyo3(get)]
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper { filelike, blksize }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let data = self.filelike.bind(py).call_method1("read", (self.blksize,))?;
        if data.is_truthy()? {
            Ok(data.unbind())
        } else {
            Err(PyStopIteration::new_err(()))
        }
    }

    fn __getitem__(&self, py: Python<'_>, _key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let data = self.filelike.bind(py).call_method1("read", (self.blksize,))?;
        if data.is_truthy()? {
            Ok(data.unbind())
        } else {
            Err(pyo3::exceptions::PyIndexError::new_err(()))
        }
    }

    /// PEP 3333: the wrapper's close() closes the file, when it has one.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}

impl FileWrapper {
    /// The open file descriptor and its current offset, when the wrapped
    /// object is a real file; None sends it by iteration.
    pub fn file_position(&self, py: Python<'_>) -> Option<(i32, u64, u64)> {
        let f = self.filelike.bind(py);
        let fd: i32 = f.call_method0("fileno").ok()?.extract().ok()?;
        // SAFETY: lseek/fstat on an fd the file object owns; errors return None.
        unsafe {
            let offset = libc::lseek(fd, 0, libc::SEEK_CUR);
            if offset < 0 {
                return None;
            }
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 || (st.st_mode & libc::S_IFMT) != libc::S_IFREG {
                return None;
            }
            let size = (st.st_size as u64).saturating_sub(offset as u64);
            Some((fd, offset as u64, size))
        }
    }
}
