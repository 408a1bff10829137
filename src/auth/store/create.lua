#!lua
-- One login: drop the user's expired sessions, count, pick victims by the quota action with the
-- in-process planner's rules, evict, insert. Redis runs it without interleaving any other command, so
-- concurrent logins from any number of processes serialise per user (OPENAM-5864 / OPENAM-10332).
-- KEYS: exp (ZSET member -> expiry ms), seq (ZSET member -> insertion number), rec (HASH member -> record)
-- ARGV: member, blob, idle ms, max ms, limit ('' = no quota), action, now ms ('' = Redis TIME)
-- Returns {0} denied, {2, created, expires} already created (a retry), {1, now, expires, evicted...}.
local exp, seq, rec = KEYS[1], KEYS[2], KEYS[3]
local sid = ARGV[1]
local now
if ARGV[7] ~= '' then now = tonumber(ARGV[7]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local function drop(list)
  for i = 1, #list, 500 do local c = {}
    for j = i, math.min(i + 499, #list) do c[#c + 1] = list[j] end
    redis.call('ZREM', exp, unpack(c)); redis.call('ZREM', seq, unpack(c)); redis.call('HDEL', rec, unpack(c)) end
end
local old = redis.call('HGET', rec, sid)
if old then return {2, tonumber(string.match(old, '^(%d+):')), tonumber(redis.call('ZSCORE', exp, sid))} end
drop(redis.call('ZRANGEBYSCORE', exp, '-inf', now))
local evicted = {}
if ARGV[5] ~= '' then
  local limit, live = tonumber(ARGV[5]), redis.call('ZCARD', exp)
  if limit < 1 then return {0} end
  if live >= limit then
    local action, excess = ARGV[6], live - (limit - 1)
    if action == 'DENY_ACCESS' then return {0}
    elseif action == 'DESTROY_OLD_SESSIONS' then evicted = redis.call('ZRANGE', seq, 0, -1)
    elseif action == 'DESTROY_OLDEST_SESSION' then evicted = redis.call('ZRANGE', seq, 0, excess - 1)
    elseif action == 'DESTROY_NEXT_EXPIRING' then
      local order, rows = {}, {}
      local s = redis.call('ZRANGE', seq, 0, -1, 'WITHSCORES')
      for i = 1, #s, 2 do order[s[i]] = tonumber(s[i + 1]) end
      local e = redis.call('ZRANGE', exp, 0, -1, 'WITHSCORES')
      for i = 1, #e, 2 do rows[#rows + 1] = {e[i], tonumber(e[i + 1]), order[e[i]] or 0} end
      table.sort(rows, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[3] < b[3] end)
      for i = 1, excess do evicted[i] = rows[i][1] end
    else return redis.error_reply('unknown quota action ' .. action) end
    drop(evicted)
  end
end
local idle, max = tonumber(ARGV[3]), tonumber(ARGV[4])
local expires = math.min(now + idle, now + max)
local top = redis.call('ZRANGE', seq, -1, -1, 'WITHSCORES')
local n = 1; if #top == 2 then n = tonumber(top[2]) + 1 end
redis.call('ZADD', exp, expires, sid); redis.call('ZADD', seq, n, sid)
redis.call('HSET', rec, sid, string.format('%d:%d:%d:%d:', now, now, idle, max) .. ARGV[2])
local last = redis.call('ZRANGE', exp, -1, -1, 'WITHSCORES')
local ttl = math.max(tonumber(last[2]) - now, 1)
redis.call('PEXPIRE', exp, ttl); redis.call('PEXPIRE', seq, ttl); redis.call('PEXPIRE', rec, ttl)
local out = {1, now, expires}; for i = 1, #evicted do out[#out + 1] = evicted[i] end
return out
