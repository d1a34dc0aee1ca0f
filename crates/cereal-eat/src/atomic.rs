//! [`AtomicArray`]: many writers on overlapping elements, no lock, consistent reads.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// An element type an [`AtomicArray`] (or [`SharedArray`](crate::SharedArray)) can hold:
/// integers and floats up to 64 bits, stored as their bit patterns.
pub trait AtomicElement: Copy + Send + Sync + 'static {
    /// A stable tag for headers of shared stores.
    const TAG: u32;
    /// The type's name, for error messages.
    const NAME: &'static str;
    /// The bit pattern, widened to 64 bits.
    fn to_bits(self) -> u64;
    /// Back from [`AtomicElement::to_bits`].
    fn from_bits(bits: u64) -> Self;
    /// `self + other` (wrapping for integers).
    fn add(self, other: Self) -> Self;
}

macro_rules! int_element {
    ($($t:ty => $tag:expr),*) => {$(
        impl AtomicElement for $t {
            const TAG: u32 = $tag;
            const NAME: &'static str = stringify!($t);
            fn to_bits(self) -> u64 { self as u64 }
            fn from_bits(bits: u64) -> Self { bits as $t }
            fn add(self, other: Self) -> Self { self.wrapping_add(other) }
        }
    )*};
}
int_element!(u8 => 1, u16 => 2, u32 => 3, u64 => 4, i8 => 5, i16 => 6, i32 => 7, i64 => 8);

impl AtomicElement for f32 {
    const TAG: u32 = 9;
    const NAME: &'static str = "f32";
    fn to_bits(self) -> u64 {
        u64::from(f32::to_bits(self))
    }
    fn from_bits(bits: u64) -> Self {
        f32::from_bits(bits as u32)
    }
    fn add(self, other: Self) -> Self {
        self + other
    }
}

impl AtomicElement for f64 {
    const TAG: u32 = 10;
    const NAME: &'static str = "f64";
    fn to_bits(self) -> u64 {
        f64::to_bits(self)
    }
    fn from_bits(bits: u64) -> Self {
        f64::from_bits(bits)
    }
    fn add(self, other: Self) -> Self {
        self + other
    }
}

/// `fetch_add` on one cell, exact for integers and a compare-and-swap loop for floats.
pub(crate) fn add_cell<T: AtomicElement>(cell: &AtomicU64, delta: T) -> T {
    let mut current = cell.load(Ordering::Relaxed);
    loop {
        let next = T::from_bits(current).add(delta).to_bits();
        match cell.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(previous) => return T::from_bits(previous),
            Err(actual) => current = actual,
        }
    }
}

/// An array of numbers that any number of threads or tasks update in place at once: every
/// element is an atomic cell, so there are no data races and no locks, and a read (even
/// while writers run) sees each element as some value a writer stored, never a torn one.
///
/// Share it in an `Arc`: `Arc<AtomicArray<T>>` is `'static` and goes to `tokio::spawn`.
///
/// ```
/// use std::sync::Arc;
/// use cereal_eat::AtomicArray;
///
/// let x = Arc::new(AtomicArray::from_vec((0..10_000i64).collect(), &[16, 625])?);
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| for i in 0..x.len() { x.fetch_add(i, 1); });
///     }
/// });
/// assert_eq!(x.get(0), 4);
/// assert_eq!(x.get(9_999), 10_003);
/// # Ok::<(), cereal_eat::Error>(())
/// ```
pub struct AtomicArray<T> {
    cells: Box<[AtomicU64]>,
    shape: Vec<usize>,
    _elements: PhantomData<T>,
}

impl<T: AtomicElement + fmt::Debug> fmt::Debug for AtomicArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicArray").field("shape", &self.shape).field("values", &self.to_vec()).finish()
    }
}

impl<T: AtomicElement> AtomicArray<T> {
    /// An array holding `values` with `shape` (row-major).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Shape`] if `shape` does not multiply to `values.len()` (the product is
    /// checked: one that overflows is an error).
    pub fn from_vec(values: Vec<T>, shape: &[usize]) -> crate::Result<Self> {
        // An empty shape is a scalar (one element), as in ndarray; the product is checked.
        let n = crate::shape::element_count(shape)?;
        if n != values.len() {
            return Err(crate::Error::Shape {
                reason: format!("shape {shape:?} holds {n} elements, but there are {} values", values.len()),
            });
        }
        Ok(AtomicArray {
            cells: values.into_iter().map(|v| AtomicU64::new(v.to_bits())).collect(),
            shape: shape.to_vec(),
            _elements: PhantomData,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Flat index of a multi-dimensional index, or `None` if out of range.
    pub fn index(&self, at: &[usize]) -> Option<usize> {
        if at.len() != self.shape.len() || at.iter().zip(&self.shape).any(|(i, n)| i >= n) {
            return None;
        }
        Some(at.iter().zip(&self.shape).fold(0, |flat, (i, n)| flat * n + i))
    }

    /// Element `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> T {
        T::from_bits(self.cells[i].load(Ordering::Acquire))
    }

    /// Stores `value` at `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn set(&self, i: usize, value: T) {
        self.cells[i].store(value.to_bits(), Ordering::Release);
    }

    /// Adds `delta` to element `i` atomically; returns the previous value.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn fetch_add(&self, i: usize, delta: T) -> T {
        add_cell(&self.cells[i], delta)
    }

    /// A copy of every element (each read atomically).
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// The values, once nobody else can write.
    pub fn into_vec(self) -> Vec<T> {
        self.cells.into_vec().into_iter().map(|c| T::from_bits(c.into_inner())).collect()
    }
}
