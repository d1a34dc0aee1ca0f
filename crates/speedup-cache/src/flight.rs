//! The state of one key while it is being computed: the per-key state machine.
//!
//! ```text
//! vacant ──apply_async──▶ Queued ──claimed by a pool worker or a waiter──▶ Running(owner)
//!    └──────get──────────────────────────────────────────────────────────▶ Running(owner)
//! Running ──value──▶ Done (the map slot becomes Ready)
//! Running ──panic / error / cycle──▶ Failed (the map slot is removed: vacant again)
//! ```
//!
//! Waiters block on a condition variable (no spinning, no polling). A waiter that finds the
//! key `Queued` claims it and runs it itself ("help, don't wait"), so a pool whose every
//! worker waits, or a pool of one, cannot deadlock.

use crate::error::Error;
use crate::sync::{Condvar, Mutex, lock};

#[derive(Debug)]
enum State<V, E> {
    Queued,
    Running { owner: u64 },
    Done(V),
    Failed(Error<E>),
}

/// What a thread that needs the key should do.
#[derive(Debug)]
pub(crate) enum Claim<V, E> {
    /// It now owns the computation: run it.
    Run,
    /// Another thread (`owner`) runs it: wait (after checking for a cycle).
    Wait { owner: u64 },
    /// The outcome is already known.
    Finished(Result<V, Error<E>>),
}

#[derive(Debug)]
pub(crate) struct Flight<V, E> {
    state: Mutex<State<V, E>>,
    finished: Condvar,
}

impl<V: Clone, E: Clone> Flight<V, E> {
    /// A flight scheduled on the pool, not started.
    pub(crate) fn queued() -> Self {
        Flight { state: Mutex::new(State::Queued), finished: Condvar::new() }
    }

    /// A flight the calling thread `owner` runs right away.
    pub(crate) fn running(owner: u64) -> Self {
        Flight { state: Mutex::new(State::Running { owner }), finished: Condvar::new() }
    }

    /// Claims a queued flight for `me`, or reports who runs it or how it ended.
    pub(crate) fn claim(&self, me: u64) -> Claim<V, E> {
        let mut state = lock(&self.state);
        match &*state {
            State::Queued => {
                *state = State::Running { owner: me };
                Claim::Run
            }
            State::Running { owner } => Claim::Wait { owner: *owner },
            State::Done(v) => Claim::Finished(Ok(v.clone())),
            State::Failed(e) => Claim::Finished(Err(e.clone())),
        }
    }

    /// The thread running the flight, if it is still running.
    pub(crate) fn running_owner(&self) -> Option<u64> {
        match &*lock(&self.state) {
            State::Running { owner } => Some(*owner),
            _ => None,
        }
    }

    /// Blocks until the flight is done or failed.
    pub(crate) fn wait(&self) -> Result<V, Error<E>> {
        let mut state = lock(&self.state);
        loop {
            match &*state {
                State::Done(v) => return Ok(v.clone()),
                State::Failed(e) => return Err(e.clone()),
                _ => state = self.finished.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner),
            }
        }
    }

    /// Records the outcome and wakes every waiter.
    pub(crate) fn finish(&self, outcome: Result<V, Error<E>>) {
        *lock(&self.state) = match outcome {
            Ok(v) => State::Done(v),
            Err(e) => State::Failed(e),
        };
        self.finished.notify_all();
    }
}
