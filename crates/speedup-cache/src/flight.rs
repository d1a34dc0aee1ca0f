//! The state of one key while it is being computed: the per-key state machine.
//!
//! ```text
//! vacant ──apply_async──▶ Queued ──claimed by a pool worker or a waiter──▶ Running
//!    └──────get──────────────────────────────────────────────────────────▶ Running
//! Running ──value──▶ Done (the map slot becomes Ready)
//! Running ──panic / error / cycle──▶ Failed (the map slot is removed: vacant again)
//! ```
//!
//! The first outcome wins: a caller that had to compute the key itself (see `waits`) may
//! finish the flight with its value before the original computation returns.
//!
//! Waiters block on a condition variable (no spinning, no polling). A waiter that finds the
//! key `Queued` claims it and runs it itself ("help, don't wait"), so a pool whose every
//! worker waits, or a pool of one, cannot deadlock.

use std::sync::Arc as StdArc;

use crate::error::Error;
use crate::sync::{Condvar, Mutex};
use crate::waits::Node;

#[derive(Debug)]
enum State<V, E> {
    Queued,
    Running,
    Done(V),
    Failed(Error<E>),
}

/// What a thread that needs the key should do.
#[derive(Debug)]
pub(crate) enum Claim<V, E> {
    /// It now owns the computation: run it.
    Run,
    /// Another computation runs it: wait (after checking for a cycle).
    Wait,
    /// The outcome is already known.
    Finished(Result<V, Error<E>>),
}

#[derive(Debug)]
pub(crate) struct Flight<K, V, E> {
    state: Mutex<State<V, E>>,
    finished: Condvar,
    /// The computation, in the wait-for graph.
    pub(crate) node: StdArc<Node<K>>,
}

impl<K, V: Clone, E> Flight<K, V, E> {
    /// A flight scheduled on the pool, not started.
    pub(crate) fn queued(node: StdArc<Node<K>>) -> Self {
        Flight { state: Mutex::new(State::Queued), finished: Condvar::new(), node }
    }

    /// A flight the caller runs right away.
    pub(crate) fn running(node: StdArc<Node<K>>) -> Self {
        Flight { state: Mutex::new(State::Running), finished: Condvar::new(), node }
    }

    /// Claims a queued flight, or reports that it runs or how it ended.
    pub(crate) fn claim(&self) -> Claim<V, E> {
        let mut state = self.state.lock();
        match &*state {
            State::Queued => {
                *state = State::Running;
                Claim::Run
            }
            State::Running => Claim::Wait,
            State::Done(v) => Claim::Finished(Ok(v.clone())),
            State::Failed(e) => Claim::Finished(Err(e.clone())),
        }
    }

    /// Blocks until the flight is done or failed.
    pub(crate) fn wait(&self) -> Result<V, Error<E>> {
        let mut state = self.state.lock();
        loop {
            match &*state {
                State::Done(v) => return Ok(v.clone()),
                State::Failed(e) => return Err(e.clone()),
                _ => state = self.finished.wait(state),
            }
        }
    }

    /// Blocks until the flight is done or failed, or `timeout` passes (then `None`).
    #[cfg(not(speedup_loom))]
    pub(crate) fn wait_timeout(&self, timeout: std::time::Duration) -> Option<Result<V, Error<E>>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.state.lock();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if matches!(&*state, State::Done(_) | State::Failed(_)) || left.is_zero() {
                break;
            }
            state = self.finished.wait_timeout(state, left).0;
        }
        match &*state {
            State::Done(v) => Some(Ok(v.clone())),
            State::Failed(e) => Some(Err(e.clone())),
            _ => None,
        }
    }

    /// Records the outcome (unless one is recorded already) and wakes every waiter.
    pub(crate) fn finish(&self, outcome: Result<V, Error<E>>) {
        let mut state = self.state.lock();
        if matches!(*state, State::Done(_) | State::Failed(_)) {
            return;
        }
        *state = match outcome {
            Ok(v) => State::Done(v),
            Err(e) => State::Failed(e),
        };
        drop(state);
        self.finished.notify_all();
    }
}
