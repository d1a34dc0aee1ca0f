//! `pyspeedup.concurrent.Buffer` over speedup-buffer.
//!
//! The generator runs on speedup-buffer's producer thread, which takes the GIL for each
//! `next()`. A reader that has to wait for an item waits with the GIL released, so the
//! producer can run; an item already produced is read without releasing it.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{PyIndexError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyIterator, PyList, PySlice};

/// One produced item: a value, or the exception the generator raised (its last item).
enum Item {
    Value(Py<PyAny>),
    Raised(PyErr),
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

std::thread_local! {
    /// The buffer whose generator this thread is running right now (0: none).
    static PRODUCING: Cell<usize> = const { Cell::new(0) };
    /// That buffer's items written so far (speedup-buffer publishes them in batches).
    static PREFIX: std::cell::RefCell<Option<speedup_buffer::Prefix<Item>>> = const { std::cell::RefCell::new(None) };
    /// The values pulled in the current turn, not yet in that prefix.
    static TURN: std::cell::RefCell<Vec<Py<PyAny>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Holds the producer back until the buffer is first read.
///
/// A decorated generator may read its own buffer through the name the decorator binds
/// (the prime sieve): it must not run before that name exists.
#[derive(Default)]
struct StartGate {
    /// 0: wait, 1: run, 2: stop (the buffer is being dropped unread).
    state: parking_lot::Mutex<u8>,
    changed: parking_lot::Condvar,
    open: std::sync::atomic::AtomicBool,
}

impl StartGate {
    fn set(&self, state: u8) {
        *self.state.lock() = state;
        self.open.store(true, Ordering::Release);
        self.changed.notify_all();
    }

    /// Opens the gate (cheap once open).
    fn start(&self) {
        if !self.open.load(Ordering::Acquire) {
            self.set(1);
        }
    }

    /// Waits (on the producer thread, without the GIL) until the gate opens; `false` to stop.
    fn wait(&self) -> bool {
        let mut state = self.state.lock();
        while *state == 0 {
            self.changed.wait(&mut state);
        }
        *state == 1
    }
}

/// The generator, pulled by speedup-buffer's producer thread.
struct Producer {
    iter: Option<Py<PyIterator>>,
    /// Items pulled in one turn with the GIL (a GIL hand-off per item would cost more than
    /// most generators' items), handed to speedup-buffer one by one.
    pulled: std::collections::VecDeque<Item>,
    /// Items pulled per turn: the buffer size, at most [`MAX_TURN`].
    turn: usize,
    owner: usize,
    gate: Option<std::sync::Arc<StartGate>>,
    /// What this producer wrote so far, published or not: the generator may read it.
    prefix: Option<speedup_buffer::Prefix<Item>>,
}

impl Iterator for Producer {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if let Some(gate) = self.gate.take()
            && !gate.wait()
        {
            self.iter = None;
        }
        if let Some(item) = self.pulled.pop_front() {
            return Some(item);
        }
        let iter = self.iter.as_ref()?;
        PREFIX.with(|p| *p.borrow_mut() = self.prefix.take());
        let (owner, turn, pulled) = (self.owner, self.turn, &mut self.pulled);
        // Once the interpreter shuts down, the sequence ends here.
        let finished = crate::runtime::attach(|py| {
            let previous = PRODUCING.replace(owner);
            let iter = iter.bind(py);
            let mut finished = false;
            while pulled.len() < turn {
                match iter.clone().next() {
                    Some(Ok(v)) => {
                        // The generator may read its own items, those of this turn too.
                        TURN.with(|t| t.borrow_mut().push(v.clone().unbind()));
                        pulled.push_back(Item::Value(v.unbind()));
                    }
                    Some(Err(e)) => {
                        pulled.push_back(Item::Raised(e));
                        finished = true;
                        break;
                    }
                    None => {
                        finished = true;
                        break;
                    }
                }
            }
            PRODUCING.set(previous);
            TURN.with(|t| t.borrow_mut().clear());
            finished
        })
        .unwrap_or(true);
        self.prefix = PREFIX.with(|p| p.borrow_mut().take());
        if finished {
            // The end, or an exception: the generator is finished either way.
            self.iter = None;
        }
        self.pulled.pop_front()
    }
}

/// Most items pulled from a generator in one turn with the GIL.
const MAX_TURN: usize = 64;

/// How `x in buffer` decides that `x` cannot come later.
enum Halt {
    /// `buffer._cache[-1] > x` (the default: counters, primes, ...).
    NonDecreasing,
    /// `abs(buffer._cache[-1]) > abs(x)` (spirals, alternating series, ...).
    AbsNonDecreasing,
    /// `f(buffer, x, attempts)`.
    Python(Py<PyAny>),
}

/// A generator run ahead of its readers on another thread; its output is cached, so it
/// can be indexed, iterated any number of times and searched with `in`
/// (`pyspeedup.concurrent.Buffer`).
#[pyclass(frozen, subclass, weakref, module = "pyspeedup.concurrent", name = "Buffer")]
pub(crate) struct Buffer {
    /// `None` only while the object is being destroyed.
    inner: Option<speedup_buffer::Buffer<Item>>,
    id: usize,
    gate: std::sync::Arc<StartGate>,
    halt: Halt,
    /// How far the generator runs ahead of the furthest item asked for.
    #[pyo3(get)]
    buffersize: usize,
}

impl Buffer {
    fn inner(&self) -> PyResult<&speedup_buffer::Buffer<Item>> {
        self.inner.as_ref().ok_or_else(|| PyRuntimeError::new_err("the Buffer is being destroyed"))
    }

