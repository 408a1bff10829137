-- One failed login step of a user (lockout): count it in the window, lock at the limit, atomically.
-- KEYS[1] {PREFIX:USER}:fail  ZSET member -> failure time (ms, Redis clock)
-- KEYS[2] {PREFIX:USER}:lock  present while the account is locked (PX = the lock's time left)
-- ARGV: failures, within (ms), duration (ms), a member unique to this failure
-- Returns {2, ms left} if the account was locked already (nothing counted), {1, duration} if this
-- failure locked it, {0, failures in the window} otherwise.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = redis.call('PTTL', KEYS[2])
if left > 0 then
  return {2, left}
end
local failures, within, duration = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - within)
redis.call('ZADD', KEYS[1], now, ARGV[4])
local n = redis.call('ZCARD', KEYS[1])
if n >= failures then
  redis.call('SET', KEYS[2], '1', 'PX', duration)
  redis.call('DEL', KEYS[1])
  return {1, duration}
end
redis.call('PEXPIRE', KEYS[1], within)
return {0, n}
