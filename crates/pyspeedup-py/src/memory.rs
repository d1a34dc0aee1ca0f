//! `pyspeedup.memory`: `DiskDict` and `DiskList` over speedup-paged.
//!
//! Both hold their store in a [`StoreHandle`], which releases the GIL around every store
//! call. No Python code runs while the store is held (keys and values are encoded before
//! and decoded after), so the objects are safe to share between threads.

use parking_lot::Mutex;
use pyo3::exceptions::{PyIndexError, PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PySlice, PyTuple};

use crate::codec::{self, Role};
use crate::store_handle::StoreHandle;

type Bytes = Vec<u8>;

/// `index` as a list index: `IndexError` for an int too large (as `list` does), `TypeError`
/// for anything else that is not an int.
fn list_index(index: &Bound<'_, PyAny>) -> PyResult<isize> {
    if index.is_instance_of::<pyo3::types::PyInt>() {
        index.extract().map_err(|_| PyIndexError::new_err("cannot fit 'int' into an index-sized integer"))
    } else {
        index.extract().map_err(|_| PyTypeError::new_err("list indices must be integers or slices"))
    }
}

/// Entries read per trip to the store while iterating.
const CHUNK: usize = 256;

/// A dict paged to disk: bounded RAM, persistent across runs (`pyspeedup.memory.DiskDict`).
#[pyclass(frozen, subclass, weakref, module = "pyspeedup.memory", name = "DiskDict")]
pub(crate) struct DiskDict {
    store: StoreHandle<speedup_paged::DiskDict<Bytes, Bytes>>,
    #[pyo3(get)]
    size_limit: i64,
    #[pyo3(get)]
    max_pages: i64,
    #[pyo3(get)]
    path: String,
}

impl DiskDict {
    /// Runs `f` on the open store with the GIL released.
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut speedup_paged::DiskDict<Bytes, Bytes>) -> speedup_paged::Result<R> + Send,
    ) -> PyResult<R> {
        self.store.with(py, f)
    }
}

#[pymethods]
impl DiskDict {
    /// Opens (or creates) the store `file_basename` in `file_location`.
    #[new]
    #[pyo3(signature = (file_basename, size_limit = 1024, max_pages = 16, file_location = None))]
    fn new(
        py: Python<'_>,
        file_basename: &str,
        size_limit: i64,
        max_pages: i64,
        file_location: Option<String>,
    ) -> PyResult<Self> {
        let store = StoreHandle::open(py, file_basename, size_limit, max_pages, file_location)?;
        let path = store.path().to_owned();
        Ok(DiskDict { store, size_limit, max_pages, path })
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |s| Ok(s.len()))
    }

    fn __getitem__<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        let k = self.store.encoded(key, Role::Key)?;
        match self.with(py, move |s| s.get(&k))? {
            Some(v) => codec::decode(py, &v),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = self.store.encoded(key, Role::Key)?;
        let v = self.store.encoded(value, Role::Value)?;
        self.with(key.py(), move |s| s.insert(k, v).map(drop))
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = self.store.encoded(key, Role::Key)?;
        match self.with(key.py(), move |s| s.remove(&k))? {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(k) = codec::to_bytes(key, Role::Key) else {
            self.store.check_open()?;
            return Ok(false); // an unhashable object is in no dict
        };
        self.with(key.py(), move |s| s.contains_key(&k))
    }

    /// `d[key]` if `key` is in the store, else `default`.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        let k = self.store.encoded(key, Role::Key)?;
        match self.with(py, move |s| s.get(&k))? {
            Some(v) => codec::decode(py, &v),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// Iterates over the keys present when iteration starts (a snapshot of the keys, so
    /// the store may change meanwhile; keys removed since are skipped by `items()`).
    fn __iter__(slf: Bound<'_, Self>) -> PyResult<KeyIter> {
        let keys = slf.get().with(slf.py(), |s| s.keys().collect::<speedup_paged::Result<Vec<Bytes>>>())?;
        Ok(KeyIter { dict: slf.unbind(), keys: Mutex::new(keys.into_iter()) })
    }

    /// Removes every entry.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| {
            s.clear();
            Ok(())
        })
    }

    /// Makes everything written so far durable (it survives a crash from here on).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.flush())
    }

    /// Flushes and releases the store; later operations raise `ValueError`. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.store.close(py)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.store.is_closed()
    }

    /// `ValueError` on a closed store, as `with` on a closed file.
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().store.check_open()?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "DiskDict(path={:?}, size_limit={}, max_pages={})",
            self.path, self.size_limit, self.max_pages
        )
    }
}

