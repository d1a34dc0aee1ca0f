//! The listener thread: relays the announcements on a cache's Redis channel to the local
//! waiters (see [`crate::announce`]). Waiters also wake on a bounded timeout (the poll
//! fallback), so a lost message, a listener that is reconnecting, or a worker that died
//! without a word costs at most one poll interval, never a hang.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::Client;

use crate::announce::Watchers;

/// How often the listener checks whether its cache is gone (its read timeout).
const LISTEN_TICK: Duration = Duration::from_millis(500);

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
