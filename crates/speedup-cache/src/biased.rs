//! The shards' lock: a reader-writer lock biased towards readers (BRAVO, Dice and Kogan,
//! "BRAVO — Biased Locking for Reader-Writer Locks", USENIX ATC 2019).
//!
//! **Why.** A cache hit is a hash-table probe and a clone: a few nanoseconds of work. Taking
//! and releasing `std`'s `RwLock` for reading costs two read-modify-writes of the lock's
//! word, about 12 ns on the benchmark machine, nearly the whole hit, and with two threads
//! on one shard that word bounces between their cores.
//!
//! **How.** While a lock is *biased*, a reader does not touch the lock's word: it writes the
//! lock's address into its own slot of the cache's [`Readers`] table (one compare-exchange,
//! on a cache line no other thread writes while it reads), checks that the lock is still
//! biased, reads, and leaves with a plain store. A writer takes the underlying `RwLock`
//! (which excludes the readers that did not take the biased path), and if the lock is
//! biased it clears the bias and waits until no slot names the lock: *revocation*. It
//! costs a scan of the table, so after one the bias stays off until [`REARM_AFTER`] reads
//! have taken the slow path: a phase of many writes (a cold fill) revokes once, a
//! read-mostly phase gets the bias back.
//!
//! **The handshake (Dekker).** The reader: compare-exchange of its slot, then a load of
//! `biased`. The writer: a store of `biased = false`, then a load of each slot. All four
//! are `SeqCst`, so they fall in one total order: either the reader's slot write comes
//! before the writer's load of that slot (the writer sees the reader and waits for its
//! leaving store, a `Release` its `SeqCst` load acquires), or the writer's store comes
//! before the reader's load of `biased` (the reader sees the bias gone and backs out). The
//! bias is set again only under the read lock, with a `SeqCst` (so releasing) store, which
//! a fast reader's load acquires: what the last writer wrote is visible to it.
//!
//! Loom treats `SeqCst` accesses as `AcqRel` (tokio-rs/loom#180), which loses exactly that
//! total order; under loom both sides add a `SeqCst` fence after their store, which loom
//! does model and which gives the same guarantee (and the accesses keep their acquire and
//! release roles). The `loom_biased_*` models below check the handshake, the
//! `miri_*` test runs it under Miri, and `stress::readers_never_see_a_write_in_progress`
//! and `tests/sync_shards.rs` stress it with writers and readers on the same shard.

use std::ops::{Deref, DerefMut};

use crate::sync::{
    AtomicBool, AtomicUsize, ConstPtr, MutPtr, Ordering, RwLock, RwLockReadGuard, RwLockWriteGuard,
    UnsafeCell,
};

/// Reads that take the slow path after a revocation before the lock is biased again.
const REARM_AFTER: usize = 1024;

/// The orderings of the handshake's accesses. Under loom, which does not model `SeqCst`
/// accesses (see the module docs), they keep their acquire/release roles and `SeqCst`
/// fences after the stores carry the total order.
#[cfg(not(speedup_loom))]
mod handshake {
    use std::sync::atomic::Ordering;
    pub(super) const LOAD: Ordering = Ordering::SeqCst;
    pub(super) const STORE: Ordering = Ordering::SeqCst;
    pub(super) const RMW: Ordering = Ordering::SeqCst;
}
#[cfg(speedup_loom)]
mod handshake {
    use std::sync::atomic::Ordering;
    pub(super) const LOAD: Ordering = Ordering::Acquire;
    pub(super) const STORE: Ordering = Ordering::Release;
    pub(super) const RMW: Ordering = Ordering::AcqRel;
}

/// Keeps a slot on cache lines of its own (128 bytes: adjacent-line prefetching).
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicUsize);

/// The slots in which readers of one cache's locks announce themselves: a reader uses the
/// slot of its thread's number (modulo the table's size); two threads that share a slot
/// and read at the same time leave the second one to the slow path.
#[derive(Debug)]
pub(crate) struct Readers {
    slots: Box<[Padded]>,
}

impl Readers {
    /// A table for `threads` threads reading at once without sharing a slot.
    pub(crate) fn new(threads: usize) -> Self {
        Readers { slots: (0..threads.next_power_of_two().max(1)).map(|_| Padded::default()).collect() }
    }

