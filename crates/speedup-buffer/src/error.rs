//! Why a buffered item is not there.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// The spill store failed to store or read the item.
    #[error("item {index} could not be read from the spill store: {message}")]
    Spill {
        /// The item asked for.
        index: usize,
        /// What the spill store said.
        message: String,
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
