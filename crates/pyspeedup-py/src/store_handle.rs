//! An open speedup-paged store as the Python classes hold it: the one owner of opening
//! with the original's parameters, of "closed means `ValueError`", of releasing the GIL
//! around every store call, and of the flush on drop. `DiskDict` and `DiskList` differ
//! only in their methods.
//!
//! The mutex is only ever taken with the GIL released (`Python::detach`): a thread doing
//! disk I/O never blocks the interpreter, and a thread waiting for the store never holds
//! the GIL that the I/O thread needs to return. No Python code runs while it is held.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use pyo3::prelude::*;

use crate::codec::{self, Role};
use crate::errors;

/// What the handle needs of a store (both of speedup-paged's stores have it).
pub(crate) trait PagedStore: Send + Sized {
    fn open_with(name: &str, opts: &speedup_paged::Options) -> speedup_paged::Result<Self>;
    fn path(&self) -> &std::path::Path;
    fn header_fallback(&self) -> Option<&speedup_paged::HeaderFallback>;
    fn flush(&mut self) -> speedup_paged::Result<()>;
    fn close(self) -> speedup_paged::Result<()>;
}

macro_rules! paged_store {
    ($store:ty) => {
        impl PagedStore for $store {
            fn open_with(name: &str, opts: &speedup_paged::Options) -> speedup_paged::Result<Self> {
                <$store>::open_with(name, opts)
            }
            fn path(&self) -> &std::path::Path {
                <$store>::path(self)
            }
            fn header_fallback(&self) -> Option<&speedup_paged::HeaderFallback> {
                <$store>::header_fallback(self)
            }
            fn flush(&mut self) -> speedup_paged::Result<()> {
                <$store>::flush(self)
            }
            fn close(self) -> speedup_paged::Result<()> {
                <$store>::close(self)
            }
        }
    };
}
paged_store!(speedup_paged::DiskDict<Vec<u8>, Vec<u8>>);
paged_store!(speedup_paged::DiskList<Vec<u8>>);

/// A store until `close()`; `None` after it.
pub(crate) struct StoreHandle<S: PagedStore> {
    store: Mutex<Option<S>>,
    /// Set once `close()` released the store: iterators check it on every item, which must
    /// cost a load, not a GIL release and a lock.
    closed: AtomicBool,
    path: String,
}

impl<S: PagedStore> StoreHandle<S> {
    /// Opens (or creates) the store `name` with the original's parameters: `file_location`
    /// defaults to `~/.PySpeedup`; a damaged newest header is reported as a warning.
    pub(crate) fn open(
        py: Python<'_>,
        name: &str,
        size_limit: i64,
        max_pages: i64,
        file_location: Option<String>,
    ) -> PyResult<Self> {
        let location = match file_location {
            Some(l) => l,
            None => default_location(py)?,
        };
        let opts = options(size_limit, max_pages, &location)?;
        let store = py.detach(|| S::open_with(name, &opts)).map_err(errors::store)?;
        let path = store.path().display().to_string();
        errors::warn_fallback(py, &path, store.header_fallback())?;
        Ok(StoreHandle { store: Mutex::new(Some(store)), closed: AtomicBool::new(false), path })
    }

    /// The store file's path, as opened.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Runs `f` on the open store with the GIL released; `ValueError` once closed.
    pub(crate) fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut S) -> speedup_paged::Result<R> + Send,
    ) -> PyResult<R> {
        py.detach(|| {
            let mut guard = self.store.lock();
            let store = guard.as_mut().ok_or(Failure::Closed)?;
            f(store).map_err(Failure::Store)
        })
        .map_err(Failure::into_py)
    }

    /// Flushes and releases the store; later calls raise `ValueError`. Idempotent. If the
    /// flush fails (a full disk), the store stays open with its entries, so that the caller
    /// can free space and call `close()` again: nothing is released unflushed.
    pub(crate) fn close(&self, py: Python<'_>) -> PyResult<()> {
        let closed = py.detach(|| {
            let mut guard = self.store.lock();
            let Some(store) = guard.as_mut() else { return Ok(()) };
            store.flush()?;
            self.closed.store(true, Ordering::Release);
            guard.take().map_or(Ok(()), S::close)
        });
        closed.map_err(errors::store)
    }

    /// Whether `close()` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// `obj` as bytes for the store; when it cannot be encoded, a closed store's
    /// `ValueError` comes first (as for a closed file), then the encoding's own error.
    pub(crate) fn encoded(&self, obj: &Bound<'_, PyAny>, role: Role) -> PyResult<Vec<u8>> {
        codec::to_bytes(obj, role).or_else(|error| {
            self.check_open()?;
            Err(error)
        })
    }

    /// `ValueError` once `close()` was called, as for a closed file.
    pub(crate) fn check_open(&self) -> PyResult<()> {
        if self.is_closed() { Err(errors::closed()) } else { Ok(()) }
    }
}

impl<S: PagedStore> Drop for StoreHandle<S> {
    fn drop(&mut self) {
        // Flushes in speedup-paged's close; the GIL is not needed for that. The error has
        // no caller to go to, and Python may be finalizing (no warning can be raised), so
        // it goes to stderr: a lost flush must not be silent.
        if let Some(store) = self.store.get_mut().take()
            && let Err(error) = store.close()
        {
            eprintln!(
                "pyspeedup: {} was dropped without close() and its flush failed, entries written since its last flush are lost: {error}",
                self.path
            );
        }
    }
}

/// An error met with the GIL released, turned into an exception once it is held again.
enum Failure {
    Closed,
    Store(speedup_paged::Error),
}

impl Failure {
    fn into_py(self) -> PyErr {
        match self {
            Failure::Closed => errors::closed(),
            Failure::Store(e) => errors::store(e),
        }
    }
}

fn options(size_limit: i64, max_pages: i64, file_location: &str) -> PyResult<speedup_paged::Options> {
    // The original's checks, with its messages.
    if max_pages < 1 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "There must be allowed at least one page in RAM.",
        ));
    }
    if size_limit < 1 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "There must be allowed at least one item per page.",
        ));
    }
    let clamp = |v: i64| usize::try_from(v).unwrap_or(usize::MAX);
    Ok(speedup_paged::Options::new()
        .location(file_location)
        .size_limit(clamp(size_limit))
        .max_pages(clamp(max_pages)))
}

/// The original's default folder, `~/.PySpeedup` (expanded as Python's `os.path` does).
fn default_location(py: Python<'_>) -> PyResult<String> {
    let home: String = py.import("os.path")?.call_method1("expanduser", ("~",))?.extract()?;
    Ok(std::path::Path::new(&home).join(".PySpeedup").display().to_string())
}
