//! Why a buffered item is not there.

use std::sync::Arc;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error, boxed: what a [`Spill`](crate::Spill) store returns. The store's own error
/// type stays inside (reach it with [`SpillError::downcast_ref`]), with its `source()` chain;
/// a plain message converts with `.into()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a spill store failed with, as [`Error::Spill`] carries it: shared, so that every
/// reader of the lost item gets the same error (the crate's [`Error`] is `Clone`).
#[derive(Debug, Clone)]
pub struct SpillError(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl SpillError {
    /// The store's own error, if it is an `E` (for example `speedup_paged::Error` from a
    /// `DiskList` store).
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl From<BoxError> for SpillError {
    fn from(error: BoxError) -> Self {
        SpillError(Arc::from(error))
    }
}

impl std::fmt::Display for SpillError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SpillError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Two spill errors are equal when they are the same failure (one store call, shared by
/// its readers) or say the same thing: `Error` derives `PartialEq` for tests and callers
/// that compare results, and an error behind a `dyn` has no equality of its own.
impl PartialEq for SpillError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for SpillError {}

/// Why [`Buffer::try_get`](crate::Buffer::try_get) returned no item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The producer panicked before producing the item; every later item is lost too.
    #[error("the buffer's producer panicked before item {index}: {message}")]
    ProducerPanicked {
        /// The item asked for.
        index: usize,
        /// The producer's panic message.
        message: String,
    },
    /// The producer was stopped before producing the item, without the sequence ending: an
    /// `AsyncBuffer` whose producing task was dropped with its tokio runtime. Every later
    /// item is lost too.
    #[error(
        "item {index} will not come: the buffer's producing task was dropped (its tokio runtime shut down) before producing it"
    )]
    ProducerStopped {
        /// The item asked for.
        index: usize,
    },
    /// The item left a windowed buffer's memory (and no spill store keeps it).
    #[error(
        "item {index} was dropped from the buffer's window (oldest kept: {oldest}); widen the window or enable spilling"
    )]
    Evicted {
        /// The item asked for.
        index: usize,
        /// The oldest item still held.
        oldest: usize,
    },
    /// The sequence breaks the order its halting condition relies on (it decreases under
    /// [`halt::NonDecreasing`](crate::halt::NonDecreasing), or decreases in magnitude under
    /// [`halt::AbsNonDecreasing`](crate::halt::AbsNonDecreasing)), or holds an item not
    /// comparable with its neighbour (NaN), so a search cannot know where to stop.
    #[error(
        "item {index} is smaller than the item before it, or not comparable with it (NaN), in magnitude for AbsNonDecreasing, but the buffer's halting condition assumes the sequence never decreases; search it with halt::MaxAttempts or a closure instead"
    )]
    Unsorted {
        /// The first item found out of order.
        index: usize,
    },
    /// The item was asked for from inside the buffer's own producer (its iterator, or a
    /// window's spill store) when reading it would wait for that very producer: an item
    /// not produced yet, or a spilled item while the spill store runs. Without this error
    /// the call would wait for itself for ever.
    #[error(
        "item {index} was asked for from inside the buffer's own producer (its iterator or spill store), which would wait for itself: read only items produced and not spilled (build_with_prefix gives the iterator a Prefix for that)"
    )]
    Reentrant {
        /// The item asked for.
        index: usize,
    },
    /// The spill store failed to store or read the item.
    #[error("item {index} could not be read from the spill store: {source}")]
    Spill {
        /// The item asked for.
        index: usize,
        /// The store's error.
        source: SpillError,
    },
}

/// The message of a caught panic (the producer's, passed on to readers).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".into())
}

/// Drops a caught panic's payload without letting a panic in its `Drop` escape: that
/// second panic would unwind out of the code that reports the first one (a producer that
/// never announces its end leaves its readers waiting). A payload whose own `Drop` panics
/// again is leaked.
pub(crate) fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    if let Err(nested) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(nested);
    }
}
