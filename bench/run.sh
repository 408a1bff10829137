#!/usr/bin/env bash
# Proxy CPU per request: tether vs HAProxy vs nginx with cookie stickiness (issue 8).
#
#   bench/run.sh                       # REPEATS=5 DURATION=10s CONNS=50 IDLE_CONNS=10000
#   REPEATS=3 DURATION=5s bench/run.sh # quicker
#   STAGES=https bench/run.sh          # only the https-backend stage; STAGES="plain https" for both
#
# Everything listens on 127.0.0.1 only. Two identical upstreams (examples/bench_upstream.rs, a tiny 200
# answer, keep-alive) stand behind tether (one worker thread, cookie mode insert), HAProxy (nbthread 1,
# `cookie amlbcookie insert indirect nocache`) and nginx (one worker, `hash $cookie_amlbcookie
# consistent`), all keep-alive on both legs and without access logs. The proxies and the upstreams run on
# PROXY_CPU (1), wrk alone on LOAD_CPU (0); UPSTREAM_CPU moves the upstreams. Repeats are interleaved (each repeat runs every target once)
# so drift on a shared machine hits all targets alike. The figure that separates the proxies is CPU per
# request: the proxy process's utime+stime (/proc/PID/stat, nginx master+worker) over the requests wrk
# completed. Peak RSS is VmHWM. Then a fixed-rate stage (wrk2 or oha, when installed) and an
# idle-connections stage (IDLE_CONNS keep-alive connections held open against tether and HAProxy).
# The https-backend stage (STAGES includes "https") re-encrypts to the same two upstreams, which also
# listen with TLS (a test CA made by `bench_upstream --make-certs`): tether with `https://` backends and
# `[pool.tls] ca_file`, HAProxy with `server ... ssl verify required ca-file ...`, nginx with
# `proxy_ssl_verify on`, all verifying the name `localhost`, with the keep-alive settings of the plain
# stage (targets tether-tls, haproxy-tls, nginx-tls; TLS_TARGETS narrows them).
# Issue 16 adds four stages, each printing its own table:
#   post       the JSON POST of an AM continuation step (bench/post.lua: 768 bytes, Content-Type
#              application/json, Cookie amlbcookie=01) through the plain listeners of all three; and the same
#              POST without the cookie through tether alone (tether-auth_id: only the authId's sessionId
#              names the node, which no peer can read)
#   tls        TLS terminated at the proxy (one ECDSA P-256 certificate made with openssl, the same
#              versions, TLS 1.3 suites, TLS 1.2 ciphers and groups for all three: rustls's defaults with
#              the ring provider), keep-alive GETs and the POST of bench/post.lua, plain upstreams
#   handshake  TLS connections per second against the same listeners: wrk with `Connection: close` (a new
#              connection per request; wrk's OpenSSL client offers the previous session), and `openssl
#              s_time -new` (full handshakes, one at a time) and `-reuse` (resumed sessions)
#   logins     whole mfa logins (bench/login.lua) through `tether run` to three `tether node` processes
#              (quotas on, argon2id m=8 KiB t=1, TOTP not single-use): logins/s, the proxy's CPU per
#              login and the nodes', measured per process
# e.g. STAGES="post tls handshake logins" REPEATS=3 DURATION=5s IDLE_CONNS=0 bench/run.sh
# After the tables, measurement parts of issue 16 that follow the stages that ran (bench/after_tables.sh):
#   fixed rate  with oha (`cargo install oha --locked`; wrk2 when only it is there), every proxy at the same
#              offered rate, FIXED_FRACTION (0.5) of HAProxy's median req/s in that stage's table, or
#              FIXED_RATE for every row; FIXED_REPEATS (1) interleaved repeats of DURATION, CONNS
#              connections, latency counted from when each request was due (--latency-correction):
#              p50/p99/max and the proxy's CPU per request at that rate, for the plain GET (plain), the
#              JSON POST with the cookie (post: bench/post.lua's body and headers) and the TLS keep-alive
#              GET and POST (tls: oha --insecure against the front listeners)
#   idle TLS   when the tls stage runs: IDLE_TLS_CONNS (2000) TLS keep-alive connections, one request each
#              (examples/idle_conns with the front certificate pinned), held against tether, HAProxy and
#              nginx: the RSS they add, in bytes per connection (the plain idle rows need the plain stage)
#   sozu       a fourth target of the post stage (and its fixed-rate row) when `sozu` is on PATH and SOZU
#              is not 0: one worker, sticky sessions on amlbcookie (sticky_id 01 and 02)
# e.g. STAGES="post tls" REPEATS=1 DURATION=3s IDLE_CONNS=0 IDLE_TLS_CONNS=2000 bench/run.sh
# Not part of .ci/run. Nothing is installed: missing tools are named and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS=${REPEATS:-5}
# TARGETS (default "direct tether haproxy nginx") narrows the wrk stage while iterating; IDLE_CONNS=0 skips
# the idle stage.
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
IDLE_CONNS=${IDLE_CONNS:-10000}
# IDLE_TLS_CONNS: TLS connections held idle against each TLS front listener when the tls stage runs (0 skips).
IDLE_TLS_CONNS=${IDLE_TLS_CONNS:-2000}
PROXY_CPU=${PROXY_CPU:-1}
UPSTREAM_CPU=${UPSTREAM_CPU:-$PROXY_CPU}
LOAD_CPU=${LOAD_CPU:-0}
PORT_BASE=${PORT_BASE:-18080}