/// The keys of a [`DiskDict`], as they were when the iteration started; `ValueError` once
/// the dict is closed (as iterating a closed file).
#[pyclass(module = "pyspeedup.memory")]
pub(crate) struct KeyIter {
    dict: Py<DiskDict>,
    keys: Mutex<std::vec::IntoIter<Bytes>>,
}

#[pymethods]
impl KeyIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.dict.get().store.check_open()?;
        let next = self.keys.lock().next();
        next.map(|k| codec::decode(py, &k)).transpose()
    }
}

/// The folder stores go to when no `file_location` is given: `~/.PySpeedup`.
/// A list paged to disk: bounded RAM, persistent across runs (`pyspeedup.memory.DiskList`).
#[pyclass(frozen, subclass, weakref, module = "pyspeedup.memory", name = "DiskList")]
pub(crate) struct DiskList {
    store: StoreHandle<speedup_paged::DiskList<Bytes>>,
    #[pyo3(get)]
    size_limit: i64,
    #[pyo3(get)]
    max_pages: i64,
    #[pyo3(get)]
    path: String,
}

impl DiskList {
    /// Runs `f` on the open store with the GIL released.
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut speedup_paged::DiskList<Bytes>) -> speedup_paged::Result<R> + Send,
    ) -> PyResult<R> {
        self.store.with(py, f)
    }

    /// `index` (negative from the end) as a position in `0..len`, or `IndexError`.
    fn position(&self, py: Python<'_>, index: isize) -> PyResult<usize> {
        let len = self.__len__(py)?;
        let pos = if index < 0 { index.checked_add_unsigned(len) } else { Some(index) };
        match pos.and_then(|p| usize::try_from(p).ok()) {
            Some(p) if p < len => Ok(p),
            _ => Err(PyIndexError::new_err("list index out of range")),
        }
    }
}

