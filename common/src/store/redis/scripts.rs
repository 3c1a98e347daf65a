//! The Lua scripts that make each write to a scan's keys atomic.

use std::sync::LazyLock;

use redis::Script;

/// A script on one scan's keys, `KEYS[1]` its meta hash: -1 for an unknown scan,
/// else `body`, then every key's expiry renewed to `ARGV[ttl_arg]` ms (0 keeps
/// the data), then `ret`.
fn scan_script(body: &str, ttl_arg: u8, ret: &str) -> Script {
    Script::new(&format!(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
{body}
local ttl = tonumber(ARGV[{ttl_arg}])
if ttl > 0 then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
{ret}
"
    ))
}

/// KEYS: meta results stream shards ports (the last only for its expiry). ARGV: ttl_ms maxlen n keys_csv field1 value1 ...
/// Returns -1 for an unknown scan, 1 otherwise.
pub(super) static WRITE: LazyLock<Script> = LazyLock::new(|| {
    scan_script(
        r"for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
local maxlen = tonumber(ARGV[2])
if maxlen > 0 and tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'n', ARGV[3], 'keys', ARGV[4])
end",
        1,
        "return 1",
    )
});

/// KEYS: meta shards results stream ports (the last three only for their expiry). ARGV: shard outcome_json kind(done|failed) ttl_ms.
/// Returns -1 for an unknown scan, 1 when Done was recorded now, 0 otherwise. The
/// first outcome that leaves no shard pending sets `meta.finished` (unix ms).
pub(super) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    scan_script(
        r"local prev = redis.call('HGET', KEYS[2], ARGV[1])
local before = nil
if prev then
  local ok, v = pcall(cjson.decode, prev)
  if ok and type(v) == 'table' then before = v['outcome'] end
  if before ~= 'done' and before ~= 'failed' then
    return redis.error_reply('BADDATA ' .. KEYS[2] .. ' field ' .. ARGV[1] .. ' does not hold a shard outcome')
  end
end
if before == 'done' or (before == 'failed' and ARGV[3] == 'failed') then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if before == 'failed' then redis.call('HINCRBY', KEYS[1], 'shards_failed', -1) end
redis.call('HINCRBY', KEYS[1], 'shards_' .. ARGV[3], 1)
local m = redis.call('HMGET', KEYS[1], 'shards_total', 'shards_done', 'shards_failed', 'finished')
if not m[4] and tonumber(m[2] or 0) + tonumber(m[3] or 0) >= tonumber(m[1] or 0) then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'finished', t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)))
end",
        4,
        "if ARGV[3] == 'done' then return 1 end
return 0",
    )
});

/// KEYS: meta ports. ARGV: shard ports_done ttl_ms.
/// Returns -1 for an unknown scan, 1 otherwise. A shard's count only grows, and
/// `meta.ports_done` moves by the same delta, so the sum is exact under redelivery.
pub(super) static PORTS: LazyLock<Script> = LazyLock::new(|| {
    scan_script(
        r"local prev = redis.call('HGET', KEYS[2], ARGV[1])
local before = 0
if prev then
  before = tonumber(prev)
  if before == nil then
    return redis.error_reply('BADDATA ' .. KEYS[2] .. ' field ' .. ARGV[1] .. ' does not hold a count')
  end
end
local now = tonumber(ARGV[2])
if now > before then
  redis.call('HSET', KEYS[2], ARGV[1], now)
  redis.call('HINCRBY', KEYS[1], 'ports_done', now - before)
end",
        3,
        "return 1",
    )
});

/// KEYS: meta shards. ARGV: ttl_ms shard1 shard2 ...
/// Returns -1 for an unknown scan, else how many failed shards were reopened:
/// their outcome removed, `shards_failed` lowered by as many, and `finished`
/// taken off when any was (`scanfleet resume` runs them again).
pub(super) static REOPEN: LazyLock<Script> = LazyLock::new(|| {
    scan_script(
        r"local n = 0
for i = 2, #ARGV do
  local prev = redis.call('HGET', KEYS[2], ARGV[i])
  if prev then
    local ok, v = pcall(cjson.decode, prev)
    if ok and type(v) == 'table' and v['outcome'] == 'failed' then
      redis.call('HDEL', KEYS[2], ARGV[i])
      n = n + 1
    end
  end
end
if n > 0 then
  redis.call('HINCRBY', KEYS[1], 'shards_failed', -n)
  redis.call('HDEL', KEYS[1], 'finished')
end",
        1,
        "return n",
    )
});
