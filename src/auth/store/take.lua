#!lua
-- take: removes and returns the journey of one auth session if the step's otk is its current one, in one
-- atomic step, so of two answers of one step on any nodes at most one continues the login. A stale otk
-- (an earlier step's authId, a replay) leaves the journey to the holder of the current one.
-- KEYS: the journey key. ARGV: digest of the step's otk.
-- Returns {record, milliseconds left} or nil.
local v = redis.call('GET', KEYS[1])
if not v then return false end
local ok, kept = pcall(cjson.decode, v)
if not ok or type(kept) ~= 'table' or kept.o ~= ARGV[1] then return false end
local left = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
return {v, left}