    #[inline]
    fn mine(&self) -> &AtomicUsize {
        &self.slots[thread_number() & (self.slots.len() - 1)].0
    }

    /// Waits until no reader announces `lock` (every fast reader of it has left).
    fn wait_for_none(&self, lock: usize) {
        for slot in self.slots.iter() {
            let mut round = 0u32;
            while slot.0.load(handshake::LOAD) == lock {
                crate::sync::backoff(round);
                round = round.saturating_add(1);
            }
        }
    }
}

/// A reader-writer lock whose readers, while it is biased, write only to their own slot
/// of a [`Readers`] table (see the module docs). Every call passes the same table.
#[derive(Debug)]
pub(crate) struct BiasedLock<T> {
    lock: RwLock<()>,
    /// Readers may take the fast path. Set only under the read lock, cleared only under
    /// the write lock.
    biased: AtomicBool,
    /// Slow-path reads since the bias was revoked (approximate: racing readers may lose
    /// increments, which only delays the re-arming).
    slow_reads: AtomicUsize,
    /// [`REARM_AFTER`]; the unit tests below set 1 to reach the re-arming path in a few
    /// reads. (The cache's own loom models keep 1,024, which they never reach.)
    rearm_after: usize,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&T` to many threads at once (readers) and `&mut T` to one
// (a writer, alone): the bounds of `std::sync::RwLock`. Exclusion is the module's
// handshake; `loom_biased_*` below and `tests/sync_shards.rs` would catch a reader and a
// writer inside at once.
unsafe impl<T: Send> Send for BiasedLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for BiasedLock<T> {}

impl<T> BiasedLock<T> {
    pub(crate) fn new(value: T) -> Self {
        BiasedLock {
            lock: RwLock::new(()),
            biased: AtomicBool::new(false),
            slow_reads: AtomicUsize::new(0),
            rearm_after: REARM_AFTER,
            data: UnsafeCell::new(value),
        }
    }

    /// This lock's name in the readers' slots (never 0, the empty slot).
    fn address(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    /// Shared access. `readers` must be the table every call on this lock passes.
    #[inline]
    pub(crate) fn read<'a>(&'a self, readers: &'a Readers) -> ReadGuard<'a, T> {
        if self.biased.load(Ordering::Relaxed) {
            let slot = readers.mine();
            // A slot another thread holds (more threads than slots) is left alone: a failed
            // compare-exchange would still take its cache line from that thread.
            if slot.load(Ordering::Relaxed) == 0
                && slot.compare_exchange(0, self.address(), handshake::RMW, Ordering::Acquire).is_ok()
            {
                #[cfg(speedup_loom)]
                loom::sync::atomic::fence(Ordering::SeqCst);
                if self.biased.load(handshake::LOAD) {
                    return ReadGuard { data: self.data.get(), hold: Hold::Slot(slot) };
                }
                slot.store(0, Ordering::Release);
            }
        }
        self.read_slowly()
    }

    #[inline]
    fn read_slowly(&self) -> ReadGuard<'_, T> {
        let guard = self.lock.read();
        if !self.biased.load(Ordering::Relaxed) && self.count_slow_read() >= self.rearm_after {
            self.slow_reads.store(0, Ordering::Relaxed);
            // Under the read lock: no writer is inside, and the next one sees the bias
            // (through the lock) and revokes it.
            self.biased.store(true, handshake::STORE);
        }
        ReadGuard { data: self.data.get(), hold: Hold::Lock(guard) }
    }

    /// Counts a slow read; returns the count since the last revocation. A load and a store,
    /// not a read-modify-write: racing slow readers may lose increments, which only delays
    /// the re-arming by a few reads, and costs them no second locked instruction.
    fn count_slow_read(&self) -> usize {
        let reads = self.slow_reads.load(Ordering::Relaxed) + 1;
        self.slow_reads.store(reads, Ordering::Relaxed);
        reads
    }

    /// Exclusive access. `readers` must be the table every call on this lock passes.
    pub(crate) fn write(&self, readers: &Readers) -> WriteGuard<'_, T> {
        let guard = self.lock.write();
        if self.biased.load(Ordering::Relaxed) {
            self.biased.store(false, handshake::STORE);
            #[cfg(speedup_loom)]
            loom::sync::atomic::fence(Ordering::SeqCst);
            readers.wait_for_none(self.address());
            self.slow_reads.store(0, Ordering::Relaxed);
        }
        WriteGuard { data: self.data.get_mut(), _guard: guard }
    }
}

/// How a reader holds the lock.
enum Hold<'a> {
    /// Its announcement in its slot (the biased path).
    Slot(&'a AtomicUsize),
    /// The underlying lock.
    Lock(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
}

/// Shared access to a [`BiasedLock`]'s value; leaves the lock when dropped (also when a
/// user's `Clone` or `Eq` panics under it).
pub(crate) struct ReadGuard<'a, T> {
    data: ConstPtr<T>,
    hold: Hold<'a>,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: while the guard lives, no writer is inside: either this reader holds the
        // read lock, or it announced itself before any writer's revocation could finish
        // (the module's handshake) and stays announced until `drop`. Caught by
        // `loom_biased_a_writer_never_meets_a_reader` if broken.
        unsafe { self.data.deref() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        if let Hold::Slot(slot) = self.hold {
            // Releases the reads to the writer whose `SeqCst` load of the slot sees this.
            slot.store(0, Ordering::Release);
        }
    }
}

/// Exclusive access to a [`BiasedLock`]'s value.
pub(crate) struct WriteGuard<'a, T> {
    data: MutPtr<T>,
    _guard: RwLockWriteGuard<'a, ()>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the write lock and no biased reader is inside (it
        // revoked the bias and waited for them, or the bias was off since the last
        // revocation). Caught by `loom_biased_a_writer_never_meets_a_reader` if broken.
        unsafe { self.data.deref() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this borrow the only one.
        unsafe { self.data.deref() }
    }
}

/// This thread's number: the lowest one no live thread holds, taken on first use and given
/// back when the thread ends. So live threads hold distinct numbers, and as many of them as
/// a table has slots never share a slot, however many threads came and went before (numbers
/// handed out once per thread would put two busy threads on one slot after some turnover:
/// each hit then fought over the slot's cache line, and the loser took the slow path).
#[cfg(not(speedup_loom))]
#[inline]
fn thread_number() -> usize {
    std::thread_local! {
        /// A copy of the number that needs no destructor, so no lazy-initialisation check:
        /// this is on the hit path (which the callers' crates inline).
        static COPY: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    let copy = COPY.get();
    if copy != usize::MAX {
        return copy;
    }
    let number = take_thread_number();
    COPY.set(number);
    number
}

#[cfg(not(speedup_loom))]
#[cold]
fn take_thread_number() -> usize {
    static NUMBERS: std::sync::Mutex<Numbers> = std::sync::Mutex::new(Numbers::new());
    fn numbers() -> std::sync::MutexGuard<'static, Numbers> {
        NUMBERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    struct Number(usize);
    impl Drop for Number {
        fn drop(&mut self) {
            numbers().give_back(self.0);
        }
    }
    std::thread_local! {
        /// The number, held for the thread's life and given back when it ends.
        static NUMBER: Number = Number(numbers().take());
    }
    // While the thread's locals are destroyed, a cache used from another local's `Drop`
    // shares slot 0: sharing costs speed, never correctness (the compare-exchange decides).
    NUMBER.try_with(|n| n.0).unwrap_or(0)
}

/// The numbers of live threads: the lowest free one to each new thread.
#[cfg(not(speedup_loom))]
struct Numbers {
    next: usize,
    freed: std::collections::BinaryHeap<std::cmp::Reverse<usize>>,
}

#[cfg(not(speedup_loom))]
impl Numbers {
    const fn new() -> Self {
        Numbers { next: 0, freed: std::collections::BinaryHeap::new() }
    }

    fn take(&mut self) -> usize {
        self.freed.pop().map_or_else(
            || {
                self.next += 1;
                self.next - 1
            },
            |std::cmp::Reverse(n)| n,
        )
    }

    fn give_back(&mut self, number: usize) {
        self.freed.push(std::cmp::Reverse(number));
    }
}

#[cfg(speedup_loom)]
fn thread_number() -> usize {
    use std::cell::Cell;
    loom::lazy_static! {
        static ref NEXT: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(0);
    }
    loom::thread_local! {
        static NUMBER: Cell<usize> = Cell::new(usize::MAX);
    }
    NUMBER.with(|n| {
        if n.get() == usize::MAX {
            n.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        n.get()
    })
}

#[cfg(all(test, speedup_loom))]
mod tests {
    use loom::sync::Arc;
    use loom::thread;

    use super::*;

    /// A lock that re-arms after one slow read, so that the models reach that path.
    fn rearming(value: u64) -> BiasedLock<u64> {
        BiasedLock { rearm_after: 1, ..BiasedLock::new(value) }
    }

    /// A lock biased from the start (as after `REARM_AFTER` slow reads).
    fn biased(value: u64) -> BiasedLock<u64> {
        let lock = rearming(value);
        lock.biased.store(true, Ordering::SeqCst);
        lock
    }

    /// A reader on the biased path and a writer: loom's `UnsafeCell` tracking panics if
    /// they are ever inside at once, and the reader sees the value before or after the
    /// write, never a torn one.
    #[test]
    fn loom_biased_a_writer_never_meets_a_reader() {
        loom::model(|| {
            let readers = Arc::new(Readers::new(2));
            let lock = Arc::new(biased(1));
            let reader = {
                let (readers, lock) = (Arc::clone(&readers), Arc::clone(&lock));
                thread::spawn(move || *lock.read(&readers))
            };
            *lock.write(&readers) = 2;
            let seen = reader.join().unwrap();
            assert!(seen == 1 || seen == 2);
            assert_eq!(*lock.read(&readers), 2);
        });
    }

    /// After a revocation the bias comes back only through the slow path; a write after
    /// that revokes it again, and a reader racing both stays out of the writer's way.
    #[test]
    fn loom_biased_two_readers_sharing_a_slot_and_a_writer() {
        loom::model(|| {
            // One slot: the two readers contend for it, and one of them takes the lock.
            let readers = Arc::new(Readers::new(1));
            let lock = Arc::new(biased(0));
            let spawn_reader = || {
                let (readers, lock) = (Arc::clone(&readers), Arc::clone(&lock));
                thread::spawn(move || *lock.read(&readers))
            };
            let (a, b) = (spawn_reader(), spawn_reader());
            *lock.write(&readers) += 5;
            for seen in [a.join().unwrap(), b.join().unwrap()] {
                assert!(seen == 0 || seen == 5);
            }
        });
    }

    /// A reader whose slow read re-arms the bias, then reads on the biased path, racing two
    /// writes: the first write's revocation, the re-arming and the second write's
    /// revocation in every order. The reader sees each write whole, in order.
    #[test]
    fn loom_biased_rearming_races_writers() {
        loom::model(|| {
            let readers = Arc::new(Readers::new(2));
            let lock = Arc::new(rearming(0));
            let reader = {
                let (readers, lock) = (Arc::clone(&readers), Arc::clone(&lock));
                thread::spawn(move || {
                    let first = *lock.read(&readers);
                    let second = *lock.read(&readers);
                    (first, second)
                })
            };
            *lock.write(&readers) = 1;
            *lock.write(&readers) = 2;
            let (first, second) = reader.join().unwrap();
            assert!(first <= second && second <= 2, "{first} then {second}");
        });
    }
}

#[cfg(all(test, not(speedup_loom)))]
mod stress {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    use super::*;

    /// Readers on the biased path and a writer that reallocates the value under them: a
    /// reader inside during a write would read a freed or half-written vector. Every
    /// vector the writer leaves holds `len` copies of its length. The bias re-arms after
    /// four slow reads, so the writer revokes it again and again (counted).
    #[test]
    fn readers_never_see_a_write_in_progress() {
        let rounds: usize =
            std::env::var("SPEEDUP_BIASED_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5_000);
        let readers = Arc::new(Readers::new(8));
        let lock = Arc::new(BiasedLock { rearm_after: 4, ..BiasedLock::new(vec![1u64]) });
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_secs(60);
        let reading: Vec<_> = (0..2)
            .map(|_| {
                let (readers, lock, stop) = (Arc::clone(&readers), Arc::clone(&lock), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let (mut fast, mut reads) = (0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let guard = lock.read(&readers);
                        fast += u64::from(matches!(guard.hold, Hold::Slot(_)));
                        let len = guard.len() as u64;
                        assert!(guard.iter().all(|&x| x == len), "a torn read: {:?}", &guard[..]);
                        reads += 1;
                    }
                    (fast, reads)
                })
            })
            .collect();
        let mut revocations = 0;
        for round in 0..rounds {
            assert!(Instant::now() < deadline, "round {round}: the writer is stuck");
            // Let the readers re-arm the bias now and then, so that writes revoke it.
            if round % 8 == 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
            let mut guard = lock.write(&readers);
            revocations += usize::from(lock.slow_reads.load(Ordering::Relaxed) == 0 && round > 0);
            let len = guard.len() % 200 + 1;
            *guard = vec![len as u64; len]; // a new allocation: the old one is freed
        }
        stop.store(true, Ordering::Relaxed);
        let (fast, reads) =
            reading.into_iter().map(|r| r.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        eprintln!(
            "{reads} reads, {fast} on the biased path, {rounds} writes, {revocations} possible revocations"
        );
        assert!(fast > 0, "the biased path was never taken: the test proves nothing");
        assert!(fast < reads, "the slow path was never taken");
    }

    /// The unit test Miri runs (`cargo xtask miri`): two readers and a writer that
    /// reallocates the value, with the bias re-armed after every slow read, so Miri's data
    /// race detector and its use-after-free checks see every path.
    #[test]
    fn miri_readers_and_a_reallocating_writer() {
        let readers = Arc::new(Readers::new(2));
        let lock = Arc::new(BiasedLock { rearm_after: 1, ..BiasedLock::new(vec![1u64]) });
        let reading: Vec<_> = (0..2)
            .map(|_| {
                let (readers, lock) = (Arc::clone(&readers), Arc::clone(&lock));
                std::thread::spawn(move || {
                    for _ in 0..40 {
                        let guard = lock.read(&readers);
                        let len = guard.len() as u64;
                        assert!(guard.iter().all(|&x| x == len));
                    }
                })
            })
            .collect();
        for len in 1..20usize {
            *lock.write(&readers) = vec![len as u64; len];
            std::thread::yield_now();
        }
        reading.into_iter().for_each(|r| r.join().unwrap());
    }

    /// Threads that ended give their numbers back, lowest first to the next thread: live
    /// threads stay on distinct slots after any turnover (a hostile review put two busy
    /// threads on one slot by starting and ending seven threads between them).
    #[test]
    fn numbers_of_ended_threads_are_reused_lowest_first() {
        let mut numbers = Numbers::new();
        let first: Vec<usize> = (0..8).map(|_| numbers.take()).collect();
        assert_eq!(first, (0..8).collect::<Vec<_>>());
        for n in [5, 1, 6] {
            numbers.give_back(n);
        }
        assert_eq!([numbers.take(), numbers.take(), numbers.take(), numbers.take()], [1, 5, 6, 8]);
    }

    /// A reader that panics under the biased path (a user's `Clone`) leaves its slot: the
    /// next writer does not wait for it for ever.
    #[test]
    fn a_panic_under_a_biased_read_leaves_the_slot() {
        let readers = Arc::new(Readers::new(1));
        let lock = Arc::new(BiasedLock::new(0u64));
        lock.biased.store(true, Ordering::SeqCst);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let guard = lock.read(&readers);
            assert!(matches!(guard.hold, Hold::Slot(_)));
            panic!("a Clone panics");
        }));
        assert!(panicked.is_err());
        // A detached writer: a stuck one fails the test at the deadline instead of hanging it.
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            *lock.write(&readers) = 1;
            let _ = done.send(());
        });
        wait.recv_timeout(Duration::from_secs(10))
            .expect("the writer waits for a reader that left by panicking");
    }
}
