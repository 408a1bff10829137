#!lua
-- Ends every session of one user (an administrator's logout): all three keys go, so the user's quota
-- counts nothing, and every token pointer left behind leads to no session (validate answers false).
-- KEYS: exp, seq, rec. Returns how many of the sessions were live.
local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return live
