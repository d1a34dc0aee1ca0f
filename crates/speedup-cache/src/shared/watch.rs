//! Waiting for another worker's value without busy polling.
//!
//! One listener thread per cache subscribes to the cache's channel; every published value
//! (or released lease) names its value key, and the listener wakes the local thread waiting
//! for that key, if any. Waiters also wake on a bounded timeout (the poll fallback), so a
//! lost message, a listener that is reconnecting, or a worker that died without a word
//! costs at most one poll interval, never a hang.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use redis::Client;

/// How often the listener checks whether its cache is gone (its read timeout).
const LISTEN_TICK: Duration = Duration::from_millis(500);

/// The local threads waiting for value keys.
#[derive(Debug, Default)]
pub(super) struct Watchers {
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
        *lock(&self.fired) = true;
        self.wake.notify_all();
    }
}

/// A registration for one key; unregisters on drop.
#[derive(Debug)]
pub(super) struct Watch<'a> {
    watchers: &'a Watchers,
    key: Vec<u8>,
    signal: Arc<Signal>,
}

impl Watchers {
    /// Starts watching `key`. Register before checking Redis, so that a value published
    /// between the check and the wait still wakes the waiter.
    pub(super) fn watch(&self, key: &[u8]) -> Watch<'_> {
        let mut by_key = lock(&self.by_key);
        let entry = by_key.entry(key.to_vec()).or_default();
        entry.waiters += 1;
        Watch { watchers: self, key: key.to_vec(), signal: Arc::clone(&entry.signal) }
    }

    /// Wakes the waiter for `key`.
    fn fire(&self, key: &[u8]) {
        if let Some(watched) = lock(&self.by_key).get(key) {
            watched.signal.fire();
        }
    }

    /// Wakes every waiter (after reconnecting: messages may have been missed).
    fn fire_all(&self) {
        for watched in lock(&self.by_key).values() {
            watched.signal.fire();
        }
    }
}

impl Watch<'_> {
    /// Forgets earlier wake-ups; call before each check.
    pub(super) fn reset(&self) {
        *lock(&self.signal.fired) = false;
    }

    /// Blocks until the key is announced or `timeout` passes.
    pub(super) fn wait(&self, timeout: Duration) {
        let fired = lock(&self.signal.fired);
        let _unused = self
            .signal
            .wake
            .wait_timeout_while(fired, timeout, |fired| !*fired)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut by_key = lock(&self.watchers.by_key);
        if let Some(entry) = by_key.get_mut(&self.key) {
            entry.waiters -= 1;
            if entry.waiters == 0 {
                by_key.remove(&self.key);
            }
        }
    }
}

/// Starts the listener thread; it ends within [`LISTEN_TICK`] of the last `Arc` to
/// `watchers` being dropped.
pub(super) fn spawn_listener(
    client: Client,
    channel: String,
    watchers: &Arc<Watchers>,
    connect_timeout: Duration,
    retry_after: Duration,
) {
    let watchers = Arc::downgrade(watchers);
    let spawned = std::thread::Builder::new()
        .name("speedup-cache-redis-listen".into())
        .spawn(move || listen(&client, &channel, &watchers, connect_timeout, retry_after));
    if let Err(error) = spawned {
        tracing::warn!(%error, "speedup-cache: cannot start the Redis listener thread; waiters fall back to polling");
    }
}

fn listen(
    client: &Client,
    channel: &str,
    watchers: &Weak<Watchers>,
    timeout: Duration,
    retry_after: Duration,
) {
    while watchers.strong_count() > 0 {
        if let Err(error) = subscribe_and_relay(client, channel, watchers, timeout) {
            tracing::debug!(%error, "speedup-cache: Redis listener disconnected; reconnecting");
            std::thread::sleep(retry_after.min(LISTEN_TICK));
        }
    }
}

/// Relays messages until the connection fails (`Err`) or the cache is gone (`Ok`).
fn subscribe_and_relay(
    client: &Client,
    channel: &str,
    watchers: &Weak<Watchers>,
    timeout: Duration,
) -> redis::RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(timeout)?;
    conn.set_write_timeout(Some(timeout))?;
    let mut pubsub = conn.as_pubsub();
    pubsub.set_read_timeout(Some(LISTEN_TICK))?;
    pubsub.subscribe(channel)?;
    // Values published while we were not subscribed were missed: let every waiter re-check.
    match watchers.upgrade() {
        Some(w) => w.fire_all(),
        None => return Ok(()),
    }
    loop {
        match pubsub.get_message() {
            Ok(message) => match watchers.upgrade() {
                Some(w) => w.fire(message.get_payload_bytes()),
                None => return Ok(()),
            },
            Err(e) if e.is_timeout() => {
                if watchers.strong_count() == 0 {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

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
        assert!(lock(&watchers.by_key).is_empty(), "registrations are removed");
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
        assert!(lock(&watchers.by_key).contains_key(b"a".as_slice()), "a2 still watches");
        drop(a2);
        drop(b);
        assert!(lock(&watchers.by_key).is_empty());
    }
}
