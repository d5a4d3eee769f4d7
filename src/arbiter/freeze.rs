//! Keeping a `--preload`ed heap shared after fork. Forked workers share the
//! master's pages until they write to them, and CPython's cyclic garbage
//! collector writes to every object it examines (the `gc_refs` in each
//! object's header), so the first full collection in a worker copies nearly
//! the whole preloaded heap. `gc.freeze()` in the master moves every object
//! tracked so far into the permanent generation, which no collection
//! examines, so the workers' collections stay on their own objects.
//! Reference counts are not covered: an object a worker uses (or the page
//! it sits on) is still copied on the first `Py_INCREF`.

use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the heap is frozen: only the first fork freezes.
static FROZEN: AtomicBool = AtomicBool::new(false);

/// Freezes the master's heap right before its first fork, when the app is
/// preloaded and `preload_freeze` is on, after a collection, so the
/// import's garbage is freed rather than kept for good. Later forks
/// (replacements, reloads) freeze nothing more: frozen objects are never
/// collected, so a cycle the master drops later (a reloaded configuration
/// module, a hook's worker object) would leak once per fork; what the
/// master makes after the first fork is small beside the app.
pub(super) fn before_fork(py: Python<'_>, settings: &crate::settings::Settings) {
    if !settings.preload_app || !settings.preload_freeze || FROZEN.swap(true, Ordering::Relaxed) {
        return;
    }
    if let Err(err) = freeze(py) {
        // Freezing is an optimisation: a failure costs memory, not service.
        crate::log::warning!("gc.freeze() of the preloaded app failed: {}", crate::python::exception_text(py, &err));
    }
}

/// The dirty arbiter is forked before the first worker (and before
/// `when_ready`), so it inherits the preloaded heap unfrozen; it freezes
/// what it inherited first thing. No collection first: that would examine
/// (and so copy) every inherited object; `gc.freeze()` itself only relinks
/// the generations' list heads. The dirty workers it forks inherit the
/// frozen heap in turn.
pub(crate) fn in_dirty_arbiter(py: Python<'_>, settings: &crate::settings::Settings) {
    if !settings.preload_app || !settings.preload_freeze {
        return;
    }
    let frozen = py.import("gc").and_then(|gc| {
        gc.call_method0("freeze")?;
        gc.call_method0("get_freeze_count")?.extract::<usize>()
    });
    match frozen {
        Ok(n) => crate::log::debug!("Dirty arbiter froze the preloaded heap it inherited: {n} objects"),
        Err(err) => {
            crate::log::warning!("gc.freeze() in the dirty arbiter failed: {}", crate::python::exception_text(py, &err))
        }
    }
}

fn freeze(py: Python<'_>) -> PyResult<()> {
    let gc = py.import("gc")?;
    let freed = gc.call_method0("collect")?.extract::<usize>()?;
    gc.call_method0("freeze")?;
    let frozen = gc.call_method0("get_freeze_count")?.extract::<usize>()?;
    crate::log::info!("Froze the preloaded heap before forking: {frozen} objects ({freed} unreachable freed first)");
    Ok(())
}
