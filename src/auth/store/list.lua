#!lua
-- The live sessions of one user, oldest first, on Redis's clock; read only.
-- KEYS: exp, seq, rec. Returns {now ms, record...}.
local exp, seq, rec = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
for _, m in ipairs(redis.call('ZRANGE', seq, 0, -1)) do
  local s, r = redis.call('ZSCORE', exp, m), redis.call('HGET', rec, m)
  if s and tonumber(s) > now and r then out[#out + 1] = r end
end
return out
