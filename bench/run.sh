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
# Not part of .ci/run. Nothing is installed: missing tools are named and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS=${REPEATS:-5}
# TARGETS (default "direct tether haproxy nginx") narrows the wrk stage while iterating; IDLE_CONNS=0 skips
# the idle stage.
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
IDLE_CONNS=${IDLE_CONNS:-10000}
PROXY_CPU=${PROXY_CPU:-1}
UPSTREAM_CPU=${UPSTREAM_CPU:-$PROXY_CPU}
LOAD_CPU=${LOAD_CPU:-0}
PORT_BASE=${PORT_BASE:-18080}

P_UP1=$((PORT_BASE + 1)) P_UP2=$((PORT_BASE + 2))
P_TETHER=$((PORT_BASE + 10)) P_ADMIN=$((PORT_BASE + 11)) P_HAPROXY=$((PORT_BASE + 12)) P_NGINX=$((PORT_BASE + 13))
P_UP1_TLS=$((PORT_BASE + 3)) P_UP2_TLS=$((PORT_BASE + 4))
P_TETHER_TLS=$((PORT_BASE + 20)) P_ADMIN_TLS=$((PORT_BASE + 21)) P_HAPROXY_TLS=$((PORT_BASE + 22)) P_NGINX_TLS=$((PORT_BASE + 23))
# STAGES: "plain" (default: the wrk, fixed-rate and idle stages) and/or "https" (re-encryption to the nodes).
read -r -a STAGES <<<"${STAGES:-plain}"
has_stage() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }
for stage in "${STAGES[@]}"; do
  [[ $stage == plain || $stage == https ]] || { echo "unknown stage $stage (plain, https)" >&2; exit 2; }
done

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
for tool in taskset python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (needed by this script)" >&2; exit 1; }
done

# Ten thousand idle connections need ten thousand descriptors in the client and in each proxy (HAProxy
# asks for two per connection it may hold).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
HAPROXY_MAXCONN=$(((NOFILE - 200) / 2))
((HAPROXY_MAXCONN > IDLE_CONNS + 1000)) && HAPROXY_MAXCONN=$((IDLE_CONNS + 1000))
if ((HAPROXY_MAXCONN < IDLE_CONNS + 100)); then
  echo "note: ulimit -n is $NOFILE; the idle stage needs about $((2 * IDLE_CONNS + 2000))" >&2
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
BIN=target/release
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

echo "== start upstreams, tether, haproxy, nginx (proxy cpu $PROXY_CPU, upstream cpu $UPSTREAM_CPU, wrk cpu $LOAD_CPU)"
UP1_TLS=() UP2_TLS=()
if has_stage https; then
  CERTS=$WORK/certs
  "$BIN/examples/bench_upstream" --make-certs "$CERTS"
  UP1_TLS=("$P_UP1_TLS" "$CERTS/node.pem" "$CERTS/node-key.pem")
  UP2_TLS=("$P_UP2_TLS" "$CERTS/node.pem" "$CERTS/node-key.pem")
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
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $((IDLE_CONNS + 5000));
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections $((IDLE_CONNS + 5000)); }
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

PORTS=("$P_UP1" "$P_UP2" "$P_TETHER" "$P_HAPROXY" "$P_NGINX")
has_stage https && PORTS+=("$P_UP1_TLS" "$P_UP2_TLS" "$P_TETHER_TLS" "$P_HAPROXY_TLS" "$P_NGINX_TLS")
for p in "${PORTS[@]}"; do wait_port "$p"; done
sleep 0.5

# The processes whose CPU counts for a target: the proxy (nginx: master and its workers).
procs_of() {
  case $1 in
    direct) echo "$PID_UP1" ;;
    tether) echo "$PID_TETHER" ;;
    tether-tls) echo "$PID_TETHER_TLS" ;;
    haproxy | haproxy-tls) echo "$PID_HAPROXY" ;;
    nginx | nginx-tls) echo "$PID_NGINX $(pgrep -P "$PID_NGINX" | tr '\n' ' ')" ;;
  esac
}
port_of() {
  case $1 in
    direct) echo "$P_UP1" ;; tether) echo "$P_TETHER" ;; haproxy) echo "$P_HAPROXY" ;; nginx) echo "$P_NGINX" ;;
    tether-tls) echo "$P_TETHER_TLS" ;; haproxy-tls) echo "$P_HAPROXY_TLS" ;; nginx-tls) echo "$P_NGINX_TLS" ;;
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
for t in "${COOKIE_CHECKS[@]}"; do
  hdrs=$(exec 3<>"/dev/tcp/127.0.0.1/$(port_of $t)"; printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3; cat <&3)
  grep -qi '^set-cookie: amlbcookie=0[12]' <<<"$hdrs" || { echo "$t did not insert amlbcookie:" >&2; echo "$hdrs" >&2; exit 1; }
done

