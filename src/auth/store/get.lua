#!lua
-- validate / getSessionInfo (ARGV[2] = '0') and their idle reset (ARGV[2] = '1'), on Redis's clock.
-- A session at or past its expiry is dropped and answered as absent; a touch never resurrects one and
-- never moves the expiry past created + max.
-- KEYS: exp, seq, rec. ARGV: member, touch. Returns nil or {record, expires ms, now ms}.
local exp, seq, rec = KEYS[1], KEYS[2], KEYS[3]
local m = ARGV[1]
local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('ZSCORE', exp, m)
if not s then return false end
s = tonumber(s)
local r = redis.call('HGET', rec, m)
if s <= now or not r then
  redis.call('ZREM', exp, m); redis.call('ZREM', seq, m); redis.call('HDEL', rec, m)
  return false
end
if ARGV[2] == '1' then
  local created, last, idle, max, rest = string.match(r, '^(%d+):(%d+):(%d+):(%d+):(.*)$')
  created, idle, max = tonumber(created), tonumber(idle), tonumber(max)
  if now > tonumber(last) then
    s = math.min(now + idle, created + max)
    r = string.format('%d:%d:%d:%d:', created, now, idle, max) .. rest
    redis.call('ZADD', exp, 'XX', s, m); redis.call('HSET', rec, m, r)
    local top = redis.call('ZRANGE', exp, -1, -1, 'WITHSCORES')
    local ttl = math.max(tonumber(top[2]) - now, 1)
    redis.call('PEXPIRE', exp, ttl); redis.call('PEXPIRE', seq, ttl); redis.call('PEXPIRE', rec, ttl)
  end
end
return {r, s, now}