P_UP1=$((PORT_BASE + 1)) P_UP2=$((PORT_BASE + 2))
P_TETHER=$((PORT_BASE + 10)) P_ADMIN=$((PORT_BASE + 11)) P_HAPROXY=$((PORT_BASE + 12)) P_NGINX=$((PORT_BASE + 13))
P_SOZU=$((PORT_BASE + 14))
P_UP1_TLS=$((PORT_BASE + 3)) P_UP2_TLS=$((PORT_BASE + 4))
P_TETHER_TLS=$((PORT_BASE + 20)) P_ADMIN_TLS=$((PORT_BASE + 21)) P_HAPROXY_TLS=$((PORT_BASE + 22)) P_NGINX_TLS=$((PORT_BASE + 23))
P_TETHER_FRONT=$((PORT_BASE + 40)) P_ADMIN_FRONT=$((PORT_BASE + 41)) P_HAPROXY_FRONT=$((PORT_BASE + 42)) P_NGINX_FRONT=$((PORT_BASE + 43))
P_LOGIN=$((PORT_BASE + 30)) P_LOGIN_ADMIN=$((PORT_BASE + 34)) P_NODE1=$((PORT_BASE + 31)) P_NODE2=$((PORT_BASE + 32)) P_NODE3=$((PORT_BASE + 33))
# STAGES: "plain" (default: the wrk, fixed-rate and idle stages), "https" (re-encryption to the nodes),
# "post", "tls", "handshake", "logins" (see above).
read -r -a STAGES <<<"${STAGES:-plain}"
has_stage() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }
for stage in "${STAGES[@]}"; do
  case $stage in
    plain | https | post | tls | handshake | logins) ;;
    *) echo "unknown stage $stage (plain, https, post, tls, handshake, logins)" >&2; exit 2 ;;
  esac
done
FRONT_TLS=0
{ has_stage tls || has_stage handshake; } && FRONT_TLS=1

export PATH="$PATH:/usr/sbin:/sbin"
missing=()
for tool in haproxy nginx wrk; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "missing: ${missing[*]}. Install them with:" >&2
  echo "  apt-get install haproxy nginx-light wrk" >&2
  exit 1
fi
for tool in taskset python3 cargo openssl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (needed by this script)" >&2; exit 1; }
done

# Ten thousand idle connections need ten thousand descriptors in the client and in each proxy (HAProxy
# asks for two per connection it may hold).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
IDLE_MAX=$IDLE_CONNS
((IDLE_TLS_CONNS > IDLE_MAX)) && IDLE_MAX=$IDLE_TLS_CONNS
HAPROXY_MAXCONN=$(((NOFILE - 200) / 2))
((HAPROXY_MAXCONN > IDLE_MAX + 1000)) && HAPROXY_MAXCONN=$((IDLE_MAX + 1000))
if ((HAPROXY_MAXCONN < IDLE_MAX + 100)); then
  echo "note: ulimit -n is $NOFILE; the idle stage needs about $((2 * IDLE_MAX + 2000))" >&2
fi