    /// Item `index`, waiting (GIL released) for the producer if needed; `None` past the end.
    fn item<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Option<Bound<'py, PyAny>>> {
        let inner = self.inner()?;
        self.gate.start();
        let got = if index < inner.produced() {
            inner.try_get(index)
        } else {
            if PRODUCING.get() == self.id {
                // The generator reads its own output: what it wrote, published or not.
                return PREFIX.with(|p| {
                    let prefix = p.borrow();
                    let Some(prefix) = prefix.as_ref() else {
                        return Err(PyRuntimeError::new_err("a Buffer's generator read its buffer from an unexpected thread"));
                    };
                    match prefix.get(index) {
                        Some(Item::Value(v)) => return Ok(Some(v.bind(py).clone())),
                        Some(Item::Raised(e)) => return Err(e.clone_ref(py)),
                        None => {}
                    }
                    let written = prefix.len();
                    let this_turn = TURN.with(|t| index.checked_sub(written).and_then(|i| t.borrow().get(i).map(|v| v.bind(py).clone())));
                    match this_turn {
                        Some(v) => Ok(Some(v)),
                        None => Err(PyRuntimeError::new_err(format!(
                            "this Buffer's generator asked for its own item {index}, which it has not produced yet \
                             (it has produced {}): it would wait for itself forever",
                            written + TURN.with(|t| t.borrow().len())
                        ))),
                    }
                });
            }
            py.detach(|| inner.try_get(index))
        };
        match got {
            Ok(Some(Item::Value(v))) => Ok(Some(v.bind(py).clone())),
            Ok(Some(Item::Raised(e))) => Err(e.clone_ref(py)),
            // Past the end of a sequence that ended with an exception: that exception.
            Ok(None) => match inner.produced().checked_sub(1).map(|last| inner.try_get(last)) {
                Some(Ok(Some(Item::Raised(e)))) => Err(e.clone_ref(py)),
                _ => Ok(None),
            },
            Err(e) => Err(PyRuntimeError::new_err(e.to_string())),
        }
    }

    fn produced(&self) -> PyResult<usize> {
        self.gate.start();
        Ok(self.inner()?.produced())
    }

    /// The newest produced item (`buffer._cache[-1]`).
    fn newest<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.produced()? {
            0 => Ok(None),
            n => self.item(py, n - 1),
        }
    }
}

fn halts(slf: &Bound<'_, Buffer>, item: &Bound<'_, PyAny>, attempts: usize) -> PyResult<bool> {
    let py = slf.py();
    let this = slf.get();
    match &this.halt {
        Halt::Python(f) => f.bind(py).call1((slf, item, attempts))?.is_truthy(),
        Halt::NonDecreasing => match this.newest(py)? {
            Some(newest) => newest.gt(item),
            None => Ok(false),
        },
        Halt::AbsNonDecreasing => match this.newest(py)? {
            Some(newest) => newest.call_method0("__abs__")?.gt(item.call_method0("__abs__")?),
            None => Ok(false),
        },
    }
}

