//! Owned, disjoint segments of one buffer: hand segment `pos` to worker `pos` (a thread, a
//! task), mutate in place with no lock, and get the whole buffer back without a copy.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

use ndarray::{ArrayViewMut, IxDyn};

use crate::error::{Error, Result};
use crate::shape;

/// The buffer's allocation, shared by the segments and the [`Whole`] that recovers it.
///
/// **Invariant:** while any [`SegmentMut`] lives, the elements are reached only through
/// segments, each of which covers a range no other segment covers; nothing else creates a
/// reference into the allocation. The `Vec` is rebuilt (and its elements dropped) only when
/// the last `Arc` goes away.
struct Backing<T> {
    ptr: NonNull<T>,
    len: usize,
    capacity: usize,
}

// SAFETY: the backing owns `T`s and hands each segment exclusive access to its own range;
// moving it (or segments) to another thread moves `T`s there (`T: Send`). Shared
// references to it only give access through a segment's exclusive range, so `Sync` needs
// no more than `Send`. Caught (under Miri) by `miri_segments_are_disjoint_and_join_without_copy`,
// which moves segments to threads and writes them there.
unsafe impl<T: Send> Send for Backing<T> {}
// SAFETY: see above.
unsafe impl<T: Send> Sync for Backing<T> {}

impl<T> Drop for Backing<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr`, `len`, `capacity` came from a `Vec<T>` taken apart in `split`, and
        // this is the last owner (the `Arc` is being dropped). Caught (under Miri, which
        // reports leaks and double frees) by `miri_dropping_segments_and_whole_in_any_order_frees_once`.
        drop(unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), self.len, self.capacity) });
    }
}

/// The owner of a split buffer: gives the `Vec` back once every segment is dropped.
pub struct Whole<T> {
    backing: Arc<Backing<T>>,
    shape: Vec<usize>,
}

impl<T> fmt::Debug for Whole<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Whole")
            .field("shape", &self.shape)
            .field("segments alive", &(Arc::strong_count(&self.backing) - 1))
            .finish()
    }
}

impl<T> Whole<T> {
    /// The buffer's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The whole buffer, without a copy, once all segments are gone.
    ///
    /// # Errors
    ///
    /// [`SegmentsAlive`] while segments are still alive; it gives `self` back
    /// ([`SegmentsAlive::into_whole`]).
    pub fn try_into_vec(self) -> std::result::Result<Vec<T>, SegmentsAlive<T>> {
        match Arc::try_unwrap(self.backing) {
            Ok(backing) => {
                let backing = std::mem::ManuallyDrop::new(backing);
                // SAFETY: the parts of the `Vec` taken apart in `split`; we are the only
                // owner and `ManuallyDrop` keeps `Backing::drop` from freeing them twice.
                // Caught (under Miri) by `miri_segments_are_disjoint_and_join_without_copy`.
                Ok(unsafe { Vec::from_raw_parts(backing.ptr.as_ptr(), backing.len, backing.capacity) })
            }
            Err(backing) => Err(SegmentsAlive { whole: Whole { backing, shape: self.shape } }),
        }
    }

    /// Drops `segments` (handed back by workers) and returns the whole buffer.
    ///
    /// # Errors
    ///
    /// [`SegmentsAlive`] if segments other than these are still alive somewhere; it gives
    /// `self` back ([`SegmentsAlive::into_whole`]).
    pub fn join(
        self,
        segments: impl IntoIterator<Item = SegmentMut<T>>,
    ) -> std::result::Result<Vec<T>, SegmentsAlive<T>> {
        let segments: Vec<_> = segments.into_iter().collect();
        let _span = tracing::debug_span!("cereal_eat::join", shape = ?self.shape, segments = segments.len())
            .entered();
        drop(segments);
        self.try_into_vec()
    }
}

/// The error of [`Whole::join`] and [`Whole::try_into_vec`]: segments of the buffer are still
/// alive somewhere, so it cannot be given back yet. Holds the [`Whole`], to try again once
/// they are dropped ([`SegmentsAlive::into_whole`]), as [`std::io::IntoInnerError`] holds its
/// writer.
pub struct SegmentsAlive<T> {
    whole: Whole<T>,
}

impl<T> SegmentsAlive<T> {
    /// How many segments were alive when the join failed.
    pub fn segments(&self) -> usize {
        Arc::strong_count(&self.whole.backing) - 1
    }

    /// The [`Whole`] back, to join again once the other segments are dropped.
    pub fn into_whole(self) -> Whole<T> {
        self.whole
    }
}

impl<T> fmt::Debug for SegmentsAlive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentsAlive").field("segments", &self.segments()).finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SegmentsAlive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} segment(s) of the split buffer are still alive; hand every segment back to join \
             (or drop it) first",
            self.segments()
        )
    }
}

impl<T> std::error::Error for SegmentsAlive<T> {}

/// Exclusive access to segment `pos` of a split buffer: rows `rows` of the first axis.
/// `Send` and `'static`, so it can be moved into `std::thread::spawn` or `tokio::spawn`.
pub struct SegmentMut<T> {
    backing: Arc<Backing<T>>,
    start: usize,
    len: usize,
    pos: usize,
    shape: Vec<usize>,
}

