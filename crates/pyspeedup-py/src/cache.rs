//! `pyspeedup.concurrent.Cache` over speedup-cache.
//!
//! Arguments are keyed by their encoding (see [`crate::codec`]), so the Rust cache never
//! needs the GIL to hash or compare a key. A hit is answered with the GIL held; a miss
//! runs the function in this thread, or waits with the GIL released for the thread that
//! already runs it. An exception is not cached: every caller waiting for that key gets
//! it, and the next call computes again. A key that depends on itself raises `CycleError`.

use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyString, PyTuple};

use crate::codec::{self, Role};
use crate::errors::CycleError;

/// The arguments of one call, as the function receives them.
struct Call {
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
}

/// A cache key: the encoded arguments (compared and hashed), plus the arguments themselves
/// when the key may have to be computed.
#[derive(Clone)]
struct Key {
    bytes: Box<[u8]>,
    call: Option<Arc<Call>>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl fmt::Debug for Key {
    /// The arguments as far as they can be shown without the GIL: `(5,)`, `('a', 2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut rest = &self.bytes[..];
        while rest.len() >= 4 {
            let (len, tail) = rest.split_at(4);
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let Some((arg, tail)) = tail.split_at_checked(len) else { break };
            parts.push(codec::describe(arg));
            rest = tail;
        }
        if parts.len() == 1 { write!(f, "({},)", parts[0]) } else { write!(f, "({})", parts.join(", ")) }
    }
}

/// The exception a computation raised, shared by everyone who waited for it.
#[derive(Clone)]
struct Raised(Arc<PyErr>);

impl fmt::Debug for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the function raised an exception")
    }
}

type Value = Arc<Py<PyAny>>;
type Inner = speedup_cache::Cache<Key, Value, Raised>;

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

std::thread_local! {
    /// The handles of the computations running on this thread, innermost last: a call made
    /// from inside a computation goes through its handle, so that speedup-cache can follow
    /// the chain of keys (cycle detection) across threads.
    static FRAMES: RefCell<Vec<(usize, Inner)>> = const { RefCell::new(Vec::new()) };
}

/// Pops this thread's innermost frame when the computation ends, however it ends.
struct FrameGuard;

impl FrameGuard {
    fn push(id: usize, handle: &Inner) -> FrameGuard {
        FRAMES.with(|f| f.borrow_mut().push((id, handle.attached_clone())));
        FrameGuard
    }
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        // The handle may be the last reference to a Python object: drop it after the borrow.
        let popped = FRAMES.with(|f| f.borrow_mut().pop());
        drop(popped);
    }
}

