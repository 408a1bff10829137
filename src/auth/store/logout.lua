#!lua
-- logout: removes the session; 1 if it was live, 0 if it had expired or never existed (AM's "Token has
-- expired"). A user left with no session loses all three keys.
-- KEYS: exp, seq, rec. ARGV: member.
local exp, seq, rec = KEYS[1], KEYS[2], KEYS[3]
local m = ARGV[1]
local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('ZSCORE', exp, m)
redis.call('ZREM', exp, m); redis.call('ZREM', seq, m); redis.call('HDEL', rec, m)
if redis.call('ZCARD', exp) == 0 then redis.call('DEL', exp, seq, rec) end
if s and tonumber(s) > now then return 1 end
return 0
