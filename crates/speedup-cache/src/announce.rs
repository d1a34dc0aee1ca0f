//! Waking the local thread that waits for a key, when the key is announced.
//!
//! The protocol of a waiter: register ([`Watchers::watch`]), then loop: [`Watch::reset`],
//! look (in Redis), and [`Watch::wait`] if there is nothing yet. An announcement
//! ([`Watchers::fire`]) that lands anywhere after the registration ends the wait at once,
//! because it sets a flag under the signal's lock that `wait` checks before sleeping. Loom
//! models it (`cfg(speedup_loom)`, where waits never time out, so a lost wake-up is a
//! deadlock the model reports). Used by the Redis tier's listener (feature `redis`).
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::sync::{Arc, Condvar, Mutex};

/// The local threads waiting for value keys.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    by_key: Mutex<HashMap<Vec<u8>, Watched>>,
}

/// The signal for one key and how many local threads wait on it.
#[derive(Debug, Default)]
struct Watched {
    waiters: usize,
    signal: Arc<Signal>,
}

#[derive(Debug, Default)]
struct Signal {
    fired: Mutex<bool>,
    wake: Condvar,
}

impl Signal {
    fn fire(&self) {
        *self.fired.lock() = true;
        self.wake.notify_all();
    }
}

/// A registration for one key; unregisters on drop.
#[derive(Debug)]
pub(crate) struct Watch<'a> {
    watchers: &'a Watchers,
    key: Vec<u8>,
    signal: Arc<Signal>,
}

impl Watchers {
    /// Starts watching `key`. Register before checking Redis, so that a value published
    /// between the check and the wait still wakes the waiter.
    pub(crate) fn watch(&self, key: &[u8]) -> Watch<'_> {
        let mut by_key = self.by_key.lock();
        let entry = by_key.entry(key.to_vec()).or_default();
        entry.waiters += 1;
        Watch { watchers: self, key: key.to_vec(), signal: Arc::clone(&entry.signal) }
    }

    /// Wakes the waiter for `key`.
    pub(crate) fn fire(&self, key: &[u8]) {
        if let Some(watched) = self.by_key.lock().get(key) {
            watched.signal.fire();
        }
    }

    /// Wakes every waiter (after reconnecting: messages may have been missed).
    pub(crate) fn fire_all(&self) {
        for watched in self.by_key.lock().values() {
            watched.signal.fire();
        }
    }
}

impl Watch<'_> {
    /// Forgets earlier wake-ups; call before each check.
    pub(crate) fn reset(&self) {
        *self.signal.fired.lock() = false;
    }

    /// Blocks until the key is announced or `timeout` passes.
    pub(crate) fn wait(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut fired = self.signal.fired.lock();
        while !*fired {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let (guard, timed_out) = self.signal.wake.wait_timeout(fired, left);
            fired = guard;
            if timed_out {
                return;
            }
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut by_key = self.watchers.by_key.lock();
        if let Some(entry) = by_key.get_mut(&self.key) {
            entry.waiters -= 1;
            if entry.waiters == 0 {
                by_key.remove(&self.key);
            }
        }
    }
}

#[cfg(all(test, not(speedup_loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// The waiting protocol of `acquire`: register, reset, look, wait. An announcement that
    /// lands anywhere after the registration must end the wait at once; a lost one would cost
    /// the full (here: 30 s) timeout.
    #[test]
    fn an_announcement_after_registering_is_never_lost() {
        let watchers = Arc::new(Watchers::default());
        for round in 0..2000u32 {
            let published = Arc::new(AtomicBool::new(false));
            let watch = watchers.watch(b"key");
            let publisher = {
                let (watchers, published) = (Arc::clone(&watchers), Arc::clone(&published));
                std::thread::spawn(move || {
                    if round % 2 == 0 {
                        std::thread::yield_now();
                    }
                    published.store(true, Ordering::SeqCst);
                    watchers.fire(b"key");
                })
            };
            let start = Instant::now();
            loop {
                watch.reset();
                if published.load(Ordering::SeqCst) {
                    break;
                }
                watch.wait(Duration::from_secs(30));
            }
            assert!(start.elapsed() < Duration::from_secs(10), "round {round}: a wake-up was lost");
            publisher.join().unwrap();
            drop(watch);
        }
        assert!(watchers.by_key.lock().is_empty(), "registrations are removed");
    }

    #[test]
    fn only_the_named_key_wakes_and_registrations_are_counted() {
        let watchers = Watchers::default();
        let a1 = watchers.watch(b"a");
        let a2 = watchers.watch(b"a");
        let b = watchers.watch(b"b");
        watchers.fire(b"a");
        let start = Instant::now();
        a1.wait(Duration::from_secs(30));
        a2.wait(Duration::from_secs(30));
        assert!(start.elapsed() < Duration::from_secs(10));
        let start = Instant::now();
        b.wait(Duration::from_millis(50)); // not fired: sleeps the whole timeout
        assert!(start.elapsed() >= Duration::from_millis(45));
        drop(a1);
        assert!(watchers.by_key.lock().contains_key(b"a".as_slice()), "a2 still watches");
        drop(a2);
        drop(b);
        assert!(watchers.by_key.lock().is_empty());
    }
}

#[cfg(all(test, speedup_loom))]
mod loom_models {
    use loom::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Every interleaving of a waiter's reset-look-wait loop with a publisher's
    /// store-then-fire: the waiter always wakes (a lost wake-up deadlocks the model).
    #[test]
    fn loom_an_announcement_is_never_lost() {
        loom::model(|| {
            let watchers = Arc::new(Watchers::default());
            let published = Arc::new(AtomicBool::new(false));
            let watch = watchers.watch(b"k");
            let publisher = {
                let (watchers, published) = (Arc::clone(&watchers), Arc::clone(&published));
                loom::thread::spawn(move || {
                    published.store(true, Ordering::SeqCst);
                    watchers.fire(b"k");
                })
            };
            loop {
                watch.reset();
                if published.load(Ordering::SeqCst) {
                    break;
                }
                watch.wait(Duration::from_secs(3600));
            }
            publisher.join().unwrap();
        });
    }

    /// A waiter that leaves while its key is announced: the registry ends empty and the
    /// announcement finds either the waiter or nobody.
    #[test]
    fn loom_leaving_while_announced_leaves_no_registration() {
        loom::model(|| {
            let watchers = Arc::new(Watchers::default());
            let watch = watchers.watch(b"k");
            let publisher = {
                let watchers = Arc::clone(&watchers);
                loom::thread::spawn(move || watchers.fire(b"k"))
            };
            drop(watch);
            publisher.join().unwrap();
            assert!(watchers.by_key.lock().is_empty());
        });
    }
}
