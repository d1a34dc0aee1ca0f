//! Stack for deep recursion through the cache: segments each thread keeps and reuses.
//!
//! A cold top-down recursion (`fib(n)` asking `fib(n - 1)`) is one nested computation per
//! key, about a kilobyte of stack each, so `fib(100_000)` needs some 100 MiB: more than any
//! thread has. Each computation therefore runs with at least [`RED_ZONE`] bytes of stack,
//! moving to another segment first when the current one is short.
//!
//! **Why not `stacker::maybe_grow` alone.** It maps a fresh segment every time the
//! recursion crosses onto one and unmaps it on the way back, so every cold recursion
//! touched its pages anew: in a cold `fib(10_000)`, 1,100 page faults per call, a quarter
//! of its time. Here a thread keeps up to [`SPARE_SEGMENTS`] segments once it returns from
//! them and takes them again next time, already touched: the same trade a thread's own
//! stack makes, whose pages stay resident after a deep call. A thread that ends unmaps
//! them.
//!
//! **Which stack we are on.** A segment of ours is recognised by its bounds (the innermost
//! one is in [`CURRENT`]); anywhere else (the thread's own stack, or a segment that user
//! code made with `stacker`) `stacker::remaining_stack` knows the limit. User code that
//! calls `stacker` on one of our segments gets a limit from the stack below (`stacker`'s
//! own bookkeeping, which cannot be told about ours); as our segments are mapped below the
//! thread stacks, it then sees no room and grows a segment of its own, which is safe.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// The stack a computation is guaranteed when it starts.
const RED_ZONE: usize = 256 * 1024;
/// The usable size of each segment.
const SEGMENT: usize = 8 * 1024 * 1024;
/// Segments a thread keeps after returning from them (their touched pages stay resident).
const SPARE_SEGMENTS: usize = 2;

std::thread_local! {
    /// Bounds `(lowest, end)` of the innermost segment of ours this thread runs on, or
    /// `(0, 0)` when it runs on none.
    static CURRENT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Segments this thread returned from, ready for reuse.
    static SPARE: RefCell<Vec<Segment>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with at least [`RED_ZONE`] bytes of stack, on a segment of this thread's if the
/// current stack is short.
pub(crate) fn grow<R>(f: impl FnOnce() -> R) -> R {
    if remaining().is_some_and(|left| left >= RED_ZONE) {
        return f();
    }
    on_a_segment(f)
}

/// Bytes of stack left below the stack pointer, where known.
fn remaining() -> Option<usize> {
    let sp = psm::stack_pointer().addr();
    let (lowest, end) = CURRENT.try_with(Cell::get).unwrap_or((0, 0));
    if (lowest..end).contains(&sp) { Some(sp - lowest) } else { stacker::remaining_stack() }
}

#[inline(never)]
fn on_a_segment<R>(f: impl FnOnce() -> R) -> R {
    // While this thread's locals are being destroyed (a value's `Drop` in another
    // thread-local using the cache), ours may be gone: stacker's fresh segments still work.
    let Ok(spare) = SPARE.try_with(|s| s.borrow_mut().pop()) else {
        return stacker::grow(SEGMENT, f);
    };
    let segment = spare.unwrap_or_else(Segment::map);
    let outer = CURRENT.replace(segment.bounds());
    // SAFETY: `segment` is a page-aligned read-write mapping of `SEGMENT` bytes (a multiple
    // of the page size, far below `isize::MAX`) with a guard page below it, and it lives
    // until after `on_stack` returns; `catch_unwind` stops every panic, so nothing unwinds
    // through the switch. Caught by `tests/deep.rs` (recursions across many segments, a
    // panic from deep on a segment, reuse across calls and threads) if broken.
    let outcome =
        unsafe { psm::on_stack(segment.base(), SEGMENT, move || catch_unwind(AssertUnwindSafe(f))) };
    CURRENT.set(outer);
    let _ = SPARE.try_with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < SPARE_SEGMENTS {
            spare.push(segment);
        }
    });
    outcome.unwrap_or_else(|payload| resume_unwind(payload))
}