#[pymethods]
impl Buffer {
    /// Starts running `generator` (a generator function, called with no arguments, or any
    /// iterable) on another thread, `buffersize` items ahead of the furthest item asked for.
    #[new]
    #[pyo3(signature = (generator, buffersize = 16, haltCondition = None))]
    #[allow(non_snake_case)] // the original's keyword
    fn new(
        py: Python<'_>,
        generator: &Bound<'_, PyAny>,
        buffersize: usize,
        haltCondition: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let iter = if generator.hasattr("__next__")? {
            generator.try_iter()?
        } else if generator.is_callable() {
            generator.call0()?.try_iter()?
        } else {
            generator.try_iter()?
        };
        let native = py.import("pyspeedup._native")?;
        let halt = match haltCondition {
            None => Halt::NonDecreasing,
            Some(f) if f.bind(py).is(&native.getattr("uniformlyNonDecreasing")?) => Halt::NonDecreasing,
            Some(f) if f.bind(py).is(&native.getattr("absolutelyNonDecreasing")?) => Halt::AbsNonDecreasing,
            Some(f) if f.bind(py).is_callable() => Halt::Python(f),
            Some(_) => {
                return Err(PyTypeError::new_err(
                    "haltCondition must be a function f(buffer, item, attempts)",
                ));
            }
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let gate = std::sync::Arc::new(StartGate::default());
        let mut producer = Producer {
            iter: Some(iter.unbind()),
            pulled: std::collections::VecDeque::new(),
            turn: buffersize.clamp(1, MAX_TURN),
            owner: id,
            gate: Some(std::sync::Arc::clone(&gate)),
            prefix: None,
        };
        let inner = speedup_buffer::Buffer::builder()
            .lookahead(buffersize)
            // `in` is implemented here, with Python's `==` and halting conditions.
            .halt(|_: &Item, _: &Item, _: usize| true)
            .build_with_prefix(move |prefix| {
                producer.prefix = Some(prefix);
                producer
            });
        Ok(Buffer { inner: Some(inner), id, gate, halt, buffersize })
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(slice) = index.cast::<PySlice>() {
            let start: Option<isize> = slice.getattr("start")?.extract()?;
            let stop: Option<isize> = slice.getattr("stop")?.extract()?;
            let step: Option<isize> = slice.getattr("step")?.extract()?;
            let (start, step) = (start.unwrap_or(0), step.unwrap_or(1));
            if start < 0 || stop.is_some_and(|s| s < 0) || step < 1 {
                return Err(PyIndexError::new_err(
                    "Buffer slices need start, stop >= 0 and step >= 1 (the end of the sequence is not known in advance)",
                ));
            }
            let out = PyList::empty(py);
            let mut i = start.unsigned_abs();
            while stop.is_none_or(|s| i < s.unsigned_abs()) {
                match self.item(py, i)? {
                    Some(v) => out.append(v)?,
                    None => break,
                }
                i += step.unsigned_abs();
            }
            return Ok(out.into_any());
        }
        let i: isize =
            index.extract().map_err(|_| PyTypeError::new_err("Buffer indices must be integers or slices"))?;
        let Ok(i) = usize::try_from(i) else {
            return Err(PyIndexError::new_err(
                "Buffer indices must be >= 0 (the end of the sequence is not known in advance)",
            ));
        };
        self.item(py, i)?.ok_or_else(|| {
            PyIndexError::new_err(format!(
                "Buffer index {i} out of range: the sequence has {} items",
                self.inner.as_ref().map_or(0, |b| b.produced())
            ))
        })
    }

    fn __iter__(slf: Py<Self>) -> BufferIter {
        BufferIter { buffer: slf, next: AtomicUsize::new(0) }
    }

    /// An iterator over the sequence, from its first item (the original's `buffer()`).
    fn __call__(slf: Py<Self>) -> BufferIter {
        BufferIter { buffer: slf, next: AtomicUsize::new(0) }
    }

    /// Whether `item` occurs: searches what is produced, then new items until the halting
    /// condition says `item` cannot come later, or the sequence ends.
    fn __contains__(slf: &Bound<'_, Self>, item: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let mut index = 0;
        if matches!(this.halt, Halt::NonDecreasing) {
            // Sorted: bisect the produced prefix for the first item not below `item`.
            let (mut lo, mut hi) = (0, this.produced()?);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match this.item(py, mid)? {
                    Some(v) if v.lt(item)? => lo = mid + 1,
                    _ => hi = mid,
                }
            }
            index = lo;
        }
        let mut attempts = 0;
        loop {
            let produced = this.produced()?;
            while index < produced {
                match this.item(py, index)? {
                    Some(v) if v.eq(item)? => return Ok(true),
                    Some(_) => index += 1,
                    None => return Ok(false),
                }
            }
            if produced > 0 {
                attempts += 1;
                if halts(slf, item, attempts)? {
                    // The condition looked at the newest item, which the producer may have
                    // added after the scan above: whatever it saw must be searched too.
                    let seen = this.produced()?;
                    while index < seen {
                        match this.item(py, index)? {
                            Some(v) if v.eq(item)? => return Ok(true),
                            Some(_) => index += 1,
                            None => break,
                        }
                    }
                    return Ok(false);
                }
            }
            // One more item, or the end.
            if this.item(py, produced)?.is_none() {
                return Ok(false);
            }
        }
    }