// SAFETY: a segment is the only way to its range (see `Backing`): moving it to another
// thread moves exclusive access to those `T`s (`T: Send`); sharing `&SegmentMut` only
// gives `&[T]` (`T: Sync`). Caught (under Miri) by
// `miri_segments_are_disjoint_and_join_without_copy`; `tests/ui/` keeps two writers apart.
unsafe impl<T: Send> Send for SegmentMut<T> {}
// SAFETY: see above.
unsafe impl<T: Sync> Sync for SegmentMut<T> {}

impl<T> fmt::Debug for SegmentMut<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentMut").field("pos", &self.pos).field("shape", &self.shape).finish()
    }
}

impl<T> SegmentMut<T> {
    /// Which segment this is (the original's `pos`).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// This segment's shape: `[rows in the segment, rest of the buffer's shape...]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The segment as an n-dimensional mutable view.
    pub fn view_mut(&mut self) -> ArrayViewMut<'_, T, IxDyn> {
        let shape = self.shape.clone();
        match ArrayViewMut::from_shape(IxDyn(&shape), &mut self[..]) {
            Ok(view) => view,
            Err(_) => unreachable!("a segment's length is the product of its shape"),
        }
    }
}

impl<T> Deref for SegmentMut<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `start..start + len` lies inside the allocation, holds initialized `T`s,
        // and no other segment covers it (`split`, whose lengths are checked products:
        // `rows_and_row_len`); `&self` gives shared access only. Caught (under Miri) by
        // `miri_segments_are_disjoint_and_join_without_copy` and, for hostile shapes, by
        // `miri_split_writes_stay_inside_each_segment` in tests/shapes.rs.
        unsafe { std::slice::from_raw_parts(self.backing.ptr.as_ptr().add(self.start), self.len) }
    }
}

impl<T> DerefMut for SegmentMut<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` is exclusive access to this segment, which is
        // the only way to its range, so no other reference to these elements exists.
        // Caught as `deref` is.
        unsafe { std::slice::from_raw_parts_mut(self.backing.ptr.as_ptr().add(self.start), self.len) }
    }
}

/// Splits `data` (with `shape`, row-major) along its first axis into `n` segments of
/// consecutive rows, as equal as possible, each an owned [`SegmentMut`]; the [`Whole`]
/// gives the buffer back when they are all dropped.
///
/// ```
/// use cereal_eat::split;
///
/// let x: Vec<u32> = (0..100).collect(); // np.arange(100).reshape(4, 25)
/// let (whole, segments) = split(x, &[4, 25], 4)?;
/// let workers: Vec<_> = segments
///     .into_iter()
///     .map(|mut seg| std::thread::spawn(move || { for v in seg.iter_mut() { *v += 1; } seg }))
///     .collect();
/// let back = workers.into_iter().map(|w| w.join().unwrap());
/// let x = whole.join(back).expect("all segments returned");
/// assert_eq!(x[0], 1);
/// assert_eq!(x[99], 100);
/// # Ok::<(), cereal_eat::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Shape`] if `shape` is empty, does not multiply to `data.len()` (checked: a
/// product that overflows is an error, not a wrapped length), or `n` is 0 or more than the
/// number of rows.
pub fn split<T>(data: Vec<T>, shape: &[usize], n: usize) -> Result<(Whole<T>, Vec<SegmentMut<T>>)> {
    let _span = tracing::debug_span!("cereal_eat::split", ?shape, n).entered();
    let (rows, row_len) = rows_and_row_len(shape, data.len(), n)?;
    let mut data = std::mem::ManuallyDrop::new(data);
    let backing = Arc::new(Backing {
        // A `Vec`'s pointer is never null (dangling but aligned when empty).
        ptr: NonNull::new(data.as_mut_ptr()).unwrap_or(NonNull::dangling()),
        len: data.len(),
        capacity: data.capacity(),
    });
    let (base, extra) = (rows / n, rows % n);
    let mut row = 0;
    let segments = (0..n)
        .map(|pos| {
            let seg_rows = base + usize::from(pos < extra);
            let mut seg_shape = shape.to_vec();
            seg_shape[0] = seg_rows;
            let segment = SegmentMut {
                backing: Arc::clone(&backing),
                start: row * row_len,
                len: seg_rows * row_len,
                pos,
                shape: seg_shape,
            };
            row += seg_rows;
            segment
        })
        .collect();
    Ok((Whole { backing, shape: shape.to_vec() }, segments))
}

