//! What every buffer's producer shares, whatever drives it (a thread or a tokio task) and
//! wherever its items go (the append-only store or the window):
//!
//! - [`Ending`]: how the producer ended, and its panic message, the one owner of both;
//!   readers turn it into `Ok(None)` or [`Error::ProducerPanicked`];
//! - [`ProducerThread`]: a producer thread's life: spawned with a name, and at the buffer's
//!   drop stopped through its gate and joined, or detached when it is stuck inside user
//!   code (its iterator's `next()`, a spill store). Its loop is the engine's
//!   ([`engine::produce`](crate::engine::produce)).

use std::any::Any;

use crate::error::Error;
use crate::gate::Gate;
use crate::sync::{AtomicU8, Mutex, Ordering, thread};

/// The producer is still producing.
pub(crate) const RUNNING: u8 = 0;
/// The sequence ended (or the buffer was dropped and the producer stopped).
pub(crate) const FINISHED: u8 = 1;
/// The sequence panicked: no item past the ones produced will come.
pub(crate) const PANICKED: u8 = 2;
/// The producer was stopped from outside before the sequence ended (an `AsyncBuffer`'s
/// task dropped with its runtime): no item past the ones produced will come.
pub(crate) const STOPPED: u8 = 3;

/// How a buffer's producer ended. The panic message is written before the end is
/// announced (`Release`), so a reader that sees `PANICKED` (`Acquire`) finds it.
#[derive(Debug)]
pub(crate) struct Ending {
    how: AtomicU8,
    message: Mutex<Option<String>>,
}

impl Ending {
    pub(crate) fn new() -> Self {
        Ending { how: AtomicU8::new(RUNNING), message: Mutex::new(None) }
    }

    /// `RUNNING`, `FINISHED` or `PANICKED`.
    pub(crate) fn how(&self) -> u8 {
        self.how.load(Ordering::Acquire)
    }

    /// Records how the producer's run ended (`Err`: the payload it panicked with) and
    /// returns `FINISHED` or `PANICKED`. The caller announces the end to its readers after.
    pub(crate) fn record(&self, outcome: Result<(), Box<dyn Any + Send>>) -> u8 {
        let (how, payload) = match outcome {
            Ok(()) => (FINISHED, None),
            Err(payload) => {
                *self.message.lock() = Some(crate::error::panic_message(&*payload));
                (PANICKED, Some(payload))
            }
        };
        self.how.store(how, Ordering::Release);
        // After the end is recorded: the payload's `Drop` is user code, and may panic.
        if let Some(payload) = payload {
            crate::error::drop_payload(payload);
        }
        how
    }

    /// Records that the producer was stopped from outside, unless it ended already.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn stopped(&self) {
        let _ = self.how.compare_exchange(RUNNING, STOPPED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The error of a read of item `index` that the producer never reached because it
    /// panicked or was stopped; `None` if the sequence ended (or has not).
    pub(crate) fn error(&self, index: usize) -> Option<Error> {
        match self.how() {
            PANICKED => Some(Error::ProducerPanicked {
                index,
                message: self.message.lock().clone().unwrap_or_default(),
            }),
            STOPPED => Some(Error::ProducerStopped { index }),
            _ => None,
        }
    }
}

/// A buffer's producer thread.
#[derive(Debug)]
pub(crate) struct ProducerThread(Option<thread::JoinHandle<()>>);

impl ProducerThread {
    /// Starts `run` on a thread named `name`.
    ///
    /// # Panics
    ///
    /// If the operating system cannot start a thread.
    pub(crate) fn spawn(name: &str, run: impl FnOnce() + Send + 'static) -> Self {
        #[cfg(not(speedup_loom))]
        let handle = thread::Builder::new()
            .name(name.into())
            .spawn(run)
            .unwrap_or_else(|e| panic!("cannot start the buffer's producer thread: {e}"));
        #[cfg(speedup_loom)]
        let handle = {
            let _ = name; // loom's threads have no names
            thread::spawn(run)
        };
        ProducerThread(Some(handle))
    }

    /// Stops the producer at its buffer's drop: tells it through `gate`, then waits for it.
    /// One inside user code (its iterator's `next()`, or the sink's spill store) is waited
    /// for [`DROP_GRACE`](crate::DROP_GRACE) at most: that call may never return (a channel
    /// nobody sends to), so after the grace the thread is detached. It finishes that call on
    /// its own, stores nothing more and exits.
    pub(crate) fn stop(&mut self, gate: &Gate) {
        let Some(producer) = self.0.take() else { return };
        let busy = gate.stop();
        #[cfg(not(speedup_loom))]
        if busy {
            let deadline = std::time::Instant::now() + crate::DROP_GRACE;
            while !producer.is_finished() {
                if std::time::Instant::now() >= deadline {
                    return; // detached
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        #[cfg(speedup_loom)]
        let _ = busy; // loom's iterators never block: always join
        // The producer catches panics from the iterator itself, so a join error can only
        // come from a panic in this crate's code, which has already been reported.
        let _ = producer.join();
    }
}
