//! The Redis tier's settings: [`RedisConfig`], checked when made, and [`FailMode`].

use std::fmt;
use std::time::Duration;

/// What a cache does when Redis cannot be reached or refuses a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Keep working from the local cache and the function, sharing nothing until Redis is
    /// back; log the outage (default).
    #[default]
    Open,
    /// Compute nothing without Redis: `try_get` returns
    /// [`Error::Unavailable`](crate::Error::Unavailable) (and `get` panics with it). For
    /// computations so expensive that running one twice in the cluster is worse than waiting.
    Closed,
}

/// Why a [`RedisConfig`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// The URL does not parse as a Redis connection URL.
    #[error("invalid Redis URL{shown}: {reason} (expected e.g. redis://127.0.0.1:6379/0)")]
    Url {
        /// The URL, or nothing if it holds credentials (they are not repeated in messages).
        shown: String,
        /// What the parser said.
        reason: String,
    },
    /// The cache name is empty, too long, or has characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid cache name {name:?}: use 1 to 100 ASCII letters, digits, '_', '-' or '.'")]
    Name {
        /// The name given.
        name: String,
    },
}

/// How a [`Cache`](crate::Cache) shares its values through Redis (feature `redis`); pass
/// it to [`CacheBuilder::redis`](crate::CacheBuilder::redis).
///
/// Every Redis key the cache uses starts with `speedup:<name>:<fingerprint>:`, where the
/// fingerprint covers the key and value types and [`version`](RedisConfig::version): two
/// programs, or two versions of one, never read each other's values. Bump the version when
/// the function changes meaning.
///
/// ```
/// use std::time::Duration;
/// use speedup_cache::{FailMode, RedisConfig};
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379/0", "factor")?
///     .version(2)
///     .lease_ttl(Duration::from_secs(30))
///     .value_ttl(Duration::from_secs(24 * 3600))
///     .fail_mode(FailMode::Open);
/// assert!(RedisConfig::new("not a url", "factor").is_err());
/// assert!(RedisConfig::new("redis://127.0.0.1/", "has space").is_err());
/// # Ok::<(), speedup_cache::RedisConfigError>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(super) client: redis::Client,
    pub(super) addr: String,
    pub(super) name: String,
    pub(super) version: u64,
    pub(super) settings: Settings,
    pub(super) timeout: Duration,
    pub(super) retry_after: Duration,
}

/// Shows where and what, never the credentials inside the client.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("settings", &self.settings)
            .field("timeout", &self.timeout)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub(super) lease_ttl: Duration,
    pub(super) value_ttl: Option<Duration>,
    pub(super) poll: Duration,
    pub(super) fail: FailMode,
}

impl RedisConfig {
    /// A configuration for the Redis server at `url` (`redis://[:password@]host:port/db`,
    /// or `redis+unix:///path`) and the cache called `name`. Nothing connects yet: a cache
    /// built while Redis is down starts working locally and uses Redis once it answers.
    ///
    /// Defaults: version 0, lease TTL 10 s, no value TTL, poll fallback 1 s, connect and
    /// command timeout 2 s, retry 1 s after an outage, [`FailMode::Open`].
    ///
    /// # Errors
    ///
    /// [`RedisConfigError::Url`] for a URL that does not parse, [`RedisConfigError::Name`]
    /// for an empty or unusual name.
    pub fn new(url: &str, name: &str) -> Result<Self, RedisConfigError> {
        let valid_name = (1..=100).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !valid_name {
            return Err(RedisConfigError::Name { name: name.to_string() });
        }
        let client = redis::Client::open(url).map_err(|e| RedisConfigError::Url {
            shown: if url.contains('@') { String::new() } else { format!(" {url:?}") },
            reason: e.to_string(),
        })?;
        let addr = client.get_connection_info().addr().to_string();
        Ok(RedisConfig {
            client,
            addr,
            name: name.to_string(),
            version: 0,
            settings: Settings {
                lease_ttl: Duration::from_secs(10),
                value_ttl: None,
                poll: Duration::from_secs(1),
                fail: FailMode::Open,
            },
            timeout: Duration::from_secs(2),
            retry_after: Duration::from_secs(1),
        })
    }

    /// Part of the namespace: caches with different versions share nothing.
    pub fn version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// How long a lease outlives its last refresh (at least 30 ms). Leases are refreshed
    /// every third of it while the key is computed, so it bounds how long others wait for a
    /// worker that died, not how long a computation may take.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// Lets Redis drop values this long after they are written (default: kept).
    pub fn value_ttl(mut self, ttl: Duration) -> Self {
        self.settings.value_ttl = Some(ttl.max(Duration::from_millis(1)));
        self
    }

    /// The longest a waiting worker sleeps between two looks at Redis when no announcement
    /// wakes it (at least 1 ms). Announcements normally wake it at once; this bounds the
    /// cost of a missed one.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.settings.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// How long one call to Redis may take before Redis counts as unreachable: connecting
    /// (or reconnecting, when a pooled connection turns out broken), sending, and waiting
    /// for the reply, all together. A `get` makes one such call to look the key up and,
    /// after computing it, one to publish it; waiting for another worker's lease is not a
    /// call (it is bounded by the lease's expiry). While Redis is found down, calls fail
    /// at once until [`RedisConfig::retry_after`] has passed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long to stop trying Redis after it was found unreachable.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// What to do when Redis is unreachable (default [`FailMode::Open`]).
    pub fn fail_mode(mut self, fail: FailMode) -> Self {
        self.settings.fail = fail;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_are_typed_errors_that_keep_secrets() {
        let tls = RedisConfig::new("rediss://127.0.0.1:6379/", "n").unwrap_err();
        assert!(tls.to_string().contains("TLS"), "{tls}");
        let secret = RedisConfig::new("redis://:hunter2@127.0.0.1:6379/?protocol=nope", "n").unwrap_err();
        assert!(matches!(&secret, RedisConfigError::Url { shown, .. } if shown.is_empty()));
        assert!(!secret.to_string().contains("hunter2"), "{secret}");
        for name in ["", "a b", "a:b", "ü", &"x".repeat(101)] {
            assert_eq!(
                RedisConfig::new("redis://127.0.0.1/", name).unwrap_err(),
                RedisConfigError::Name { name: name.to_string() }
            );
        }
        let ok = RedisConfig::new("redis://:pw@127.0.0.1:6380/", "a-b_c.1").unwrap();
        assert_eq!(ok.addr, "127.0.0.1:6380");
        let shown = format!("{ok:?}");
        assert!(shown.contains("127.0.0.1:6380") && !shown.contains("pw"), "{shown}");
    }
}
