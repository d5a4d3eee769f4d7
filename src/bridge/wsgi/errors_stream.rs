//! `wsgi.errors`: a text stream into the error log, as Gunicorn's
//! WSGIErrorsWrapper writes to its error log streams.

use pyo3::prelude::*;

#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct ErrorStream;

#[pymethods]
impl ErrorStream {
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(s) = data.cast::<pyo3::types::PyString>() {
            let s = crate::stable_abi::utf8(s)?;
            crate::log::write_raw(s.as_bytes());
            return Ok(s.chars().count());
        }
        let b: &[u8] = data.extract()?;
        crate::log::write_raw(b);
        Ok(b.len())
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }

    fn flush(&self) {}

    fn writable(&self) -> bool {
        true
    }
}
