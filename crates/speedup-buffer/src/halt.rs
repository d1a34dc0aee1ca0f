//! Halting conditions for [`Buffer::contains`](crate::Buffer::contains): when a search for a
//! value that has not shown up yet should give up.
//!
//! A condition sees the newest item examined, the target, and how many items it has
//! examined, and answers "stop searching now". Any `Fn(&T, &T, usize) -> bool` is one.

/// Decides when [`Buffer::contains`](crate::Buffer::contains) stops looking.
pub trait Halt<T>: Send + Sync {
    /// Whether to stop: `newest` is the last item compared (not equal to `target`) and
    /// `attempts` the number of items compared so far.
    fn halt(&self, newest: &T, target: &T, attempts: usize) -> bool;

    /// Whether the condition implies the sequence is sorted ascending, so that the cached
    /// prefix may be searched by bisection instead of a scan.
    fn sorted(&self) -> bool {
        false
    }

    /// Whether the condition relies on an order of the sequence (then `keeps_order` says
    /// whether a pair of neighbours respects it). A search checks the order on every item
    /// it examines, and on the item after the one that stops it, and reports a sequence
    /// that breaks it ([`Error::Unsorted`](crate::Error::Unsorted)) rather than answering.
    fn assumes_order(&self) -> bool {
        false
    }

    /// Whether `next`, the item right after `previous`, respects the order the condition
    /// relies on. Only asked when [`Halt::assumes_order`] is true.
    fn keeps_order(&self, previous: &T, next: &T) -> bool {
        let _ = (previous, next);
        true
    }
}

impl<T, F: Fn(&T, &T, usize) -> bool + Send + Sync> Halt<T> for F {
    fn halt(&self, newest: &T, target: &T, attempts: usize) -> bool {
        self(newest, target, attempts)
    }
}

/// The default: the sequence never decreases (the primes, a counter, the positive
/// Fibonacci numbers), so once an item is greater than the target, the target cannot
/// come later. (The original checked this backwards; see the crate docs.) A search checks
/// that assumption on the items it examines and reports a decrease as
/// [`Error::Unsorted`](crate::Error::Unsorted).
#[derive(Debug, Clone, Copy, Default)]
pub struct NonDecreasing;

impl<T: PartialOrd> Halt<T> for NonDecreasing {
    fn halt(&self, newest: &T, target: &T, _: usize) -> bool {
        newest > target
    }

    fn sorted(&self) -> bool {
        true
    }

    fn assumes_order(&self) -> bool {
        true
    }

    fn keeps_order(&self, previous: &T, next: &T) -> bool {
        // An item incomparable with its neighbour (NaN) breaks the order too: `0, NaN, -1`
        // never has a pair in decreasing order, yet it decreases, and a search for 1
        // would never stop.
        matches!(next.partial_cmp(previous), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal))
    }
}

/// The sequence's magnitudes never decrease (a spiral in the complex plane, an alternating
/// series growing in size): stop once an item's magnitude exceeds the target's.
#[derive(Debug, Clone, Copy, Default)]
pub struct AbsNonDecreasing;

impl<T: Magnitude> Halt<T> for AbsNonDecreasing {
    fn halt(&self, newest: &T, target: &T, _: usize) -> bool {
        newest.cmp_magnitude(target) == Some(std::cmp::Ordering::Greater)
    }

    fn assumes_order(&self) -> bool {
        true
    }

    fn keeps_order(&self, previous: &T, next: &T) -> bool {
        matches!(next.cmp_magnitude(previous), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal))
    }
}

/// Give up after examining this many items (a guard for sequences with no usable order).
#[derive(Debug, Clone, Copy)]
pub struct MaxAttempts(pub usize);

impl<T> Halt<T> for MaxAttempts {
    fn halt(&self, _: &T, _: &T, attempts: usize) -> bool {
        attempts >= self.0
    }
}

/// A value's size, for [`AbsNonDecreasing`]. Implemented for the primitive numbers;
/// implement it for your own types (complex numbers, vectors).
pub trait Magnitude {
    /// The magnitude (absolute value, norm).
    fn magnitude(&self) -> f64;

    /// How this value's magnitude compares with `other`'s (`None`: incomparable, as NaN).
    /// By default through [`Magnitude::magnitude`]; the integers compare their exact
    /// absolute values, since an `f64` cannot tell 2^60 from 2^60 + 1 (and a search would
    /// then miss a decrease and never stop).
    fn cmp_magnitude(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.magnitude().partial_cmp(&other.magnitude())
    }
}

macro_rules! magnitude_signed {
    ($($t:ty),*) => {$(
        impl Magnitude for $t {
            fn magnitude(&self) -> f64 {
                (*self as f64).abs()
            }
            fn cmp_magnitude(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.unsigned_abs().cmp(&other.unsigned_abs()))
            }
        }
    )*};
}
macro_rules! magnitude_unsigned {
    ($($t:ty),*) => {$(
        impl Magnitude for $t {
            fn magnitude(&self) -> f64 {
                *self as f64
            }
            fn cmp_magnitude(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
    )*};
}
macro_rules! magnitude_float {
    ($($t:ty),*) => {$(
        impl Magnitude for $t {
            fn magnitude(&self) -> f64 {
                f64::from(*self).abs()
            }
        }
    )*};
}
magnitude_signed!(i8, i16, i32, i64, i128, isize);
magnitude_unsigned!(u8, u16, u32, u64, u128, usize);
magnitude_float!(f32, f64);

/// What a search does after examining one item.
pub(crate) enum Step {
    /// The item is the target.
    Found,
    /// The halting condition says the target cannot come later.
    Stop,
    /// Look at the next item.
    Next,
}

/// The rules of a search from the first item, one item at a time, shared by [`Buffer`] and
/// [`AsyncBuffer`] (which differ only in how they wait for the item): an item out of the
/// order the condition relies on (against `previous`) is an error, the target ends the
/// search, the condition stops it. `attempts` counts the items examined, this one included.
///
/// [`Buffer`]: crate::Buffer
/// [`AsyncBuffer`]: crate::AsyncBuffer
pub(crate) fn step<T: PartialEq>(
    halt: &dyn Halt<T>,
    previous: Option<&T>,
    (index, item): (usize, &T),
    target: &T,
    attempts: usize,
) -> Result<Step, crate::Error> {
    if let Some(previous) = previous
        && halt.assumes_order()
        && !halt.keeps_order(previous, item)
    {
        return Err(crate::Error::Unsorted { index });
    }
    if item == target {
        return Ok(Step::Found);
    }
    Ok(if halt.halt(item, target, attempts) { Step::Stop } else { Step::Next })
}

/// A [`Step::Stop`] at `stopped` trusts the order: the item after it (if any) must keep
/// it too, so that a sequence that drops right after its first large item is reported.
pub(crate) fn check_after_stop<T>(
    halt: &dyn Halt<T>,
    stopped: &T,
    (next_index, next): (usize, Option<&T>),
) -> Result<(), crate::Error> {
    match next {
        Some(next) if halt.assumes_order() && !halt.keeps_order(stopped, next) => {
            Err(crate::Error::Unsorted { index: next_index })
        }
        _ => Ok(()),
    }
}
