-- A login step of a user passed: is the account locked? With ARGV[1] = '1' (the login is complete) the
-- failure count is cleared in the same step, so a lock set meanwhile is never undone by this login.
-- KEYS[1] {PREFIX:USER}:fail, KEYS[2] {PREFIX:USER}:lock
-- Returns 0 when locked, 1 when admitted.
if redis.call('PTTL', KEYS[2]) > 0 then
  return 0
end
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[1])
end
return 1
