-- wrk script for bench/run.sh's `logins` stage: whole `mfa` logins (DataStore, then TOTP) through the proxy,
-- one after the other on each connection. Run it with one connection per thread (`-tN -cN`): wrk keeps one
-- Lua state per thread, and a login is a chain of three requests whose answers feed the next one.
--
--   1. POST .../authenticate?authIndexType=service&authIndexValue=mfa, empty body: callbacks for name and
--      password; the node sets amlbcookie, which is sent from then on (as a browser would)
--   2. the answers (user demo, password secret), with the authId of step 1
--   3. the one-time code, with the authId of step 2; a 200 with a tokenId is one login
--
-- TOTP_CODES names a Lua file that returns {[30-second step] = "code"} for the run's time span (bench/run.sh
-- writes it; LuaJIT has no HMAC-SHA1). wrk's own request counts are steps; done() prints the logins.
local path = "/am/json/realms/root/authenticate?authIndexType=service&authIndexValue=mfa"
local codes = dofile(os.getenv("TOTP_CODES"))
local threads = {}
local step, auth_id, lbcookie = 1, nil, nil
logins, failures = 0, 0

function setup(thread)
  table.insert(threads, thread)
end

local headers = { ["Content-Type"] = "application/json", ["Accept-API-Version"] = "resource=2.0, protocol=1.0" }

function request()
  local body = ""
  if step == 2 then
    body = '{"authId":"' .. auth_id .. '","callbacks":[{"type":"NameCallback","output":[{"name":"prompt","value":"User Name"}],"input":[{"name":"IDToken1","value":"demo"}],"_id":0},{"type":"PasswordCallback","output":[{"name":"prompt","value":"Password"}],"input":[{"name":"IDToken2","value":"secret"}],"_id":1}]}'
  elseif step == 3 then
    local code = codes[math.floor(os.time() / 30)]
    body = '{"authId":"' .. auth_id .. '","callbacks":[{"type":"NameCallback","output":[{"name":"prompt","value":"Enter verification code"}],"input":[{"name":"IDToken1","value":"' .. code .. '"}],"_id":0}]}'
  end
  if lbcookie then headers["Cookie"] = "amlbcookie=" .. lbcookie else headers["Cookie"] = nil end
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  local set = hdrs["Set-Cookie"] or hdrs["set-cookie"]
  if set then
    local id = set:match("amlbcookie=([%w._-]+)")
    if id then lbcookie = id end
  end
  if status == 200 and step < 3 then
    auth_id = body:match('"authId":"([^"]+)"')
    if auth_id then step = step + 1 return end
  elseif status == 200 and body:find('"tokenId"', 1, true) then
    logins = logins + 1
    step, auth_id, lbcookie = 1, nil, nil
    return
  end
  failures = failures + 1
  if failures <= 3 then io.stderr:write("login step " .. step .. ": " .. status .. " " .. body:sub(1, 200) .. "\n") end
  step, auth_id, lbcookie = 1, nil, nil
end

function done(summary, latency, requests)
  local n, f = 0, 0
  for _, t in ipairs(threads) do
    n = n + t:get("logins")
    f = f + t:get("failures")
  end
  io.write(string.format("logins %d failures %d\n", n, f))
end