RAW=$WORK/raw.tsv
run_wrk() { # target repeat: one wrk run, one line in RAW
  local target=$1 rep=$2 pids u0 s0 u1 s1 out
  read -r -a pids <<<"$(procs_of "$target")"
  read -r u0 s0 <<<"$(cpu_ticks "${pids[@]}")"
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H 'Cookie: amlbcookie=01' \
    "http://127.0.0.1:$(port_of "$target")/")
  read -r u1 s1 <<<"$(cpu_ticks "${pids[@]}")"
  echo "$out" >"$WORK/wrk-$target-$rep.txt"
  python3 - "$target" "$rep" "$((u1 - u0)) $((s1 - s0))" "$HZ" "$(hwm_kb "${pids[@]}")" "$WORK/wrk-$target-$rep.txt" >>"$RAW" <<'PY'
import re, sys
target, rep, ticks, hz, hwm, path = sys.argv[1:]
text = open(path).read()
def dur_us(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m[1]) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m[2]]
reqs = int(re.search(r"(\d+) requests in", text)[1])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])
p50 = dur_us(re.search(r"^\s+50%\s+(\S+)", text, re.M)[1])
p99 = dur_us(re.search(r"^\s+99%\s+(\S+)", text, re.M)[1])
errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", text)
user, sys_ = map(int, ticks.split())
cpu_us = (user + sys_) * 1e6 / int(hz) / max(reqs, 1)
kernel = 100 * sys_ / max(user + sys_, 1)
print(f"{target}\t{rep}\t{rps:.1f}\t{p50:.1f}\t{p99:.1f}\t{cpu_us:.3f}\t{hwm}\t{reqs}\t{1 if errors else 0}\t{kernel:.0f}")
PY
}

stage() { # name targets...: warm-up, then REPEATS interleaved wrk runs of every target
  local name=$1 t rep
  shift
  echo "== $name: warm-up (2 s each)"
  for t in "$@"; do
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -H 'Cookie: amlbcookie=01' "http://127.0.0.1:$(port_of "$t")/" >/dev/null
  done
  echo "== $name: $REPEATS interleaved repeats: wrk -t1 -c$CONNS -d$DURATION --latency -H 'Cookie: amlbcookie=01'"
  for ((rep = 1; rep <= REPEATS; rep++)); do
    for t in "$@"; do
      run_wrk "$t" "$rep"
      tail -n1 "$RAW" | awk -F'\t' '{printf "  repeat %s %-11s %9.0f req/s  p50 %7.0f us  p99 %7.0f us  cpu %6.2f us/req (%s%% kernel)%s\n", $2, $1, $3, $4, $5, $6, $10, ($9 ? "  (errors!)" : "")}'
    done
  done
}
: >"$RAW"
read -r -a TARGETS <<<"${TARGETS:-direct tether haproxy nginx}"
read -r -a TLS_TARGETS <<<"${TLS_TARGETS:-tether-tls haproxy-tls nginx-tls}"
has_stage plain && stage "plain backends" "${TARGETS[@]}"
has_stage https && stage "https backends" "${TLS_TARGETS[@]}"

echo
python3 - "$RAW" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for t, rep, rps, p50, p99, cpu, hwm, reqs, err, kernel in rows:
    by.setdefault(t, []).append(dict(rps=float(rps), p50=float(p50), p99=float(p99), cpu=float(cpu),
                                     hwm=int(hwm) / 1024, kernel=float(kernel)))
def cell(vals, fmt):
    return f"{fmt.format(statistics.median(vals))} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"
print("| target | req/s | p50 µs | p99 µs | CPU µs/req | of which kernel | peak RSS MiB |")
print("|---|---|---|---|---|---|---|")
for t in ["direct", "tether", "haproxy", "nginx", "tether-tls", "haproxy-tls", "nginx-tls"]:
    r = by.get(t, [])
    if not r:
        continue
    col = lambda k, f: cell([x[k] for x in r], f)
    name = "direct (upstream's CPU)" if t == "direct" else t
    print(f"| {name} | {col('rps', '{:.0f}')} | {col('p50', '{:.0f}')} | {col('p99', '{:.0f}')} | {col('cpu', '{:.2f}')} | {statistics.median(x['kernel'] for x in r):.0f} % | {col('hwm', '{:.1f}')} |")
med = lambda t, k: statistics.median(x[k] for x in by[t])
print()
for suffix in ["", "-tls"]:
    for other in ["haproxy" + suffix, "nginx" + suffix]:
        if "tether" + suffix in by and other in by:
            print(f"tether{suffix} / {other}: CPU per request {med('tether' + suffix, 'cpu') / med(other, 'cpu'):.2f}x, "
                  f"req/s {med('tether' + suffix, 'rps') / med(other, 'rps'):.2f}x")
for t in ["tether", "haproxy", "nginx"]:
    if t in by and t + "-tls" in by:
        print(f"{t}: https backends cost {med(t + '-tls', 'cpu') - med(t, 'cpu'):+.2f} us/req of CPU over plain ones")