#[pymethods]
impl DiskList {
    /// Opens (or creates) the list `file_basename` in `file_location`.
    #[new]
    #[pyo3(signature = (file_basename, size_limit = 1024, max_pages = 16, file_location = None))]
    fn new(
        py: Python<'_>,
        file_basename: &str,
        size_limit: i64,
        max_pages: i64,
        file_location: Option<String>,
    ) -> PyResult<Self> {
        let store = StoreHandle::open(py, file_basename, size_limit, max_pages, file_location)?;
        let path = store.path().to_owned();
        Ok(DiskList { store, size_limit, max_pages, path })
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |s| Ok(s.len()))
    }

    fn __getitem__<'py>(&self, index: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = index.py();
        if let Ok(slice) = index.cast::<PySlice>() {
            let len = self.__len__(py)?;
            let ind = slice.indices(isize::try_from(len).unwrap_or(isize::MAX))?;
            let positions: Vec<usize> = (0..ind.slicelength)
                .filter_map(|i| usize::try_from(ind.start + ind.step * i as isize).ok())
                .collect();
            let items = self.with(py, move |s| {
                positions
                    .iter()
                    .filter_map(|&p| s.get(p).transpose())
                    .collect::<speedup_paged::Result<Vec<_>>>()
            })?;
            let out = pyo3::types::PyList::empty(py);
            for item in items {
                out.append(codec::decode(py, &item)?)?;
            }
            return Ok(out.into_any());
        }
        let i = list_index(index)?;
        let pos = self.position(py, i)?;
        match self.with(py, move |s| s.get(pos))? {
            Some(v) => codec::decode(py, &v),
            None => Err(PyIndexError::new_err("list index out of range")),
        }
    }

    fn __setitem__(&self, index: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = index.py();
        let i = list_index(index)?;
        let v = self.store.encoded(value, Role::Value)?;
        let pos = self.position(py, i)?;
        self.with(py, move |s| s.set(pos, v).map(drop))
    }

    fn __delitem__(&self, index: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = index.py();
        if let Ok(slice) = index.cast::<PySlice>() {
            let len = self.__len__(py)?;
            let ind = slice.indices(isize::try_from(len).unwrap_or(isize::MAX))?;
            let mut positions: Vec<usize> = (0..ind.slicelength)
                .filter_map(|i| usize::try_from(ind.start + ind.step * i as isize).ok())
                .collect();
            positions.sort_unstable_by(|a, b| b.cmp(a));
            return self.with(py, move |s| positions.iter().try_for_each(|&p| s.remove(p).map(drop)));
        }
        let i = list_index(index)?;
        let pos = self.position(py, i)?;
        self.with(py, move |s| s.remove(pos).map(drop))
    }

    /// Appends `value` at the end.
    fn append(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = self.store.encoded(value, Role::Value)?;
        self.with(value.py(), move |s| s.push(v))
    }

    /// Appends every item of `values`.
    fn extend(&self, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut batch = Vec::new();
        for item in values.try_iter()? {
            batch.push(self.store.encoded(&item?, Role::Value)?);
            if batch.len() == CHUNK {
                let full = std::mem::take(&mut batch);
                self.with(values.py(), move |s| s.extend(full))?;
            }
        }
        self.with(values.py(), move |s| s.extend(batch))
    }

    /// Inserts `value` before `index` (clamped to the list, like `list.insert`).
    fn insert(&self, py: Python<'_>, index: isize, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = self.store.encoded(value, Role::Value)?;
        self.with(py, move |s| {
            let len = s.len();
            let pos = if index < 0 { index.checked_add_unsigned(len).map_or(0, |p| p.max(0)) } else { index };
            let pos = usize::try_from(pos).unwrap_or(0).min(len);
            s.insert(pos, v)
        })
    }

    /// Removes and returns the item at `index` (the last by default).
    #[pyo3(signature = (index = -1))]
    fn pop<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyAny>> {
        let len = self.__len__(py)?;
        if len == 0 {
            return Err(PyIndexError::new_err("pop from empty list"));
        }
        let pos = self.position(py, index).map_err(|_| PyIndexError::new_err("pop index out of range"))?;
        let v = self.with(py, move |s| s.remove(pos))?;
        codec::decode(py, &v)
    }

    /// Removes every item.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| {
            s.clear();
            Ok(())
        })
    }

    fn __iter__(slf: Py<Self>) -> ListIter {
        ListIter { list: slf, state: Mutex::new((0, Vec::new().into_iter())) }
    }

    /// Makes everything written so far durable (it survives a crash from here on).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.flush())
    }

    /// Flushes and releases the store; later operations raise `ValueError`. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.store.close(py)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.store.is_closed()
    }

    /// `ValueError` on a closed store, as `with` on a closed file.
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().store.check_open()?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "DiskList(path={:?}, size_limit={}, max_pages={})",
            self.path, self.size_limit, self.max_pages
        )
    }
}

/// Iterator over a [`DiskList`]: reads [`CHUNK`] items per trip, sees appends made
/// while it runs (like a `list` iterator).
#[pyclass(module = "pyspeedup.memory")]
pub(crate) struct ListIter {
    list: Py<DiskList>,
    state: Mutex<(usize, std::vec::IntoIter<Bytes>)>,
}

#[pymethods]
impl ListIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        // Never wait for the lock with the GIL held: the holder may be waiting for the GIL.
        let Some(mut state) = self.state.try_lock() else {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "iterator already executing in another thread",
            ));
        };
        // Items of a chunk read before a `close()` are not handed out after it.
        self.list.get().store.check_open()?;
        if let Some(item) = state.1.next() {
            return codec::decode(py, &item).map(Some);
        }
        let start = state.0;
        let chunk = self.list.get().with(py, move |s| {
            (start..s.len().min(start + CHUNK))
                .filter_map(|i| s.get(i).transpose())
                .collect::<speedup_paged::Result<Vec<_>>>()
        })?;
        state.0 += chunk.len();
        state.1 = chunk.into_iter();
        state.1.next().map(|item| codec::decode(py, &item)).transpose()
    }
}