    /// The items produced so far, read without waiting (`_cache[-1]` is the newest): what
    /// halting conditions look at.
    #[getter]
    fn _cache(slf: Py<Self>) -> CacheView {
        CacheView { buffer: slf }
    }

    /// How many items the generator has produced so far.
    #[getter(produced)]
    fn produced_count(&self) -> PyResult<usize> {
        self.produced()
    }

    fn __repr__(&self) -> String {
        format!(
            "Buffer(buffersize={}, produced={})",
            self.buffersize,
            self.inner.as_ref().map_or(0, |b| b.produced())
        )
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // Dropping joins the producer thread, which may be waiting for the GIL to finish its
        // current `next()`: let it have it.
        if !self.gate.open.load(Ordering::Acquire) {
            self.gate.set(2); // never read: the generator never runs
        }
        if let Some(inner) = self.inner.take() {
            Python::attach(|py| py.detach(move || drop(inner)));
        }
    }
}

/// Iterator over a [`Buffer`], from its first item.
#[pyclass(module = "pyspeedup.concurrent")]
pub(crate) struct BufferIter {
    buffer: Py<Buffer>,
    next: AtomicUsize,
}

#[pymethods]
impl BufferIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let index = self.next.load(Ordering::Relaxed);
        let item = self.buffer.get().item(py, index)?;
        if item.is_some() {
            self.next.store(index + 1, Ordering::Relaxed);
        }
        Ok(item)
    }
}

/// The produced prefix of a [`Buffer`] (`buffer._cache`), readable without waiting.
#[pyclass(module = "pyspeedup.concurrent")]
pub(crate) struct CacheView {
    buffer: Py<Buffer>,
}

#[pymethods]
impl CacheView {
    fn __len__(&self) -> PyResult<usize> {
        self.buffer.get().produced()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyAny>> {
        let buffer = self.buffer.get();
        let len = buffer.produced()?;
        let pos = if index < 0 { index.checked_add_unsigned(len) } else { Some(index) };
        match pos.and_then(|p| usize::try_from(p).ok()) {
            Some(p) if p < len => {
                buffer.item(py, p)?.ok_or_else(|| PyIndexError::new_err("index out of range"))
            }
            _ => Err(PyIndexError::new_err("index out of range (nothing produced that far yet)")),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let buffer = self.buffer.get();
        let items = (0..buffer.produced()?)
            .map(|i| {
                Ok(buffer
                    .item(py, i)?
                    .map(|v| v.repr().map(|r| r.to_string()))
                    .transpose()?
                    .unwrap_or_default())
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(format!("[{}]", items.join(", ")))
    }
}

/// The default halting condition: stop once the newest produced item is greater than the
/// one searched for (the sequence never decreases). The original compared the other way.
#[pyfunction]
#[pyo3(name = "uniformlyNonDecreasing")] // the original's name
pub(crate) fn uniformly_non_decreasing(
    buffer: &Bound<'_, Buffer>,
    item: &Bound<'_, PyAny>,
    attempts: usize,
) -> PyResult<bool> {
    let _ = attempts;
    match buffer.get().newest(buffer.py())? {
        Some(newest) => newest.gt(item),
        None => Ok(false),
    }
}

/// Stop once the newest produced item is greater than the one searched for in absolute
/// value (the magnitudes never decrease: a spiral, an alternating series).
#[pyfunction]
#[pyo3(name = "absolutelyNonDecreasing")] // the original's name
pub(crate) fn absolutely_non_decreasing(
    buffer: &Bound<'_, Buffer>,
    item: &Bound<'_, PyAny>,
    attempts: usize,
) -> PyResult<bool> {
    let _ = attempts;
    match buffer.get().newest(buffer.py())? {
        Some(newest) => newest.call_method0("__abs__")?.gt(item.call_method0("__abs__")?),
        None => Ok(false),
    }
}
