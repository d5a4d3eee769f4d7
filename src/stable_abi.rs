//! The two C-API calls ferrocorn needs that Python 3.9's stable ABI lacks.
//!
//! The extension is built against the stable ABI (`abi3`, Python 3.9 and
//! later), so one wheel serves every CPython from 3.9 on. Two calls on the
//! hot path are only part of the stable ABI from 3.10:
//!
//! - `PyUnicode_AsUTF8AndSize` (a `str`'s UTF-8 text, cached in the object,
//!   without a copy): every CPython since 3.3 exports it with this signature,
//!   3.9 only leaves it out of the limited headers. Declaring it here keeps
//!   the no-copy read on 3.9 too (pyo3's limited-API fallback would build a
//!   `bytes` object and copy it for every header a WSGI app returns).
//! - `PyIter_Send` (one step of a coroutine, whose return is not raised as
//!   StopIteration): it first exists in 3.10, so referencing it would make
//!   the extension fail to load on 3.9. It is looked up once at run time;
//!   3.9 steps the coroutine with `coro.send(value)` instead.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::os::raw::c_char;
use std::sync::OnceLock;

extern "C" {
    // Exported by every CPython 3.3+; see the module documentation.
    fn PyUnicode_AsUTF8AndSize(unicode: *mut ffi::PyObject, size: *mut ffi::Py_ssize_t) -> *const c_char;
}

/// The text of a `str`, borrowed from the object (which caches its UTF-8
/// form). Fails for strings holding lone surrogates, as `str.encode()` does.
pub fn utf8<'a>(s: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str; the returned buffer belongs to it and lives
    // as long as it does, which the borrow of `s` guarantees.
    let data = unsafe { PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if data.is_null() {
        return Err(PyErr::fetch(s.py()));
    }
    let len = usize::try_from(size).unwrap_or(0);
    // SAFETY: CPython guarantees `size` bytes of valid UTF-8 at `data`.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
    // SAFETY: as above, the buffer is UTF-8 (the encoder refused surrogates).
    Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// What one step of a coroutine gave.
pub enum Sent<'py> {
    Yielded(Bound<'py, PyAny>),
    Returned,
    Raised(PyErr),
}

type IterSend = unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject, *mut *mut ffi::PyObject) -> libc::c_int;

/// `PyIter_Send` when this interpreter has it (3.10 and later).
fn iter_send() -> Option<IterSend> {
    static FOUND: OnceLock<Option<IterSend>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; the interpreter's symbols
        // are in the global scope of the process that imported us.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"PyIter_Send".as_ptr()) };
        // SAFETY: when present, the symbol is CPython's PyIter_Send, whose
        // signature is the one declared above.
        (!sym.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, IterSend>(sym) })
    })
}

/// Sends `value` into the coroutine `coro` (the step `await` takes).
pub fn send<'py>(coro: &Bound<'py, PyAny>, value: &Bound<'py, PyAny>) -> Sent<'py> {
    let py = coro.py();
    let Some(iter_send) = iter_send() else {
        return match coro.call_method1(pyo3::intern!(py, "send"), (value,)) {
            Ok(yielded) => Sent::Yielded(yielded),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => Sent::Returned,
            Err(e) => Sent::Raised(e),
        };
    };
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: both objects are alive for the call; `out` receives a new
    // reference, or NULL with an exception set.
    let result = unsafe { iter_send(coro.as_ptr(), value.as_ptr(), &mut out) };
    // PYGEN_RETURN = 0, PYGEN_ERROR = -1, PYGEN_NEXT = 1 (CPython's
    // PySendResult, fixed by the stable ABI).
    match result {
        1 => {
            // SAFETY: a new reference, owned from here on.
            Sent::Yielded(unsafe { Bound::from_owned_ptr(py, out) })
        }
        0 => {
            // SAFETY: the return value, a new reference, dropped here.
            drop(unsafe { Bound::<PyAny>::from_owned_ptr_or_opt(py, out) });
            Sent::Returned
        }
        _ => Sent::Raised(PyErr::fetch(py)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_reads_text_and_refuses_surrogates() {
        crate::python::with_python(|py| {
            let s = PyString::new(py, "héllo ☃");
            assert_eq!(utf8(&s).expect("text"), "héllo ☃");
            let lone = py.eval(c"'a\\ud800'", None, None).expect("eval");
            assert!(utf8(lone.cast::<PyString>().expect("str")).is_err());
        });
    }

    #[test]
    fn send_steps_a_coroutine_both_ways() {
        crate::python::with_python(|py| {
            let ns = pyo3::types::PyDict::new(py);
            py.run(
                c"import types\n@types.coroutine\ndef step():\n    got = yield 'first'\n    return got\nasync def f():\n    x = await step()\n    if x == 'boom':\n        raise ValueError(x)\n    return x\n",
                Some(&ns),
                None,
            )
            .expect("define");
            let f = ns.get_item("f").expect("get").expect("f");
            for (second, ends_in_error) in [("fine", false), ("boom", true)] {
                let coro = f.call0().expect("coroutine");
                let none = py.None().into_bound(py);
                match send(&coro, &none) {
                    Sent::Yielded(v) => assert_eq!(v.extract::<String>().expect("str"), "first"),
                    _ => panic!("the first step yields"),
                }
                let value = PyString::new(py, second).into_any();
                match send(&coro, &value) {
                    Sent::Returned => assert!(!ends_in_error),
                    Sent::Raised(e) => assert!(ends_in_error && e.is_instance_of::<pyo3::exceptions::PyValueError>(py)),
                    Sent::Yielded(_) => panic!("the second step ends it"),
                }
            }
        });
    }
}
