-- wrk script for bench/run.sh's `post` stage: the JSON POST of an AM continuation step (the answer to the
-- DataStore callbacks of `ldapService`), 768 bytes, as every step of a login after the first sends it.
--
--   wrk -s bench/post.lua http://127.0.0.1:PORT/   # with Cookie: amlbcookie=01 (what a browser sends)
--   NO_COOKIE=1 wrk -s bench/post.lua ...           # without: only the authId can name the node
--
-- The authId looks like AM's: an HS256 compact JWS whose claims carry `sessionId`, a session token in
-- AM's c66 layout `AQIC<id>*<ext>*` where ext is base64 of the writeUTF pairs SI=01, S1=01
-- ("AAJTSQACMDEAAlMxAAIwMQ.."), which is what tether's auth_id hint reads (src/am/token.rs
-- auth_id_node_hint). The signature is 32 fixed bytes: the proxy never verifies it. An "extra" claim pads
-- the body to 768 bytes, the size of the continuation bodies this bench stands for.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept-API-Version"] = "resource=2.0, protocol=1.0"
if os.getenv("NO_COOKIE") ~= "1" then
  wrk.headers["Cookie"] = "amlbcookie=01"
end
wrk.path = "/am/json/realms/root/authenticate"
wrk.body = '{"authId":"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJvdGsiOiJrNWxkZ2NzMnBxMXI5b2U4YWkzdHVkdDNkbSIsImF1dGhJbmRleFZhbHVlIjoibGRhcFNlcnZpY2UiLCJyZWFsbSI6Ii8iLCJzZXNzaW9uSWQiOiJBUUlDNXdNMkxZNFNmY3hQRWNqVktDRUk3UWRtWXZsT1p2S1pwZEVFcnhWUHZ4OC4qQUFKVFNRQUNNREVBQWxNeEFBSXdNUS4uKiIsImV4dHJhIjoieHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHgiLCJleHAiOjE3OTYwMDAwMDB9.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","callbacks":[{"type":"NameCallback","output":[{"name":"prompt","value":"User Name"}],"input":[{"name":"IDToken1","value":"demo"}],"_id":0},{"type":"PasswordCallback","output":[{"name":"prompt","value":"Password"}],"input":[{"name":"IDToken2","value":"demo-Passw0rd"}],"_id":1}]}'