/// One stack segment: `SEGMENT` read-write bytes above a guard page that faults.
struct Segment {
    /// The start of the mapping: the guard page.
    mapping: *mut libc::c_void,
    page: usize,
}

impl Segment {
    fn map() -> Segment {
        #[cfg(test)]
        tests::MAPPED.with(|m| m.set(m.get() + 1));
        // SAFETY: `sysconf` has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        // SAFETY: an anonymous private mapping at an address the kernel picks: it aliases
        // nothing. Checked below.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SEGMENT + page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        assert_ne!(
            mapping,
            libc::MAP_FAILED,
            "speedup-cache: cannot map {} MiB of stack for a deep recursion: {}",
            SEGMENT >> 20,
            std::io::Error::last_os_error()
        );
        let segment = Segment { mapping, page };
        // The guard page: a recursion that overruns the segment faults (a crash, as a
        // thread's own stack overflow) instead of writing into whatever lies below.
        // SAFETY: the first page of the mapping just made.
        let guarded = unsafe { libc::mprotect(mapping, page, libc::PROT_NONE) };
        assert_eq!(
            guarded,
            0,
            "speedup-cache: cannot protect a stack guard page: {}",
            std::io::Error::last_os_error()
        );
        segment
    }

    /// The lowest usable byte (just above the guard page): the base `psm` switches to.
    fn base(&self) -> *mut u8 {
        self.mapping.cast::<u8>().wrapping_add(self.page)
    }

    fn lowest(&self) -> usize {
        self.base().addr()
    }

    fn bounds(&self) -> (usize, usize) {
        (self.lowest(), self.lowest() + SEGMENT)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unused now (it is dropped only when no
        // computation runs on it: spare, or not kept).
        unsafe { libc::munmap(self.mapping, SEGMENT + self.page) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    std::thread_local! {
        /// Segments this thread mapped.
        pub(super) static MAPPED: Cell<usize> = const { Cell::new(0) };
    }

    /// A recursion of `depth` levels, each in `grow` with a kilobyte of locals.
    fn recurse(depth: u64) -> u64 {
        grow(|| {
            let locals = std::hint::black_box([depth; 128]);
            if depth == 0 { 0 } else { recurse(depth - 1).wrapping_add(locals[127]) }
        })
    }

    /// A recursion as deep as an earlier one maps only the segments the thread did not
    /// keep: none when it needs no more than `SPARE_SEGMENTS`.
    #[test]
    fn a_thread_reuses_the_segments_it_returned_from() {
        std::thread::spawn(|| {
            // Some 14 MiB of frames (more in a debug build) below a 2 MiB thread stack.
            let depth = 14_000;
            assert_eq!(recurse(depth), (1..=depth).sum::<u64>());
            let needed = MAPPED.with(Cell::get);
            assert!(needed >= 2, "a {depth}-deep recursion of 1 KiB frames needed {needed} segments");
            for run in 1..=5 {
                recurse(depth);
                let fresh = needed.saturating_sub(SPARE_SEGMENTS) * run;
                assert_eq!(
                    MAPPED.with(Cell::get),
                    needed + fresh,
                    "run {run} mapped segments it could reuse"
                );
            }
            // Shallower: within the kept segments, nothing new.
            let before = MAPPED.with(Cell::get);
            for _ in 0..5 {
                recurse(depth / needed as u64);
            }
            assert_eq!(MAPPED.with(Cell::get), before, "a recursion within the kept segments mapped more");
            assert!(SPARE.with(|s| s.borrow().len()) <= SPARE_SEGMENTS);
            assert_eq!(CURRENT.with(Cell::get), (0, 0), "back on the thread's own stack");
        })
        .join()
        .unwrap();
    }
}
