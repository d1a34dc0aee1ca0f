//! The native core of the Python packages `pyspeedup` and `cereal` (distribution
//! `pyspeedup-rs`): PySpeedup's `DiskDict`/`DiskList`, `Buffer` and `Cache` on the Rust
//! crates of this workspace, as the extension module `pyspeedup._native`.
//!
//! The Python side (`python/`) re-exports these types from `pyspeedup.memory` and
//! `pyspeedup.concurrent`, adds the `buffer` decorator, and implements `cereal.eat`.
//!
//! Guarantees:
//! - No Rust panic reaches Python: every error is an exception (`KeyError`, `IndexError`,
//!   `ValueError`, `OSError` subclasses such as `pyspeedup.memory.Locked` and `Corrupt`).
//! - Disk I/O and every wait (for a buffer's producer, for another thread's computation)
//!   run with the GIL released; no lock of ours is ever waited for with the GIL held.
//! - The objects may be shared between Python threads. The module declares that it does
//!   not need the GIL (`gil_used = false`), so free-threaded CPython builds (3.13t+, as
//!   far as PyO3 supports them) can import it without turning the GIL back on.

mod buffer;
mod cache;
mod codec;
mod errors;
mod memory;
mod runtime;
mod store_handle;

use pyo3::prelude::*;

/// The extension module `pyspeedup._native`.
#[pymodule(gil_used = false)]
#[pyo3(name = "_native")]
fn pyspeedup_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<memory::DiskDict>()?;
    m.add_class::<memory::DiskList>()?;
    m.add_class::<buffer::Buffer>()?;
    m.add_class::<cache::Cache>()?;
    m.add_function(wrap_pyfunction!(buffer::uniformly_non_decreasing, m)?)?;
    m.add_function(wrap_pyfunction!(buffer::absolutely_non_decreasing, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::shutdown, m)?)?;
    m.add("StoreError", py.get_type::<errors::StoreError>())?;
    m.add("Locked", py.get_type::<errors::Locked>())?;
    m.add("Corrupt", py.get_type::<errors::Corrupt>())?;
    m.add("TypeMismatch", py.get_type::<errors::TypeMismatch>())?;
    m.add("RolledBack", py.get_type::<errors::RolledBack>())?;
    m.add("CycleError", py.get_type::<errors::CycleError>())?;
    Ok(())
}
