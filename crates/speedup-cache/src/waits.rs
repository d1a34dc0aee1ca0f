//! Who waits for whom: cycle detection across threads (salsa's approach).
//!
//! Before a thread blocks on a flight that another thread runs, it registers the edge
//! "I wait for this flight" and walks the chain of owners: if the chain comes back to it,
//! blocking would deadlock, and it reports a cycle instead. Registering and walking happen
//! under one lock, so of two threads closing a cycle the second one always sees it. An edge
//! whose flight has finished is ignored: its thread is about to wake up.

use std::collections::HashMap;

use crate::flight::Flight;
use crate::sync::{Arc, Mutex, lock};

#[derive(Debug)]
struct Edge<V, E> {
    flight: Arc<Flight<V, E>>,
    key: String,
}

#[derive(Debug)]
pub(crate) struct Waits<V, E> {
    edges: Mutex<HashMap<u64, Edge<V, E>>>,
}

impl<V, E> Default for Waits<V, E> {
    fn default() -> Self {
        Waits { edges: Mutex::new(HashMap::new()) }
    }
}

impl<V: Clone, E: Clone> Waits<V, E> {
    /// Registers that thread `me` is about to wait for `flight` (for `key`, run by `owner`).
    /// Returns the cycle, as a printable path of keys, if waiting would never end.
    pub(crate) fn enter(
        &self,
        me: u64,
        owner: u64,
        flight: &Arc<Flight<V, E>>,
        key: String,
    ) -> Result<(), String> {
        let mut edges = lock(&self.edges);
        let mut path = vec![key.clone()];
        let mut thread = owner;
        // The chain is at most as long as the number of waiting threads.
        for _ in 0..=edges.len() {
            if thread == me {
                return Err(path.join(" -> ") + " -> " + &key);
            }
            let Some(edge) = edges.get(&thread) else { break };
            let Some(next) = edge.flight.running_owner() else { break };
            path.push(edge.key.clone());
            thread = next;
        }
        edges.insert(me, Edge { flight: Arc::clone(flight), key });
        Ok(())
    }

    /// Thread `me` stopped waiting.
    pub(crate) fn leave(&self, me: u64) {
        lock(&self.edges).remove(&me);
    }
}
