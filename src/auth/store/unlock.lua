-- The admin ends a user's lock and clears the count. KEYS[1] {PREFIX:USER}:fail, KEYS[2] {PREFIX:USER}:lock
-- Returns 1 if a lock was in force.
local was = redis.call('DEL', KEYS[2])
redis.call('DEL', KEYS[1])
return was
