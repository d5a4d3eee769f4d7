//! A setting's raw value before validation, whatever its source.
//!
//! The command line and `GUNICORN_CMD_ARGS` only ever give strings and flags; a
//! config file gives Python objects. Converting both into one small enum lets a
//! single validator per setting serve every source, as Gunicorn's do.

use pyo3::prelude::*;

#[derive(Debug)]
pub enum Input {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Input>),
    Dict(Vec<(Input, Input)>),
    /// Any other Python object (a callable hook, a class): kept for the
    /// settings that take one, described by `repr` in error messages.
    Object {
        repr: String,
        obj: Py<PyAny>,
    },
}

impl Input {
    /// What Gunicorn's error messages show for a value (`%s` of the Python object).
    pub fn describe(&self) -> String {
        match self {
            Input::None => "None".into(),
            Input::Bool(b) => {
                if *b {
                    "True".into()
                } else {
                    "False".into()
                }
            }
            Input::Int(i) => i.to_string(),
            Input::Float(f) => format!("{f:?}"),
            Input::Str(s) => s.clone(),
            Input::List(items) => {
                let inner: Vec<String> = items.iter().map(Input::describe_repr).collect();
                format!("[{}]", inner.join(", "))
            }
            Input::Dict(items) => {
                let inner: Vec<String> =
                    items.iter().map(|(k, v)| format!("{}: {}", k.describe_repr(), v.describe_repr())).collect();
                format!("{{{}}}", inner.join(", "))
            }
            Input::Object { repr, .. } => repr.clone(),
        }
    }

    fn describe_repr(&self) -> String {
        match self {
            Input::Str(s) => format!("'{s}'"),
            other => other.describe(),
        }
    }

    pub fn clone_ref(&self, py: Python<'_>) -> Input {
        match self {
            Input::None => Input::None,
            Input::Bool(b) => Input::Bool(*b),
            Input::Int(i) => Input::Int(*i),
            Input::Float(f) => Input::Float(*f),
            Input::Str(s) => Input::Str(s.clone()),
            Input::List(v) => Input::List(v.iter().map(|i| i.clone_ref(py)).collect()),
            Input::Dict(v) => Input::Dict(v.iter().map(|(k, x)| (k.clone_ref(py), x.clone_ref(py))).collect()),
            Input::Object { repr, obj } => Input::Object { repr: repr.clone(), obj: obj.clone_ref(py) },
        }
    }

    /// Converts a value found in a config file.
    pub fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Input> {
        use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
        if obj.is_none() {
            return Ok(Input::None);
        }
        if let Ok(b) = obj.cast::<PyBool>() {
            return Ok(Input::Bool(b.is_true()));
        }
        if obj.is_instance_of::<PyInt>() {
            if let Ok(i) = obj.extract::<i128>() {
                return Ok(Input::Int(i));
            }
        }
        if let Ok(f) = obj.cast::<PyFloat>() {
            return Ok(Input::Float(f.value()));
        }
        if let Ok(s) = obj.cast::<PyString>() {
            return Ok(Input::Str(crate::stable_abi::utf8(s)?.to_owned()));
        }
        if let Ok(l) = obj.cast::<PyList>() {
            return Ok(Input::List(l.iter().map(|i| Input::from_py(&i)).collect::<PyResult<_>>()?));
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            return Ok(Input::List(t.iter().map(|i| Input::from_py(&i)).collect::<PyResult<_>>()?));
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            let mut items = Vec::with_capacity(d.len());
            for (k, v) in d.iter() {
                items.push((Input::from_py(&k)?, Input::from_py(&v)?));
            }
            return Ok(Input::Dict(items));
        }
        Ok(Input::Object { repr: obj.str()?.to_string(), obj: obj.clone().unbind() })
    }
}
