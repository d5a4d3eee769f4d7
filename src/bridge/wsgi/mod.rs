//! The WSGI (PEP 3333) bridge: environ, `wsgi.input`, `start_response`,
//! `write`, `wsgi.file_wrapper`, `wsgi.errors`, and running the app.
//! Workers supply a body source and a sink; everything else is shared.

pub mod call;
pub mod environ;
pub mod errors_stream;
pub mod file_wrapper;
pub mod h2;
pub mod input;
pub mod response;

use pyo3::prelude::*;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<input::InputStream>()?;
    m.add_class::<response::WsgiResponse>()?;
    m.add_class::<file_wrapper::FileWrapper>()?;
    m.add_class::<errors_stream::ErrorStream>()?;
    let py = m.py();
    m.add("ParseException", py.get_type::<input::ParseException>())?;
    m.add("NoMoreData", py.get_type::<input::NoMoreData>())?;
    m.add("InvalidResponseHeader", py.get_type::<response::InvalidResponseHeader>())?;
    m.add("InvalidResponseHeaderName", py.get_type::<response::InvalidResponseHeaderName>())?;
    Ok(())
}
