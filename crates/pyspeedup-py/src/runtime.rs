//! Entering the interpreter from threads Python did not start, and leaving it alone once it
//! shuts down.
//!
//! A buffer's producer thread and the cache's pool threads call into Python. Once the
//! interpreter starts finalizing, a thread that takes the GIL is killed or aborts the
//! process, so `pyspeedup` registers [`shutdown`] with `atexit`: it stops new entries and
//! waits (GIL released, a few seconds at most) for the threads inside to leave.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
static INSIDE: AtomicUsize = AtomicUsize::new(0);

/// How long [`shutdown`] waits for threads inside the interpreter to leave.
const GRACE: Duration = Duration::from_secs(5);

/// Runs `f` attached to the interpreter, or returns `None` once it is shutting down.
pub(crate) fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    if SHUTTING_DOWN.load(Ordering::SeqCst) {
        return None;
    }
    INSIDE.fetch_add(1, Ordering::SeqCst);
    // Checked again after announcing ourselves: `shutdown` either sees us or we see it.
    let result = if SHUTTING_DOWN.load(Ordering::SeqCst) { None } else { Some(Python::attach(f)) };
    INSIDE.fetch_sub(1, Ordering::SeqCst);
    result
}

/// Stops background threads from entering the interpreter and waits for those inside to
/// leave. Registered with `atexit` by `pyspeedup`; buffers end and pending background
/// computations fail from then on.
#[pyfunction(name = "_shutdown")]
pub(crate) fn shutdown(py: Python<'_>) {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    py.detach(|| {
        let start = Instant::now();
        while INSIDE.load(Ordering::SeqCst) > 0 && start.elapsed() < GRACE {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}