for t in ["tether", "haproxy", "nginx"]:
    if t in by and "direct" in by:
        print(f"{t} / direct req/s: {med(t, 'rps') / med('direct', 'rps'):.2f}x")
PY
HAPROXY_RPS=$(python3 -c "
import statistics, sys
rps = [float(l.split('\t')[2]) for l in open('$RAW') if l.startswith('haproxy\t')]
print(int(statistics.median(rps)) if rps else 0)")

echo
RATE=$((HAPROXY_RPS / 2))
if ((RATE == 0)); then
  echo "== fixed rate: skipped: HAProxy was not measured"
elif command -v wrk2 >/dev/null || command -v oha >/dev/null; then
  echo "== fixed rate: $RATE req/s (half of HAProxy's median), $DURATION, $CONNS connections"
  for t in tether haproxy nginx; do
    url="http://127.0.0.1:$(port_of "$t")/"
    if command -v wrk2 >/dev/null; then
      taskset -c "$LOAD_CPU" wrk2 -t1 -c"$CONNS" -d"$DURATION" -R"$RATE" --latency -H 'Cookie: amlbcookie=01' \
        "$url" >"$WORK/rate-$t.txt"
      python3 - "$t" "$WORK/rate-$t.txt" <<'PY'
import re, sys
text = open(sys.argv[2]).read()
def us(s):
    m = re.match(r"([\d.]+)(us|ms|s)$", s); return float(m[1]) * {"us": 1, "ms": 1e3, "s": 1e6}[m[2]]
p = {k: us(re.search(rf"^\s+{k}\.0+%\s+(\S+)", text, re.M)[1]) for k in ("50", "99")}
print(f"  {sys.argv[1]:<8} p50 {p['50']:8.0f} us  p99 {p['99']:8.0f} us")
PY
    else
      taskset -c "$LOAD_CPU" oha --no-tui --output-format json -z "$DURATION" -q "$RATE" -c "$CONNS" \
        --latency-correction -H 'Cookie: amlbcookie=01' "$url" >"$WORK/rate-$t.json"
      python3 - "$t" "$WORK/rate-$t.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[2]))["latencyPercentiles"]
print(f"  {sys.argv[1]:<8} p50 {p['p50'] * 1e6:8.0f} us  p99 {p['p99'] * 1e6:8.0f} us")
PY
    fi
  done
else
  echo "== fixed rate: skipped: no wrk2/oha (would run at $RATE req/s, half of HAProxy's median)"
fi

echo
has_stage plain || IDLE_CONNS=0 # the idle stage measures the plain listener only
((IDLE_CONNS > 0)) && echo "== idle connections: $IDLE_CONNS keep-alive connections, each after one request, held open"
for t in tether haproxy; do
  ((IDLE_CONNS > 0)) || break
  pid=$(procs_of "$t")
  n=$IDLE_CONNS
  # HAProxy wants two descriptors per connection it may hold; under a low hard limit it gets fewer.
  [[ $t == haproxy ]] && ((n > HAPROXY_MAXCONN - 100)) && n=$((HAPROXY_MAXCONN - 100))
  before=$(rss_kb "$pid")
  fifo=$WORK/idle-$t.in
  mkfifo "$fifo"
  taskset -c "$LOAD_CPU" "$BIN/examples/idle_conns" "$(port_of "$t")" "$n" 120 <"$fifo" >"$WORK/idle-$t.out" 2>&1 &
  client=$!
  PIDS+=("$client")
  exec 4>"$fifo"
  for ((i = 0; i < 600; i++)); do
    grep -q '^ready' "$WORK/idle-$t.out" && break
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^ready' "$WORK/idle-$t.out"; then
    echo "  $t: the idle client did not get ready: $(cat "$WORK/idle-$t.out")" >&2
    exec 4>&-
    continue
  fi
  opened=$(rss_kb "$pid")
  sleep 5
  held=$(rss_kb "$pid")
  established=$(ss -Htn state established "( sport = :$(port_of "$t") )" | wc -l)
  exec 4>&- # closing its stdin tells the client to close every connection
  wait "$client" 2>/dev/null || true
  sleep 2
  after=$(rss_kb "$pid")
  awk -v t="$t" -v b="$before" -v o="$opened" -v h="$held" -v a="$after" -v n="$established" 'BEGIN {
    printf "  %-8s %5d connections: RSS %6.1f MiB before, %6.1f MiB open, %6.1f MiB after 5 s idle, %6.1f MiB closed: %5.0f bytes per connection\n",
      t, n, b / 1024, o / 1024, h / 1024, a / 1024, (h - b) * 1024 / n }'
done

echo
echo "machine: $(nproc) cores, kernel $(uname -r); $(haproxy -v | head -n1 | cut -d' ' -f1-3);" \
  "$(nginx -v 2>&1 | cut -d' ' -f3); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