/// Appends one argument's encoding, length-prefixed.
fn push_arg(arg: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    codec::encode(arg, Role::Key, out)
        .map_err(|e| PyTypeError::new_err(format!("Cache arguments must be hashable and picklable: {e}")))?;
    let len =
        u32::try_from(out.len() - at - 4).map_err(|_| PyTypeError::new_err("a Cache argument over 4 GiB"))?;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// An argument the hit index may key on: its Python equality is the key encoding's.
fn plain_argument(arg: &Bound<'_, PyAny>) -> bool {
    arg.is_exact_instance_of::<PyInt>()
        || arg.is_exact_instance_of::<PyString>()
        || arg.is_exact_instance_of::<PyBytes>()
        || arg.is_none()
}

fn key_bytes(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Box<[u8]>> {
    let mut out = Vec::with_capacity(16);
    for arg in args.iter() {
        push_arg(&arg, &mut out)?;
    }
    if let Some(kwargs) = kwargs.filter(|k| !k.is_empty()) {
        // Keyword arguments in name order, after a separator no positional encoding has.
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut items: Vec<(String, Bound<'_, PyAny>)> =
            kwargs.iter().map(|(k, v)| Ok((k.extract::<String>()?, v))).collect::<PyResult<_>>()?;
        items.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in items {
            push_arg(&name.into_pyobject(args.py())?.into_any(), &mut out)?;
            push_arg(&value, &mut out)?;
        }
    }
    Ok(out.into_boxed_slice())
}

fn full_key(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Key> {
    Ok(Key {
        bytes: key_bytes(args, kwargs)?,
        call: Some(Arc::new(Call {
            args: args.clone().unbind(),
            kwargs: kwargs.map(|k| k.clone().unbind()),
        })),
    })
}

fn raise(py: Python<'_>, err: speedup_cache::Error<Raised>) -> PyErr {
    match err {
        speedup_cache::Error::Failed { error, .. } => error.0.clone_ref(py),
        speedup_cache::Error::Cycle { key, path } => {
            CycleError::new_err(format!("the call with arguments {key} depends on itself (through {path})"))
        }
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

/// A memoizing decorator whose recursive calls may run in parallel, once per arguments,
/// without deadlocks (`pyspeedup.concurrent.Cache`).
#[pyclass(frozen, subclass, weakref, dict, module = "pyspeedup.concurrent", name = "Cache")]
pub(crate) struct Cache {
    inner: Inner,
    id: usize,
    /// The wrapped function.
    func: Py<PyAny>,
    /// Cached values by positional-argument tuple, for the hit path: one dict lookup,
    /// like `functools.lru_cache` (Python's own hash is fine for this in-memory index).
    hits: Py<PyDict>,
}

impl Cache {
    /// The handle to call through: the innermost computation of this cache on this thread,
    /// or the cache itself.
    fn handle(&self) -> Inner {
        FRAMES
            .with(|f| f.borrow().iter().rev().find(|(id, _)| *id == self.id).map(|(_, h)| h.attached_clone()))
            .unwrap_or_else(|| self.inner.clone())
    }

    fn keys(arg_tuples: &Bound<'_, PyTuple>) -> PyResult<Vec<Key>> {
        arg_tuples
            .iter()
            .map(|t| {
                let args = t.cast_into::<PyTuple>().map_err(|_| {
                    PyTypeError::new_err(
                        "batch_async takes tuples of arguments: batch_async((n - 1,), (n - 2,))",
                    )
                })?;
                full_key(&args, None)
            })
            .collect()
    }
}

#[pymethods]
impl Cache {
    /// Wraps `func`.
    #[new]
    fn new(func: Py<PyAny>) -> PyResult<Self> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let f = Python::attach(|py| func.clone_ref(py));
        let inner = Inner::try_new(move |handle: &Inner, key: Key| {
            let Some(call) = key.call.clone() else {
                // Every key that can be computed carries its arguments; see `__call__`.
                return Err(speedup_cache::Error::Panicked {
                    key: format!("{key:?}"),
                    message: "internal error: a key without its arguments was computed".into(),
                });
            };
            crate::runtime::attach(|py| {
                let _frame = FrameGuard::push(id, handle);
                match f.bind(py).call(call.args.bind(py), call.kwargs.as_ref().map(|k| k.bind(py))) {
                    Ok(v) => Ok(Arc::new(v.unbind())),
                    Err(e) => Err(speedup_cache::Error::failed(Raised(Arc::new(e)))),
                }
            })
            .unwrap_or_else(|| {
                Err(speedup_cache::Error::Panicked {
                    key: format!("{key:?}"),
                    message: "the interpreter is shutting down".into(),
                })
            })
        });
        let hits = Python::attach(|py| PyDict::new(py).unbind());
        Ok(Cache { inner, id, func, hits })
    }

    /// The function's value for these arguments: cached, computed now, or waited for.
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // The index of hits answers only calls whose arguments are exact ints, strs, bytes
        // or None, given by position: for those, Python's `==` (the index's) and the key
        // encoding (the cache's) agree. Others (floats, Decimals, subclasses, types with
        // their own `__eq__`) always ask the cache, so the index never answers a call with
        // the value of one the cache keeps apart. One int or str argument is its own key
        // (lru_cache's fast path: no tuple to hash or compare); other calls are keyed by
        // their argument tuple, which never equals an int or a str.
        let indexed = kwargs.is_none_or(|k| k.is_empty()) && args.as_slice().iter().all(plain_argument);
        let index_key = match args.as_slice() {
            [arg] if arg.is_exact_instance_of::<PyInt>() || arg.is_exact_instance_of::<PyString>() => arg,
            _ => args.as_any(),
        };
        if indexed && let Ok(Some(v)) = self.hits.bind(py).get_item(index_key) {
            return Ok(v);
        }
        let bytes = key_bytes(args, kwargs)?;
        let probe = Key { bytes, call: None };
        if self.inner.contains_key(&probe) {
            // Cached (values are never evicted): answered without releasing the GIL.
            return match self.inner.try_get(probe) {
                Ok(v) => Ok(v.bind(py).clone()),
                Err(e) => Err(raise(py, e)),
            };
        }
        let key = Key {
            bytes: probe.bytes,
            call: Some(Arc::new(Call {
                args: args.clone().unbind(),
                kwargs: kwargs.map(|k| k.clone().unbind()),
            })),
        };
        let handle = self.handle();
        match py.detach(move || handle.try_get(key)) {
            Ok(v) => {
                if indexed {
                    let _ = self.hits.bind(py).set_item(index_key, v.bind(py));
                }
                Ok(v.bind(py).clone())
            }
            Err(e) => Err(raise(py, e)),
        }
    }

    /// Starts computing the function for these arguments on the pool and returns at once
    /// (nothing happens if the value is cached or already being computed).
    #[pyo3(signature = (*args, **kwargs))]
    fn apply_async(&self, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        let key = full_key(args, kwargs)?;
        let handle = self.handle();
        args.py().detach(move || handle.apply_async(key));
        Ok(())
    }

    /// Like `apply_async` for each tuple of arguments, but only when two or more of them
    /// are missing (one missing value is computed by the call that follows, in place).
    #[pyo3(signature = (*arg_tuples))]
    fn batch_async(&self, arg_tuples: &Bound<'_, PyTuple>) -> PyResult<()> {
        let keys = Cache::keys(arg_tuples)?;
        let handle = self.handle();
        arg_tuples.py().detach(move || handle.batch_async(keys));
        Ok(())
    }

    /// Whether a value is cached for these arguments.
    #[pyo3(signature = (*args, **kwargs))]
    fn cached(&self, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<bool> {
        Ok(self.inner.contains_key(&Key { bytes: key_bytes(args, kwargs)?, call: None }))
    }

    /// The number of cached values.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Cache({}, {} cached)", self.func.bind(py).repr()?, self.inner.len()))
    }
}
