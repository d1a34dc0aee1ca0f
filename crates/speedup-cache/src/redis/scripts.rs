//! The Lua scripts: each step that reads and then writes runs atomically in Redis, so no
//! other worker can slip in between (a lease taken twice, a lease deleted after it passed
//! to someone else). `redis::Script` sends them by SHA and loads them on `NOSCRIPT`.

use std::sync::LazyLock;

use redis::Script;

/// KEYS: value, lease, waiters. ARGV: token, lease TTL in ms, waiters-marker TTL in ms.
/// Returns `{1, value}` when the value exists, `{2}` when this caller now holds the lease
/// (`SET lease token NX PX ttl`; also when it already held it: a retried call whose first
/// reply was lost must not wait for itself), `{3}` when the lease key has no expiry (no
/// worker of ours wrote it: waiting for it would never end), or `{0, pttl}` while another
/// worker holds it, after marking the key as waited for (so that its publisher announces it).
pub(super) static GET_OR_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local value = redis.call('GET', KEYS[1])
if value then return {1, value} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
if redis.call('GET', KEYS[2]) == ARGV[1] then return {2} end
local pttl = redis.call('PTTL', KEYS[2])
if pttl == -1 then return {3} end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
return {0, pttl}
",
    )
});

/// KEYS: value, lease, waiters. ARGV: token, framed value, value TTL in ms (0: none), channel.
/// Stores the value, releases the lease if the caller still holds it (compare and delete),
/// and announces the value key on the channel if a worker waits for it. Returns 1 if the
/// lease was still held.
pub(super) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
local held = 0
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  held = 1
end
if redis.call('DEL', KEYS[3]) == 1 then
  redis.call('PUBLISH', ARGV[4], KEYS[1])
end
return held
",
    )
});

/// KEYS: lease, waiters. ARGV: token, channel, value key.
/// Compare and delete: releases the lease only if the caller still holds it, and then
/// tells the waiters, if any, to try again. Returns 1 if it was released.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('DEL', KEYS[2]) == 1 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
  return 1
end
return 0
",
    )
});

/// KEYS: lease. ARGV: token, lease TTL in ms.
/// Extends the lease only if the caller still holds it. Returns 1 if it did.
pub(super) static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});
