//! The producer engine of the thread buffers, [`Buffer`](crate::Buffer) and
//! [`WindowBuffer`](crate::WindowBuffer): one loop that pulls items while readers want
//! them (the [`Gate`]), hands each to a [`Sink`] (where the buffer keeps it: the append-only
//! store, or the window and its spill store), publishes them, and records how it ended.
//!
//! The buffers differ only in their sink and their readers; demand, publication, parking,
//! the producer's panics and its stop at drop are this module's and the gate's, once.
//! (`AsyncBuffer` has a task, not a thread: it cannot park on the gate's condition
//! variable, so it waits on tokio's `Notify`, sharing the store and [`Ending`](crate::producer::Ending).)

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::gate::Gate;

/// Items the producer publishes at most at once while no reader waits.
const BATCH: usize = 64;

/// Where a thread producer puts its items. It is called on the producer thread only, one
/// item at a time, in order. It may run user code (`T::clone`, a spill store), which may
/// panic (that ends the producer as a panic of its iterator would); the code that may
/// block goes in [`Sink::settle`], which runs once the item is readable.
pub(crate) trait Sink<T> {
    /// Keeps `item`, the next one, without blocking. Readers may read it from when
    /// `stored` counts it (loaded with `Acquire`: the count is raised with `Release` after
    /// the item is in).
    fn push(&mut self, item: T);

    /// Items pushed so far.
    fn stored(&self) -> usize;

    /// Whether [`Sink::settle`] has work left by the last push.
    fn unsettled(&self) -> bool {
        false
    }

    /// Work the last push left that may block (the window's spill store). The engine runs
    /// it after publishing the item to any reader that waits, so a store that blocks holds
    /// back no item a reader waits for.
    fn settle(&mut self) {}
}

/// The producer thread's body: makes the iterator, then pulls items while there is demand,
/// pushes them into `sink` and publishes them in batches while no reader waits, and each one
/// at once while a reader does; then records how it ended (the sequence's end, or a panic
/// of the iterator or the sink) and wakes every reader.
///
/// Batches save a swap of the shared `published` counter per item (the hand-off
/// benchmark's speed). They never hold an item back from a reader that waits for it: a
/// waiting reader spins briefly on `published`, then registers before it parks, and from
/// then on the producer publishes each item as soon as it is stored (one read-modify-write
/// per item tells it; see `Gate::wait_for` and `Gate::before_next`). So a producer that
/// takes 50 ms per item, or a channel that stops sending, delays nothing already produced.
pub(crate) fn produce<T, I, S>(gate: &Gate, make: impl FnOnce() -> I, mut sink: S)
where
    I: Iterator<Item = T>,
    S: Sink<T>,
{
    let span = tracing::debug_span!("speedup_buffer::producer");
    let _entered = span.enter();
    tracing::debug!("speedup-buffer: producer starts");
    gate.mark_producer();
    let outcome = catch_unwind(AssertUnwindSafe(|| pull(gate, make, &mut sink)));
    gate.idle(); // the iterator is gone: nothing to wait for in `Drop`
    tracing::debug!(
        produced = sink.stored(),
        panicked = outcome.is_err(),
        stopped = gate.stopping(),
        "speedup-buffer: producer ends"
    );
    if outcome.is_err() {
        // Items of the interrupted batch were stored before the panic: publish them.
        gate.publish(sink.stored());
    }
    gate.finish(outcome);
}

/// The loop of [`produce`]; returns when the sequence ends or the buffer is dropped.
fn pull<T, I: Iterator<Item = T>>(gate: &Gate, make: impl FnOnce() -> I, sink: &mut impl Sink<T>) {
    // Making the iterator is user code too (`build_with_prefix`'s closure may block):
    // busy while it runs, so that a drop meanwhile detaches instead of joining.
    if gate.before_next().is_none() {
        return;
    }
    let mut iter = make();
    let mut produced = 0;
    loop {
        gate.idle();
        let Some(wanted) = gate.demand_after(produced) else { return };
        let batch_end = wanted.min(produced.saturating_add(BATCH));
        let mut published = produced;
        while produced < batch_end {
            // Busy from here until the next `idle`: `next()` and the sink are user code.
            let Some(waiting) = gate.before_next() else {
                gate.publish(produced);
                return;
            };
            if waiting && published < produced {
                gate.publish(produced);
                published = produced;
            }
            let Some(item) = iter.next() else {
                gate.publish(produced);
                return;
            };
            if gate.stopping() {
                return; // dropped meanwhile: nobody reads this item
            }
            sink.push(item);
            produced += 1;
            if sink.unsettled() {
                // As before `next()`: a reader that waits gets the item before the sink
                // blocks, and a drop meanwhile sees the producer busy.
                let Some(waiting) = gate.before_next() else {
                    gate.publish(produced);
                    return;
                };
                if waiting {
                    gate.publish(produced);
                    published = produced;
                }
                sink.settle();
            }
        }
        gate.publish(produced);
    }
}