WORK=$(mktemp -d /tmp/tether-bench.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== build (release)"
cargo build --release --bin tether --examples 2>&1 | grep -v '^\s*\(Compiling\|Finished\)' || true
BIN=${CARGO_TARGET_DIR:-target}/release
for b in "$BIN/tether" "$BIN/examples/bench_upstream" "$BIN/examples/idle_conns"; do
  [[ -x $b ]] || { echo "build did not produce $b" >&2; exit 1; }
done

wait_port() { # port: until something accepts on 127.0.0.1:port (at most 30 s)
  local i
  for ((i = 0; i < 600; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1; the logs:" >&2
  tail -n 20 "$WORK"/*.log >&2
  return 1
}

start() { # log-name cpu command...: runs pinned to cpu in the background, PID appended to PIDS
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}

# Another run of this script (or anything else) on these ports would be measured instead of ours: refuse.
for p in "$P_UP1" "$P_UP2" "$P_UP1_TLS" "$P_UP2_TLS" "$P_TETHER" "$P_ADMIN" "$P_HAPROXY" "$P_NGINX" "$P_SOZU" \
  "$P_TETHER_TLS" "$P_ADMIN_TLS" "$P_HAPROXY_TLS" "$P_NGINX_TLS" "$P_TETHER_FRONT" "$P_ADMIN_FRONT" \
  "$P_HAPROXY_FRONT" "$P_NGINX_FRONT" "$P_LOGIN" "$P_LOGIN_ADMIN" "$P_NODE1" "$P_NODE2" "$P_NODE3"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "127.0.0.1:$p is taken (another bench/run.sh?): choose other ports with PORT_BASE" >&2
    exit 1
  fi
done
echo "== start upstreams, tether, haproxy, nginx (proxy cpu $PROXY_CPU, upstream cpu $UPSTREAM_CPU, wrk cpu $LOAD_CPU)"
UP1_TLS=() UP2_TLS=()
if has_stage https; then
  CERTS=$WORK/certs
  "$BIN/examples/bench_upstream" --make-certs "$CERTS"
  UP1_TLS=("$P_UP1_TLS" "$CERTS/node.pem" "$CERTS/node-key.pem")
  UP2_TLS=("$P_UP2_TLS" "$CERTS/node.pem" "$CERTS/node-key.pem")
fi
if ((FRONT_TLS)); then
  # One ECDSA P-256 certificate for the three TLS listeners (HAProxy wants certificate and key in one file).
  FRONT=$WORK/front
  mkdir -p "$FRONT"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$FRONT/key.pem" -out "$FRONT/cert.pem" 2>/dev/null
  cat "$FRONT/cert.pem" "$FRONT/key.pem" >"$FRONT/both.pem"
fi
start up1 "$UPSTREAM_CPU" "$BIN/examples/bench_upstream" "$P_UP1" "${UP1_TLS[@]}"
start up2 "$UPSTREAM_CPU" "$BIN/examples/bench_upstream" "$P_UP2" "${UP2_TLS[@]}"
PID_UP1=${PIDS[0]}

cat >"$WORK/tether.toml" <<EOF
[proxy]
listen = "127.0.0.1:$P_TETHER"
admin_listen = "127.0.0.1:$P_ADMIN"
workers = 1

[[pool]]
name = "bench"
  [pool.affinity]
  mode = "insert"
  [pool.health]
  path = "/health"
  interval_ms = 5000
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:$P_UP1"
  [[pool.backend]]
  id = "02"
  url = "http://127.0.0.1:$P_UP2"

[[route]]
path_prefix = "/"
pool = "bench"
EOF
RUST_LOG=warn start tether "$PROXY_CPU" "$BIN/tether" run -c "$WORK/tether.toml"
PID_TETHER=${PIDS[-1]}
if ((FRONT_TLS)); then
  # The plain config with [proxy.tls]: rustls (ring) with its defaults, TLS 1.3 and 1.2.
  sed -e "s/:$P_TETHER\"/:$P_TETHER_FRONT\"/; s/:$P_ADMIN\"/:$P_ADMIN_FRONT\"/" \
    -e "s|^workers = 1|&\n\n[proxy.tls]\ncert = \"$FRONT/cert.pem\"\nkey = \"$FRONT/key.pem\"|" \
    "$WORK/tether.toml" >"$WORK/tether-front.toml"
  RUST_LOG=warn start tether-front "$PROXY_CPU" "$BIN/tether" run -c "$WORK/tether-front.toml"
  PID_TETHER_FRONT=${PIDS[-1]}
fi
if has_stage https; then
  # The same config, on its own ports, re-encrypting to the upstreams' TLS ports.
  sed -e "s/:$P_TETHER\"/:$P_TETHER_TLS\"/; s/:$P_ADMIN\"/:$P_ADMIN_TLS\"/" \
    -e "s|http://127.0.0.1:$P_UP1\"|https://127.0.0.1:$P_UP1_TLS\"|; s|http://127.0.0.1:$P_UP2\"|https://127.0.0.1:$P_UP2_TLS\"|" \
    -e "s|^  \[pool.health\]|  [pool.tls]\n  ca_file = \"$CERTS/ca.pem\"\n  server_name = \"localhost\"\n&|" \
    "$WORK/tether.toml" >"$WORK/tether-tls.toml"
  RUST_LOG=warn start tether-tls "$PROXY_CPU" "$BIN/tether" run -c "$WORK/tether-tls.toml"
  PID_TETHER_TLS=${PIDS[-1]}
fi

cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  stats socket $WORK/haproxy.sock
  maxconn $HAPROXY_MAXCONN
defaults
  mode http
  option http-keep-alive
  option forwardfor
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend fe
  bind 127.0.0.1:$P_HAPROXY
  default_backend be
backend be
  balance roundrobin
  cookie amlbcookie insert indirect nocache
  http-reuse always
  option httpchk GET /health
  server s1 127.0.0.1:$P_UP1 cookie 01 check inter 5s
  server s2 127.0.0.1:$P_UP2 cookie 02 check inter 5s
EOF
if has_stage https; then
  cat >>"$WORK/haproxy.cfg" <<EOF
frontend fe_tls
  bind 127.0.0.1:$P_HAPROXY_TLS
  default_backend be_tls
backend be_tls
  balance roundrobin
  cookie amlbcookie insert indirect nocache
  http-reuse always
  option httpchk GET /health
  server s1 127.0.0.1:$P_UP1_TLS cookie 01 check inter 5s ssl verify required ca-file $CERTS/ca.pem sni str(localhost) verifyhost localhost alpn http/1.1
  server s2 127.0.0.1:$P_UP2_TLS cookie 02 check inter 5s ssl verify required ca-file $CERTS/ca.pem sni str(localhost) verifyhost localhost alpn http/1.1
EOF
fi
# rustls's defaults (ring provider), written in OpenSSL's names: TLS 1.3 suites, TLS 1.2 ECDHE-ECDSA AEAD
# ciphers, groups X25519, P-256, P-384. rustls resumes from a server-side session cache (no stateless
# tickets), so HAProxy and nginx keep their session caches and turn tickets off.
TLS13_SUITES=TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256
TLS12_CIPHERS=ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305
TLS_GROUPS=X25519:P-256:P-384
if ((FRONT_TLS)); then
  cat >>"$WORK/haproxy.cfg" <<EOF
frontend fe_front
  bind 127.0.0.1:$P_HAPROXY_FRONT ssl crt $FRONT/both.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2 ciphers $TLS12_CIPHERS ciphersuites $TLS13_SUITES curves $TLS_GROUPS no-tls-tickets
  default_backend be
EOF
fi
start haproxy "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg"
PID_HAPROXY=${PIDS[-1]}

mkdir -p "$WORK/nginx"
NGINX_TLS=""
if has_stage https; then
  NGINX_TLS="
  upstream be_tls {
    hash \$cookie_amlbcookie consistent;
    server 127.0.0.1:$P_UP1_TLS;
    server 127.0.0.1:$P_UP2_TLS;
    keepalive 64;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$P_NGINX_TLS;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    location / {
      proxy_pass https://be_tls;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate $CERTS/ca.pem;
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }"
fi
if ((FRONT_TLS)); then
  NGINX_TLS="$NGINX_TLS
  server {
    listen 127.0.0.1:$P_NGINX_FRONT ssl http2;
    ssl_certificate $FRONT/cert.pem;
    ssl_certificate_key $FRONT/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers $TLS12_CIPHERS;
    ssl_conf_command Ciphersuites $TLS13_SUITES;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }"
fi
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $((IDLE_MAX + 5000));
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections $((IDLE_MAX + 5000)); }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream be {
    hash \$cookie_amlbcookie consistent;
    server 127.0.0.1:$P_UP1;
    server 127.0.0.1:$P_UP2;
    keepalive 64;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$P_NGINX;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }$NGINX_TLS
}
EOF
start nginx "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" -g 'daemon off;'
PID_NGINX=${PIDS[-1]}

# sozu (a Rust proxy: `cargo install sozu --locked`), in the post stage only, when installed and SOZU is not
# 0: one worker, its sticky sessions on the cookie amlbcookie with the ids 01 and 02 (insert when absent).
PID_SOZU=""
if has_stage post && [[ ${SOZU:-1} != 0 ]] && command -v sozu >/dev/null; then
  cat >"$WORK/sozu.toml" <<EOF
command_socket = "$WORK/sozu.sock"
worker_count = 1
worker_automatic_restart = false
log_level = "error"
log_target = "stdout"
max_connections = $((IDLE_MAX + 5000))
front_timeout = 60
activate_listeners = true

[[listeners]]
protocol = "http"
address = "127.0.0.1:$P_SOZU"
sticky_name = "amlbcookie"

[clusters.bench]
protocol = "http"
sticky_session = true
frontends = [{ address = "127.0.0.1:$P_SOZU", hostname = "*", position = "POST" }]
backends = [
  { address = "127.0.0.1:$P_UP1", sticky_id = "01" },
  { address = "127.0.0.1:$P_UP2", sticky_id = "02" },
]
EOF
  start sozu "$PROXY_CPU" sozu start -c "$WORK/sozu.toml"
  PID_SOZU=${PIDS[-1]}
elif has_stage post; then
  echo "note: sozu is not installed (cargo install sozu --locked) or SOZU=0: the post stage runs without it" >&2
fi


if has_stage logins; then
  # Three standalone nodes and a proxy without embedded nodes, so each process's CPU is its own: the
  # proxy's share of a login is measured, not estimated. Memory journeys, node-local sessions, quotas on.
  cat >"$WORK/logins.toml" <<EOF
[proxy]
listen = "127.0.0.1:$P_LOGIN"
admin_listen = "127.0.0.1:$P_LOGIN_ADMIN"
workers = 1

[[pool]]
name = "am"
  [pool.affinity]
  mode = "observe"
  hints = ["cookie", "auth_id", "session_token"]
  [pool.health]
  path = "/am/json/health/ready"
  interval_ms = 5000
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:$P_NODE1"
  [[pool.backend]]
  id = "02"
  url = "http://127.0.0.1:$P_NODE2"
  [[pool.backend]]
  id = "03"
  url = "http://127.0.0.1:$P_NODE3"

[[route]]
path_prefix = "/am/"
pool = "am"

[auth]
context_path = "/am"
signing_secret_file = "$WORK/logins-secret.txt"
auth_sessions = "memory"
sessions = "local"
totp_single_use = false
default_chain = "mfa"
  [auth.quota]
  enabled = true
  limit = 5
  exhaustion_action = "DESTROY_NEXT_EXPIRING"
  [[auth.chain]]
  name = "mfa"
  modules = ["DataStore", "TOTP"]
  [[auth.user]]
  username = "demo"
  # "secret": argon2id with 8 KiB and one pass (tests/fixtures/cluster.toml), so the proxy's share shows
  password = "\$argon2id\$v=19\$m=8,t=1,p=1\$dGV0aGVyLXRlc3Qtc2FsdA\$cMIPPHhtZP/NQUWz1Wc07NGSLz5JYxOGTVLWmENj8Rc"
  totp_secret = "JBSWY3DPEHPK3PXP"
EOF
  head -c 48 /dev/urandom | base64 >"$WORK/logins-secret.txt"
  for id in 01 02 03; do
    RUST_LOG=warn start "node$id" "$UPSTREAM_CPU" "$BIN/tether" node --id "$id" -c "$WORK/logins.toml"
    NODE_PIDS="${NODE_PIDS:-} ${PIDS[-1]}"
  done
  RUST_LOG=warn start tether-login "$PROXY_CPU" "$BIN/tether" run -c "$WORK/logins.toml"
  PID_LOGIN=${PIDS[-1]}
  # TOTP codes (RFC 6238: SHA-1, 30 s, 6 digits) for every step of the next hour, for bench/login.lua.
  python3 - "$WORK/totp.lua" <<'PY'
import base64, hmac, struct, sys, time
key = base64.b32decode("JBSWY3DPEHPK3PXP")
now = int(time.time()) // 30
with open(sys.argv[1], "w") as f:
    f.write("return {\n")
    for step in range(now - 2, now + 120):
        mac = hmac.new(key, struct.pack(">Q", step), "sha1").digest()
        o = mac[-1] & 15
        code = (struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000
        f.write(f'  [{step}] = "{code:06d}",\n')
    f.write("}\n")
PY
fi

PORTS=("$P_UP1" "$P_UP2" "$P_TETHER" "$P_HAPROXY" "$P_NGINX")
has_stage https && PORTS+=("$P_UP1_TLS" "$P_UP2_TLS" "$P_TETHER_TLS" "$P_HAPROXY_TLS" "$P_NGINX_TLS")
((FRONT_TLS)) && PORTS+=("$P_TETHER_FRONT" "$P_HAPROXY_FRONT" "$P_NGINX_FRONT")
has_stage logins && PORTS+=("$P_NODE1" "$P_NODE2" "$P_NODE3" "$P_LOGIN")
[[ -n $PID_SOZU ]] && PORTS+=("$P_SOZU")
for p in "${PORTS[@]}"; do wait_port "$p"; done
sleep 0.5
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "process $pid exited at start; the logs:" >&2; tail -n 20 "$WORK"/*.log >&2; exit 1; }
done

# The processes whose CPU counts for a target: the proxy (nginx: master and its workers).
procs_of() {
  case $1 in
    direct) echo "$PID_UP1" ;;
    tether) echo "$PID_TETHER" ;;
    tether-tls) echo "$PID_TETHER_TLS" ;;
    tether-front) echo "$PID_TETHER_FRONT" ;;
    tether-login) echo "$PID_LOGIN" ;;
    haproxy | haproxy-tls | haproxy-front) echo "$PID_HAPROXY" ;;
    nginx | nginx-tls | nginx-front) echo "$PID_NGINX $(pgrep -P "$PID_NGINX" | tr '\n' ' ')" ;;
    sozu) echo "$PID_SOZU $(pgrep -P "$PID_SOZU" | tr '\n' ' ')" ;; # the main process and its worker
  esac
}
port_of() {
  case $1 in
    direct) echo "$P_UP1" ;; tether) echo "$P_TETHER" ;; haproxy) echo "$P_HAPROXY" ;; nginx) echo "$P_NGINX" ;;
    sozu) echo "$P_SOZU" ;;
    tether-tls) echo "$P_TETHER_TLS" ;; haproxy-tls) echo "$P_HAPROXY_TLS" ;; nginx-tls) echo "$P_NGINX_TLS" ;;
    tether-front) echo "$P_TETHER_FRONT" ;; haproxy-front) echo "$P_HAPROXY_FRONT" ;; nginx-front) echo "$P_NGINX_FRONT" ;;
    tether-login) echo "$P_LOGIN" ;;
  esac
}
cpu_ticks() { # pids...: "utime stime" in clock ticks, summed (fields 14 and 15, counted after the `)`)
  local pid user=0 sys=0 rest
  for pid in "$@"; do
    rest=$(sed 's/.*) //' "/proc/$pid/stat")
    set -- $rest
    user=$((user + ${12}))
    sys=$((sys + ${13}))
  done
  echo "$user $sys"
}
hwm_kb() { # pids...: VmHWM summed, in KiB
  local pid sum=0
  for pid in "$@"; do sum=$((sum + $(awk '/^VmHWM/ {print $2}' "/proc/$pid/status"))); done
  echo "$sum"
}
rss_kb() {
  local pid sum=0
  for pid in "$@"; do sum=$((sum + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status"))); done
  echo "$sum"
}
HZ=$(getconf CLK_TCK)

# Checks the cookie path once per proxy: tether and HAProxy insert amlbcookie for a client without one.
COOKIE_CHECKS=()
has_stage plain && COOKIE_CHECKS+=(tether haproxy)
has_stage https && COOKIE_CHECKS+=(tether-tls haproxy-tls)
[[ -n $PID_SOZU ]] && COOKIE_CHECKS+=(sozu)
for t in "${COOKIE_CHECKS[@]}"; do
  hdrs=$(exec 3<>"/dev/tcp/127.0.0.1/$(port_of $t)"; printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3; cat <&3)
  grep -qi '^set-cookie: amlbcookie=0[12]' <<<"$hdrs" || { echo "$t did not insert amlbcookie:" >&2; echo "$hdrs" >&2; exit 1; }
done

if has_stage post; then
  # The authId of bench/post.lua must name node 01 to tether's auth_id hint: without a cookie, three POSTs
  # in a row must all be answered by 01 (round robin would alternate), which insert mode's Set-Cookie shows.
  body=$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" bench/post.lua)
  for i in 1 2 3; do
    hdrs=$(exec 3<>"/dev/tcp/127.0.0.1/$P_TETHER"
      printf 'POST /am/json/realms/root/authenticate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' "${#body}" "$body" >&3
      cat <&3)
    grep -qi '^set-cookie: amlbcookie=01' <<<"$hdrs" || { echo "tether did not send bench/post.lua's authId to 01:" >&2; echo "$hdrs" >&2; exit 1; }
  done
fi
if ((FRONT_TLS)); then
  # What each TLS listener negotiates with OpenSSL's client (wrk and s_time use the same library).
  echo "== TLS listeners, as \`openssl s_client\` sees them"
  for t in tether-front haproxy-front nginx-front; do
    openssl s_client -connect "127.0.0.1:$(port_of "$t")" </dev/null 2>/dev/null |
      awk -v t="$t" '/^New, |^Peer signature type|^Server Temp Key|^Peer signing digest/ {l = l $0 "; "} END {print "  " t ": " l}'
  done
fi
haproxy_info() { # field of HAProxy's `show info`
  python3 - "$WORK/haproxy.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show info\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
for line in data.decode().splitlines():
    if line.startswith(sys.argv[2] + ":"):
        print(line.split(":", 1)[1].strip())
PY
}
RAW=$WORK/raw.tsv
# One measured run: `measure STAGE LABEL TARGET REP KIND COMMAND...` runs COMMAND on LOAD_CPU (its output in
# a file) and appends one line to RAW: the target's CPU (utime+stime of its processes) over what COMMAND
# completed. KIND says how to read the output: wrk (requests), login (wrk with bench/login.lua: logins; the
# nodes' CPU is measured too), stime (`openssl s_time`: connections, and how many resumed).
measure() {
  local stage=$1 label=$2 target=$3 rep=$4 kind=$5 pids u0 s0 u1 s1 nu0=0 ns0=0 nu1=0 ns1=0 t0 t1 out
  shift 5
  read -r -a pids <<<"$(procs_of "$target")"
  out=$WORK/out-$stage-$label-$rep.txt
  if [[ $kind == login ]]; then read -r nu0 ns0 <<<"$(cpu_ticks $NODE_PIDS)"; fi
  read -r u0 s0 <<<"$(cpu_ticks "${pids[@]}")"
  t0=$EPOCHREALTIME
  taskset -c "$LOAD_CPU" "$@" >"$out" 2>"$out.err" || { echo "  $label: $* failed:" >&2; tail -n 5 "$out.err" >&2; }
  t1=$EPOCHREALTIME
  read -r u1 s1 <<<"$(cpu_ticks "${pids[@]}")"
  if [[ $kind == login ]]; then read -r nu1 ns1 <<<"$(cpu_ticks $NODE_PIDS)"; fi
  python3 - "$stage" "$label" "$rep" "$kind" "$((u1 - u0)) $((s1 - s0)) $((nu1 - nu0 + ns1 - ns0))" "$HZ" \
    "$(hwm_kb "${pids[@]}")" "$out" "$t0" "$t1" >>"$RAW" <<'PY'
import math, re, sys
stage, label, rep, kind, ticks, hz, hwm, path, t0, t1 = sys.argv[1:]
text = open(path).read()
def dur_us(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m[1]) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m[2]]
user, sys_, nodes = map(int, ticks.split())
elapsed = float(t1) - float(t0)
p50 = p99 = math.nan
extra = math.nan
errors = 0
if kind in ("wrk", "login"):
    count = int(re.search(r"(\d+) requests in", text)[1])
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])
    p50 = dur_us(re.search(r"^\s+50%\s+(\S+)", text, re.M)[1])
    p99 = dur_us(re.search(r"^\s+99%\s+(\S+)", text, re.M)[1])
    errors = 1 if re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", text) else 0
    if kind == "login":
        logins, failures = map(int, re.search(r"logins (\d+) failures (\d+)", text).groups())
        rate = rate * logins / max(count, 1)  # wrk's duration, logins instead of steps
        count = logins
        errors = failures
        extra = nodes * 1e6 / int(hz) / max(count, 1)  # the three nodes' CPU per login
else:  # openssl s_time: one character per connection before the summary, "r" when the session resumed
    count = int(re.search(r"(\d+) connections in [\d.]+ real seconds", text)[1])
    rate = count / elapsed
    marks = text.split("connections in")[0]
    extra = 100 * marks.count("r") / max(count, 1)  # % of connections resumed
cpu_us = (user + sys_) * 1e6 / int(hz) / max(count, 1)
kernel = 100 * sys_ / max(user + sys_, 1)
print(f"{stage}\t{label}\t{rep}\t{rate:.1f}\t{p50:.1f}\t{p99:.1f}\t{cpu_us:.3f}\t{hwm}\t{count}\t{errors}\t{kernel:.0f}\t{extra:.2f}")
PY
  tail -n1 "$RAW" | awk -F'\t' '{printf "  repeat %s %-20s %9.0f /s  p50 %7s us  p99 %7s us  cpu %7.2f us/unit (%s%% kernel)%s\n", $3, $2, $4, $5, $6, $7, $11, ($10 != "0" ? "  (errors: " $10 ")" : "")}'
}

# `load STAGE LABEL DURATION`: sets TARGET, KIND and CMD (the load command) for one row of a stage.
URL_POST=/am/json/realms/root/authenticate
load() {
  local stage=$1 label=$2 d=$3 proxy port
  proxy=${label%%-*}
  KIND=wrk
  local wrk=(wrk -t1 -c"$CONNS" -d"$d" --latency)
  case $stage in
    plain | https)
      TARGET=$label
      CMD=("${wrk[@]}" -H 'Cookie: amlbcookie=01' "http://127.0.0.1:$(port_of "$label")/") ;;
    post)
      TARGET=$proxy
      if [[ $label == tether-auth_id ]]; then
        CMD=(env NO_COOKIE=1 "${wrk[@]}" -s bench/post.lua "http://127.0.0.1:$(port_of tether)/")
      else
        CMD=("${wrk[@]}" -s bench/post.lua "http://127.0.0.1:$(port_of "$proxy")/")
      fi ;;
    tls)
      TARGET=$proxy-front
      port=$(port_of "$TARGET")
      case $label in
        *-get) CMD=("${wrk[@]}" -H 'Cookie: amlbcookie=01' "https://127.0.0.1:$port/") ;;
        *-post) CMD=("${wrk[@]}" -s bench/post.lua "https://127.0.0.1:$port/") ;;
      esac ;;
    handshake)
      TARGET=$proxy-front
      port=$(port_of "$TARGET")
      case $label in
        *-close) CMD=("${wrk[@]}" -H 'Cookie: amlbcookie=01' -H 'Connection: close' "https://127.0.0.1:$port/") ;;
        *-new | *-reuse)
          KIND=stime
          CMD=(openssl s_time -connect "127.0.0.1:$port" "-${label##*-}" -time "${d%s}" -www /) ;;
      esac ;;
    logins)
      TARGET=tether-login KIND=login
      CMD=(env TOTP_CODES="$WORK/totp.lua" wrk -t"$LOGIN_CONNS" -c"$LOGIN_CONNS" -d"$d" --latency -s bench/login.lua
        "http://127.0.0.1:$P_LOGIN/") ;;
  esac
}

stage() { # name labels...: a short warm-up of each, then REPEATS interleaved runs of every label
  local name=$1 t rep
  shift
  echo "== $name: warm-up (2 s each)"
  for t in "$@"; do
    load "$name" "$t" 2s
    taskset -c "$LOAD_CPU" "${CMD[@]}" >/dev/null 2>&1 || true
  done
  echo "== $name: $REPEATS interleaved repeats of $DURATION"
  for ((rep = 1; rep <= REPEATS; rep++)); do
    for t in "$@"; do
      load "$name" "$t" "$DURATION"
      if ((rep == 1)); then echo "  $t: $(printf '%q ' "${CMD[@]}")" >>"$WORK/commands.txt"; fi
      if [[ $t == haproxy-close ]]; then
        c0=$(haproxy_info CumSslConns)
        measure "$name" "$t" "$TARGET" "$rep" "$KIND" "${CMD[@]}"
        echo "    (HAProxy: CumSslConns $c0 -> $(haproxy_info CumSslConns), SslFrontendSessionReuse_pct $(haproxy_info SslFrontendSessionReuse_pct): how often wrk's client resumed)"
      else
        measure "$name" "$t" "$TARGET" "$rep" "$KIND" "${CMD[@]}"
      fi
    done
  done
}
: >"$RAW"
: >"$WORK/commands.txt"
LOGIN_CONNS=${LOGIN_CONNS:-8}
read -r -a TARGETS <<<"${TARGETS:-direct tether haproxy nginx}"
read -r -a TLS_TARGETS <<<"${TLS_TARGETS:-tether-tls haproxy-tls nginx-tls}"
has_stage plain && stage plain "${TARGETS[@]}"
has_stage https && stage https "${TLS_TARGETS[@]}"
POST_TARGETS=(tether haproxy nginx)
[[ -n $PID_SOZU ]] && POST_TARGETS+=(sozu)
has_stage post && stage post "${POST_TARGETS[@]}" tether-auth_id
has_stage tls && stage tls tether-get haproxy-get nginx-get tether-post haproxy-post nginx-post
has_stage handshake && stage handshake tether-close haproxy-close nginx-close tether-new haproxy-new nginx-new \
  tether-reuse haproxy-reuse nginx-reuse
has_stage logins && stage logins tether

echo
echo "== commands (first repeat of each row)"
cat "$WORK/commands.txt"
echo
python3 - "$RAW" <<'PY'
import math, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
stages, by = [], {}
for st, t, rep, rate, p50, p99, cpu, hwm, count, err, kernel, extra in rows:
    if st not in stages:
        stages.append(st)
    by.setdefault(st, {}).setdefault(t, []).append(dict(rate=float(rate), p50=float(p50), p99=float(p99),
        cpu=float(cpu), hwm=int(hwm) / 1024, kernel=float(kernel), extra=float(extra), err=int(err)))
def cell(vals, fmt):
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return "–"
    return f"{fmt.format(statistics.median(vals))} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"
what = {"plain": ("req/s", "CPU µs/req"), "https": ("req/s", "CPU µs/req"), "post": ("req/s", "CPU µs/req"),
        "tls": ("req/s", "CPU µs/req"), "handshake": ("conn/s", "CPU µs/conn"), "logins": ("logins/s", "proxy CPU µs/login")}
extra_name = {"handshake": "resumed", "logins": "nodes' CPU µs/login"}
for st in stages:
    rate, cpu = what[st]
    print(f"### stage {st}")
    print()
    head = f"| target | {rate} | p50 µs | p99 µs | {cpu} | of which kernel | peak RSS MiB |"
    if st in extra_name:
        head += f" {extra_name[st]} |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for t, r in by[st].items():
        col = lambda k, f: cell([x[k] for x in r], f)
        name = "direct (upstream's CPU)" if t == "direct" else t
        line = f"| {name} | {col('rate', '{:.0f}')} | {col('p50', '{:.0f}')} | {col('p99', '{:.0f}')} | {col('cpu', '{:.2f}')} | {statistics.median(x['kernel'] for x in r):.0f} % | {col('hwm', '{:.1f}')} |"
        if st == "handshake":
            line += f" {cell([x['extra'] for x in r], '{:.0f}')} % |" if not math.isnan(r[0]["extra"]) else " – |"
        elif st in extra_name:
            line += f" {col('extra', '{:.2f}')} |"
        if any(x["err"] for x in r):
            line += " errors!"
        print(line)
    print()
    med = lambda t, k: statistics.median(x[k] for x in by[st][t])
    for t in by[st]:
        if not t.startswith("tether"):
            continue
        for peer in ("haproxy", "nginx", "sozu"):
            other = peer + t[len("tether"):]
            note = ""
            if other not in by[st] and t == "tether-auth_id":
                other, note = peer, " (the peer with the cookie)"
            if other in by[st]:
                print(f"{t} / {other}{note}: CPU {med(t, 'cpu') / med(other, 'cpu'):.2f}x, rate {med(t, 'rate') / med(other, 'rate'):.2f}x")
    if st == "logins":
        for t in by[st]:
            p, n = med(t, "cpu"), med(t, "extra")
            print(f"{t}: the proxy's share of a login's CPU (proxy + nodes) {100 * p / (p + n):.1f} %, {p / 3:.2f} µs per request (3 per login)")
    print()
cpu = lambda st, t: statistics.median(x["cpu"] for x in by[st][t])
if "plain" in by and "https" in by:
    for t in ["tether", "haproxy", "nginx"]:
        if t in by["plain"] and t + "-tls" in by["https"]:
            print(f"{t}: https backends cost {cpu('https', t + '-tls') - cpu('plain', t):+.2f} us/req of CPU over plain ones")
if "plain" in by and "tls" in by:
    for t in ["tether", "haproxy", "nginx"]:
        if t in by["plain"] and t + "-get" in by["tls"]:
            print(f"{t}: TLS at the proxy costs {cpu('tls', t + '-get') - cpu('plain', t):+.2f} us per keep-alive GET over plain")
PY
# The fixed-rate rows and the idle connections (issue 16), in their own file.
source bench/after_tables.sh

echo
echo "machine: $(nproc) cores, kernel $(uname -r); $(haproxy -v | head -n1 | cut -d' ' -f1-3);" \
  "$(nginx -v 2>&1 | cut -d' ' -f3); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
