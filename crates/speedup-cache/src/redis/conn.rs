//! Connections to Redis: a free list of idle connections and a circuit breaker.
//!
//! Every command runs on a connection taken from the free list (or opened with the
//! configured timeout) and goes back only if the command succeeded; a connection that saw
//! an error is dropped, since a timed-out reply may still be in flight on it. When Redis is
//! unreachable (refused, reset, timed out), or refuses commands for reasons that are not
//! about one key (out of memory, read-only replica, loading, no permission), the breaker
//! opens for `retry_after`: calls fail at once instead of each waiting for a timeout or
//! hammering a server that says no, and the outage is logged once, as is the recovery.

use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError, RedisResult};

use crate::sync::Mutex;

/// Idle connections kept for reuse; more are opened under load and closed after.
const MAX_IDLE: usize = 32;

/// Why a command did not run to completion.
#[derive(Debug)]
pub(super) enum Failure {
    /// Redis is unreachable or refuses commands (now, or recently enough that the breaker
    /// is open).
    Down(String),
    /// Redis refused a command because of the key it names (another Redis type there).
    WrongType(RedisError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Down(message) => f.write_str(message),
            Failure::WrongType(error) => write!(f, "Redis refused a command: {error}"),
        }
    }
}

pub(super) struct Redis {
    client: Client,
    /// `host:port` (never the password), for messages.
    pub(super) addr: String,
    timeout: Duration,
    retry_after: Duration,
    idle: Mutex<Vec<Connection>>,
    /// While set, Redis is considered down until this instant.
    down_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Redis {
    pub(super) fn new(client: Client, addr: String, timeout: Duration, retry_after: Duration) -> Self {
        Redis {
            client,
            addr,
            timeout,
            retry_after,
            idle: Mutex::new(Vec::new()),
            down_until: Mutex::new(None),
        }
    }

    /// Runs `command` on a connection. Commands must be safe to repeat: one that fails on
    /// a pooled connection is retried once on a fresh one, since a pooled connection may
    /// point at a server that restarted since.
    pub(super) fn run<T>(
        &self,
        mut command: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, Failure> {
        if let Some(until) = *self.down_until.lock()
            && Instant::now() < until
        {
            return Err(Failure::Down(format!(
                "Redis at {} was unreachable or refusing commands moments ago; next attempt in {} ms",
                self.addr,
                until.saturating_duration_since(Instant::now()).as_millis()
            )));
        }
        // One limit for the whole call, reconnection included: a retry gets what is left.
        let deadline = Instant::now() + self.timeout;
        let pooled = self.idle.lock().pop();
        let (mut conn, mut retry, mut shortened) = match pooled {
            Some(conn) => (conn, true, false),
            None => (self.connect(deadline).map_err(|e| self.trip(&e))?, false, true),
        };
        loop {
            match command(&mut conn) {
                Ok(value) => {
                    self.recovered();
                    // A connection made with what a call had left gets the full limit back.
                    let reusable = !shortened
                        || (conn.set_read_timeout(Some(self.timeout)).is_ok()
                            && conn.set_write_timeout(Some(self.timeout)).is_ok());
                    let mut idle = self.idle.lock();
                    if reusable && idle.len() < MAX_IDLE {
                        idle.push(conn);
                    }
                    return Ok(value);
                }
                Err(e) if is_outage(&e) && retry && Instant::now() < deadline => {
                    // A pooled connection that broke (the server restarted): one fresh try
                    // with the time left. A command that timed out leaves none.
                    retry = false;
                    shortened = true;
                    self.idle.lock().clear();
                    conn = self.connect(deadline).map_err(|e| self.trip(&e))?;
                }
                Err(e) if is_wrong_type(&e) => return Err(Failure::WrongType(e)),
                Err(e) => return Err(self.trip(&e)),
            }
        }
    }

    /// A new connection whose reads and writes time out.
    /// A connection made, and whose next reply is awaited, before `deadline`: the connect
    /// gets the time left, and reads and writes what is left after it. (`run` restores the
    /// full timeout before pooling it.) So a call, reconnection included, never takes
    /// longer than the configured timeout.
    fn connect(&self, deadline: Instant) -> RedisResult<Connection> {
        let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let conn = self.client.get_connection_with_timeout(left())?;
        conn.set_read_timeout(Some(left()))?;
        conn.set_write_timeout(Some(left()))?;
        Ok(conn)
    }

    /// Opens the breaker; logs the outage when it starts.
    fn trip(&self, error: &RedisError) -> Failure {
        let what = if is_outage(error) { "unreachable" } else { "refusing commands" };
        let mut down = self.down_until.lock();
        if down.is_none() {
            tracing::warn!(
                addr = %self.addr,
                %error,
                retry_after_ms = self.retry_after.as_millis() as u64,
                "speedup-cache: Redis is {what}; the shared tier is off until it answers again"
            );
        }
        *down = Some(Instant::now() + self.retry_after);
        // Pooled connections to a server that went away are dead too.
        self.idle.lock().clear();
        Failure::Down(format!("Redis at {} is {what}: {error}", self.addr))
    }

    fn recovered(&self) {
        let mut down = self.down_until.lock();
        if down.take().is_some() {
            tracing::info!(addr = %self.addr, "speedup-cache: Redis answers again; the shared tier is back on");
        }
    }
}

/// A command refused because of what the key holds: the key's problem, not the server's.
fn is_wrong_type(error: &RedisError) -> bool {
    error.code() == Some("WRONGTYPE") || error.to_string().contains("WRONGTYPE")
}

/// Errors that mean "the server is not there", as opposed to "the server said no".
fn is_outage(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
}
