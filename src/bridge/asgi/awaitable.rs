//! An awaitable that is already done: what `receive()` and `send()` return
//! when nothing has to wait, so the app's `await` continues at once without
//! an asyncio Future or a trip through the event loop.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

#[pyclass(module = "ferrocorn._ferrocorn", freelist = 64)]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    pub fn new(value: Py<PyAny>) -> Ready {
        Ready { value: Some(value) }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The first step ends the await with the value (StopIteration(value)).
    fn __next__(&mut self, py: Python<'_>) -> PyResult<()> {
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }

    fn send(&mut self, py: Python<'_>, _arg: &Bound<'_, PyAny>) -> PyResult<()> {
        self.__next__(py)
    }

    /// A task cancelled while it awaits this raises the exception here, as
    /// a generator would.
    #[pyo3(signature = (typ, val=None, _tb=None))]
    fn throw(
        &mut self,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.value = None;
        rethrow(typ, val)
    }

    fn close(&mut self) {
        self.value = None;
    }
}

/// The awaitable for a `None` result (every `send()` that did not have to
/// wait): shared, stateless, and it ends the await without even a
/// StopIteration object.
#[pyclass(module = "ferrocorn._ferrocorn", frozen)]
pub struct Done;

#[pymethods]
impl Done {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self) -> Option<Py<PyAny>> {
        None
    }

    fn send(&self, _arg: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
        None
    }

    #[pyo3(signature = (typ, val=None, _tb=None))]
    fn throw(
        &self,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        rethrow(typ, val)
    }

    fn close(&self) {}
}

static DONE: pyo3::sync::PyOnceLock<Py<Done>> = pyo3::sync::PyOnceLock::new();

/// The one `Done` object.
pub fn done(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(DONE.get_or_try_init(py, || Py::new(py, Done))?.clone_ref(py).into_any())
}

/// What `throw()` raises: the exception given, as a generator would.
fn rethrow(typ: &Bound<'_, PyAny>, val: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        return Err(PyErr::from_value(typ.clone()));
    }
    match val {
        Some(v) if v.is_instance_of::<pyo3::exceptions::PyBaseException>() => Err(PyErr::from_value(v.clone())),
        Some(v) if !v.is_none() => Err(PyErr::from_value(typ.call1((v,))?)),
        _ => Err(PyErr::from_value(typ.call0()?)),
    }
}
