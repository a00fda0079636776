//! The cache's Lua scripts: each reads and writes a key's value, lock and channels in one
//! atomic step on the server, which is what makes `leave_if_not_null`, the single-flight lock
//! and its compare-and-delete release safe between hosts. redis-rs sends them by hash
//! (`EVALSHA`) and loads them again when a restarted server has forgotten them.
//!
//! The lock is a key holding the loader's token with the lease as its TTL (`SET NX PX`): it
//! saves duplicate work, it does not guarantee that only one loader runs (a loader that
//! overruns its lease, or a paused process, may still finish after a successor started, and
//! Redis locks carry no fencing token to stop it). Every script that ends a lock compares the
//! token first, so a late loader can never end its successor's lock.

use std::sync::LazyLock;

use redis::Script;

/// A get's miss: the value if it landed meanwhile (`{1, value}`); else the lock, taken for
/// this caller (`{2}`); else who holds it and for how much longer (`{3, token, pttl}`); or,
/// once the holder this caller waited for has failed and gone, its error (`{4, error}`).
///
/// KEYS: value, lock, failed. ARGV: token, lease (ms), the holder waited for (or "").
pub(super) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
local holder = redis.call('GET', KEYS[2])
if holder then return {3, holder, redis.call('PTTL', KEYS[2])} end
if ARGV[3] ~= '' then
  local f = redis.call('GET', KEYS[3])
  if f then
    local nl = string.find(f, '\n', 1, true)
    if nl and string.sub(f, 1, nl - 1) == ARGV[3] then return {4, string.sub(f, nl + 1)} end
  end
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {2}
",
    )
});

/// A loader's value: stored unless someone set the key while the lock was not this loader's
/// any more (that value stands); the lock ended if it is still this loader's; watchers and
/// waiters told. Returns 1 if stored, 0 if not.
///
/// KEYS: value, lock. ARGV: token, value, expiry (ms, "0": none), changes channel, fill
/// channel, key.
pub(super) static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ours = redis.call('GET', KEYS[2]) == ARGV[1]
if not ours and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[3] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
if ours then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], 'S' .. string.len(ARGV[6]) .. ':' .. ARGV[6] .. ARGV[2])
redis.call('PUBLISH', ARGV[5], 'V' .. ARGV[2])
return 1
",
    )
});

/// A set: the value stored (unless `leave_if_not_null` and one exists), any load under way
/// ended with it (its waiters get this value, its loader's fill will leave it), watchers
/// told. Returns 1 if stored, 0 if an existing value was left alone.
///
/// KEYS: value, lock. ARGV: value, expiry (ms, "0": none), "1" to leave an existing value,
/// changes channel, fill channel, key.
pub(super) static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local set = {'SET', KEYS[1], ARGV[1]}
if ARGV[2] ~= '0' then
  set[#set + 1] = 'PX'
  set[#set + 1] = ARGV[2]
end
if ARGV[3] == '1' then set[#set + 1] = 'NX' end
if not redis.call(unpack(set)) then return 0 end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[4], 'S' .. string.len(ARGV[6]) .. ':' .. ARGV[6] .. ARGV[1])
redis.call('PUBLISH', ARGV[5], 'V' .. ARGV[1])
return 1
",
    )
});

/// A delete: the old value (or nil); watchers told when there was one.
///
/// KEYS: value. ARGV: changes channel, key.
pub(super) static DEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('GET', KEYS[1])
if old then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[1], 'D' .. string.len(ARGV[2]) .. ':' .. ARGV[2])
end
return old
",
    )
});

/// A failed load: if the lock is still this loader's, it ends, the failure is kept (for
/// waiters that missed the message) and the waiters are told. Returns 1 if it was.
///
/// KEYS: lock, failed. ARGV: token, error, how long the failure is kept (ms), fill channel.
pub(super) static ABANDON: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1] .. '\n' .. ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], 'F' .. ARGV[1] .. '\n' .. ARGV[2])
return 1
",
    )
});

/// A load given up without a verdict (its caller went away): compare-and-delete of the lock,
/// and the waiters told to take over. Returns 1 if the lock was this loader's.
///
/// KEYS: lock. ARGV: token, fill channel.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'R')
return 1
",
    )
});

/// A namespace declared: its options as stored (nil if these are now its options), and its
/// name added to the set of namespaces.
///
/// KEYS: options, namespaces. ARGV: options (JSON), namespace.
pub(super) static DECLARE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SADD', KEYS[2], ARGV[2])
local stored = redis.call('GET', KEYS[1])
if stored then return stored end
redis.call('SET', KEYS[1], ARGV[1])
return false
",
    )
});