/// Scoped form: `n` disjoint `&mut` row blocks of a borrowed buffer (no ownership moves,
/// nothing to join; the borrow checker keeps them from outliving the buffer).
///
/// # Errors
///
/// As [`split`].
pub fn split_mut<'a, T>(data: &'a mut [T], shape: &[usize], n: usize) -> Result<Vec<&'a mut [T]>> {
    let (rows, row_len) = rows_and_row_len(shape, data.len(), n)?;
    let (base, extra) = (rows / n, rows % n);
    let mut rest = data;
    Ok((0..n)
        .map(|pos| {
            let (head, tail) =
                std::mem::take(&mut rest).split_at_mut((base + usize::from(pos < extra)) * row_len);
            rest = tail;
            head
        })
        .collect())
}

/// Checks that `shape` describes `len` elements and can be cut into `n` row blocks; returns
/// the number of rows and the length of one row. Every offset `split` and `split_mut`
/// compute afterwards is at most `rows * row_len == len`, so none of them can overflow.
fn rows_and_row_len(shape: &[usize], len: usize, n: usize) -> Result<(usize, usize)> {
    shape::describing(shape, len)?;
    let rows = shape[0];
    if n == 0 || n > rows.max(1) {
        return Err(Error::Shape {
            reason: format!("cannot split {rows} rows into {n} segments; ask for 1 to {}", rows.max(1)),
        });
    }
    // A sub-shape of a shape that passed `describing` cannot overflow.
    Ok((rows, shape::element_count(&shape[1..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miri_segments_are_disjoint_and_join_without_copy() {
        let data: Vec<u64> = (0..40).collect();
        let original = data.as_ptr();
        let (whole, segments) = split(data, &[10, 4], 3).unwrap();
        assert_eq!(segments.iter().map(|s| s.shape()[0]).collect::<Vec<_>>(), [4, 3, 3]);
        let alive = whole.try_into_vec().unwrap_err(); // segments still alive
        assert_eq!(alive.segments(), 3);
        assert_eq!(
            alive.to_string(),
            "3 segment(s) of the split buffer are still alive; hand every segment back to join (or drop it) first"
        );
        let whole = alive.into_whole();
        let handles: Vec<_> = segments
            .into_iter()
            .map(|mut s| {
                std::thread::spawn(move || {
                    let pos = s.pos() as u64;
                    s.iter_mut().for_each(|v| *v += 100 * (pos + 1));
                    s
                })
            })
            .collect();
        let back: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let data = whole.join(back).unwrap();
        assert_eq!(data.as_ptr(), original, "no copy");
        assert_eq!(data[0], 100);
        assert_eq!(data[16], 216);
        assert_eq!(data[39], 339);
    }

    #[test]
    fn miri_dropping_segments_and_whole_in_any_order_frees_once() {
        let data: Vec<String> = (0..6).map(|i| i.to_string()).collect();
        let (whole, mut segments) = split(data, &[6], 2).unwrap();
        segments[1][0].push('!');
        drop(whole); // the segments keep the buffer alive
        assert_eq!(&segments[1][0], "3!");
        drop(segments);
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(split(vec![1, 2, 3], &[2, 2], 1).is_err());
        assert!(split(vec![1, 2, 3, 4], &[2, 2], 3).is_err());
        assert!(split(vec![1, 2, 3, 4], &[2, 2], 0).is_err());
        assert!(split_mut(&mut [1, 2, 3], &[3], 4).is_err());
        // The wrapped products of issue 13: 6148914691236517208 * 3 == 8 (mod 2^64).
        assert!(split(vec![0u8; 8], &[6_148_914_691_236_517_208, 3], 3).is_err());
        assert!(split_mut(&mut [0u8; 8], &[6_148_914_691_236_517_208, 3], 3).is_err());
        assert!(split(vec![(); 0], &[0, usize::MAX, 2], 1).is_err());
        assert!(split(Vec::<u8>::new(), &[], 1).is_err());
        let (_, empty) = split(Vec::<u8>::new(), &[0, 3], 1).unwrap();
        assert_eq!((empty.len(), empty[0].shape()), (1, &[0usize, 3][..]));
    }

    #[test]
    fn views_have_the_segment_shape() {
        let (_whole, mut segments) = split((0..24).collect::<Vec<i32>>(), &[4, 3, 2], 2).unwrap();
        let mut view = segments[1].view_mut();
        assert_eq!(view.shape(), [2, 3, 2]);
        view[[1, 2, 1]] = -1;
        assert_eq!(segments[1][11], -1);
    }
}
