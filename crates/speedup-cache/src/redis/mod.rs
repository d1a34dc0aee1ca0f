//! The Redis tier (feature `redis`): a cluster of workers computes each key once.
//!
//! After a local miss, a cache asks Redis, in one script, for the key's value or else for a
//! lease on it (`SET <lease key> <token> NX PX <ttl>`); while most lookups find their value,
//! a plain `GET` goes first and the script only runs on a miss:
//!
//! - the value is there: validate it (`codec`) and use it;
//! - the lease is ours: compute, then store the value, release the lease and announce the
//!   key on the cache's channel if a worker marked it as waited for, again in one script
//!   (`lease`);
//! - another worker holds the lease: wait for the announcement (`watch`), at most one poll
//!   interval or the lease's remaining TTL, then ask again. A worker that died leaves a
//!   lease that expires; the next ask takes it over.
//!
//! When Redis cannot be reached, the cache fails open (computes locally, shares nothing,
//! logs through `tracing`) or, if so configured, fails closed with [`Error::Unavailable`].
//!
//! [`Error::Unavailable`]: crate::Error::Unavailable

mod codec;
mod config;
mod conn;
mod lease;
mod scripts;
mod stats;
mod tier;
mod watch;

pub use self::config::{FailMode, RedisConfig, RedisConfigError};
pub use self::stats::RedisStats;
use self::tier::Core;
pub(crate) use self::tier::RedisTier;
