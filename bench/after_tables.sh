# Sourced by bench/run.sh after its tables (not runnable alone): the fixed-rate rows and the idle
# connections of issue 16, with run.sh's variables and functions (procs_of, port_of, cpu_ticks, rss_kb,
# RAW, WORK, BIN, STAGES, ...). Kept apart so that run.sh stays readable.
# shellcheck shell=bash

# Fixed rate (issue 16: "p99 at a fixed rate with oha"): every target at the same offered rate, a fraction
# of HAProxy's median req/s in that stage's table (FIXED_RATE fixes it for all rows), FIXED_REPEATS
# interleaved repeats of DURATION. oha (preferred) with --latency-correction counts latency from when a
# request was due, not sent, so a proxy that falls behind shows it; wrk2 does the same by design.
median_rate() { # stage label: HAProxy's (or any label's) median rate in RAW, 0 when it did not run
  python3 - "$RAW" "$1" "$2" <<'PY'
import statistics, sys
rps = [float(l.split("\t")[3]) for l in open(sys.argv[1]) if l.split("\t")[:2] == sys.argv[2:4]]
print(int(statistics.median(rps)) if rps else 0)
PY
}
RATE_TOOL=""
command -v wrk2 >/dev/null && RATE_TOOL=wrk2
command -v oha >/dev/null && RATE_TOOL=oha
FIXED=$WORK/fixed.tsv
: >"$FIXED"
# The body of bench/post.lua, for oha's -D.
sed -n "s/^wrk.body = '\(.*\)'$/\1/p" bench/post.lua | tr -d '\n' >"$WORK/post-body.json"
# `fixed_rate ROW LABEL TARGET RATE KIND URL REP`: one run at RATE req/s (KIND get or post, URL without
# the path) on LOAD_CPU, the target's CPU measured around it; one line appended to FIXED.
fixed_rate() {
  local row=$1 label=$2 target=$3 rate=$4 kind=$5 url=$6 rep=$7 pids u0 s0 u1 s1 out cmd
  read -r -a pids <<<"$(procs_of "$target")"
  out=$WORK/rate-$row-$label-$rep.txt
  if [[ $RATE_TOOL == oha ]]; then
    cmd=(oha --no-tui --output-format json -z "$DURATION" -q "$rate" -c "$CONNS" --latency-correction
      -H 'Cookie: amlbcookie=01')
    [[ $url == https:* ]] && cmd+=(--insecure)
    if [[ $kind == post ]]; then
      cmd+=(-m POST -D "$WORK/post-body.json" -H 'Content-Type: application/json'
        -H 'Accept-API-Version: resource=2.0, protocol=1.0' "$url$URL_POST")
    else
      cmd+=("$url/")
    fi
  else
    cmd=(wrk2 -t1 -c"$CONNS" -d"$DURATION" -R"$rate" --latency)
    if [[ $kind == post ]]; then cmd+=(-s bench/post.lua "$url/"); else cmd+=(-H 'Cookie: amlbcookie=01' "$url/"); fi
  fi
  ((rep == 1)) && echo "  $row $label: $(printf '%q ' "${cmd[@]}")" >>"$WORK/commands-fixed.txt"
  read -r u0 s0 <<<"$(cpu_ticks "${pids[@]}")"
  taskset -c "$LOAD_CPU" "${cmd[@]}" >"$out" 2>"$out.err" || { echo "  $label: ${cmd[*]} failed:" >&2; tail -n 5 "$out.err" >&2; }
  read -r u1 s1 <<<"$(cpu_ticks "${pids[@]}")"
  python3 - "$RATE_TOOL" "$row" "$label" "$rep" "$rate" "$((u1 - u0 + s1 - s0))" "$HZ" "$out" >>"$FIXED" <<'PY'
import json, math, re, sys
tool, row, label, rep, rate, ticks, hz, path = sys.argv[1:]
text = open(path).read()
errors = 0
if tool == "oha":
    j = json.loads(text)
    p = j["latencyPercentiles"]
    p50, p99, mx = p["p50"] * 1e6, p["p99"] * 1e6, j["summary"]["slowest"] * 1e6
    codes = j.get("statusCodeDistribution", {})
    count = sum(codes.values())
    # Requests still in flight when the duration ends are "aborted due to deadline": not failures.
    failed = {k: v for k, v in j.get("errorDistribution", {}).items() if "deadline" not in k}
    errors = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(failed.values())
    if errors:
        print(f"  {label}: status codes {codes}, errors {failed}", file=sys.stderr)
    got = j["summary"]["requestsPerSec"]
else:
    def us(s):
        m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
        return float(m[1]) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m[2]]
    p50 = us(re.search(r"^\s+50\.0+%\s+(\S+)", text, re.M)[1])
    p99 = us(re.search(r"^\s+99\.0+%\s+(\S+)", text, re.M)[1])
    mx = us(re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)[1])
    count = int(re.search(r"(\d+) requests in", text)[1])
    got = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])
    errors = 1 if re.search(r"Non-2xx or 3xx responses|Socket errors", text) else 0
cpu = int(ticks) * 1e6 / int(hz) / max(count, 1)
print(f"{row}\t{label}\t{rep}\t{rate}\t{got:.1f}\t{p50:.1f}\t{p99:.1f}\t{mx:.1f}\t{cpu:.3f}\t{errors}")
PY
  tail -n1 "$FIXED" | awk -F'\t' '{printf "  repeat %s %-9s %-14s %6d/s asked %8.0f/s done  p50 %7.0f us  p99 %7.0f us  max %8.0f us  cpu %6.2f us/req%s\n", $3, $1, $2, $4, $5, $6, $7, $8, $9, ($10 != "0" ? "  (errors: " $10 ")" : "")}'
}
FIXED_FRACTION=${FIXED_FRACTION:-0.5}
FIXED_REPEATS=${FIXED_REPEATS:-1}
FIXED_ROWS=() # "row kind scheme rate-source-stage rate-source-label target-suffix"
has_stage plain && FIXED_ROWS+=("plain-get get http plain haproxy")
has_stage post && FIXED_ROWS+=("post post http post haproxy")
has_stage tls && FIXED_ROWS+=("tls-get get https tls haproxy-get" "tls-post post https tls haproxy-post")
: >"$WORK/commands-fixed.txt"
echo
if [[ -z $RATE_TOOL ]]; then
  echo "== fixed rate: skipped: neither oha nor wrk2 is installed (cargo install oha --locked)"
elif ((${#FIXED_ROWS[@]} == 0)); then
  echo "== fixed rate: no stage with a fixed-rate row ran (plain, post, tls)"
else
  declare -A ROW_RATE=()
  for spec in "${FIXED_ROWS[@]}"; do
    read -r row kind scheme src_stage src_label <<<"$spec"
    r=${FIXED_RATE:-$(python3 -c "print(int($(median_rate "$src_stage" "$src_label") * $FIXED_FRACTION))")}
    ROW_RATE[$row]=$r
  done
  rate_what="$FIXED_FRACTION of the median req/s of HAProxy in each stage"
  [[ -n ${FIXED_RATE:-} ]] && rate_what="FIXED_RATE=$FIXED_RATE"
  echo "== fixed rate with $RATE_TOOL: $FIXED_REPEATS interleaved repeat(s) of $DURATION, $CONNS connections, $rate_what"
  for ((rep = 1; rep <= FIXED_REPEATS; rep++)); do
    for spec in "${FIXED_ROWS[@]}"; do
      read -r row kind scheme src_stage src_label <<<"$spec"
      ((ROW_RATE[$row] > 0)) || { ((rep == 1)) && echo "  $row: skipped: HAProxy's rate unknown"; continue; }
      peers=(tether haproxy nginx)
      [[ $row == post && -n ${PID_SOZU:-} ]] && peers+=(sozu)
      for p in "${peers[@]}"; do
        t=$p
        [[ $scheme == https ]] && t=$p-front
        fixed_rate "$row" "$p" "$t" "${ROW_RATE[$row]}" "$kind" "$scheme://127.0.0.1:$(port_of "$t")" "$rep"
      done
    done
  done
  echo
  echo "== fixed-rate commands (first repeat)"
  cat "$WORK/commands-fixed.txt"
  echo
  python3 - "$FIXED" <<'PY'
import statistics, sys
rows = {}
for l in open(sys.argv[1]):
    row, label, rep, rate, got, p50, p99, mx, cpu, err = l.rstrip("\n").split("\t")
    rows.setdefault(row, {}).setdefault(label, []).append(dict(rate=int(rate), got=float(got), p50=float(p50),
        p99=float(p99), max=float(mx), cpu=float(cpu), err=int(err)))
def cell(vals, fmt):
    m = statistics.median(vals)
    return fmt.format(m) if len(vals) == 1 else f"{fmt.format(m)} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"
if rows:
    print("### fixed rate (latency counted from when each request was due)")
    print()
    print("| row | target | asked req/s | done req/s | p50 µs | p99 µs | max µs | CPU µs/req |")
    print("|---|---|---|---|---|---|---|---|")
for row, by in rows.items():
    for t, r in by.items():
        c = lambda k, f: cell([x[k] for x in r], f)
        line = f"| {row} | {t} | {r[0]['rate']} | {c('got', '{:.0f}')} | {c('p50', '{:.0f}')} | {c('p99', '{:.0f}')} | {c('max', '{:.0f}')} | {c('cpu', '{:.2f}')} |"
        if any(x["err"] for x in r):
            line += " errors!"
        print(line)
print()
for row, by in rows.items():
    med = lambda t, k: statistics.median(x[k] for x in by[t])
    for peer in ("haproxy", "nginx", "sozu"):
        if "tether" in by and peer in by:
            print(f"{row}: tether / {peer}: p99 {med('tether', 'p99') / med(peer, 'p99'):.2f}x, p50 {med('tether', 'p50') / med(peer, 'p50'):.2f}x, CPU {med('tether', 'cpu') / med(peer, 'cpu'):.2f}x")
PY
fi

# Idle keep-alive connections: `idle LABEL TARGET N [CERT]` opens N connections to TARGET's port (TLS
# trusting CERT when given), one request on each, holds them 5 s and prints the RSS they added per
# connection (the target's processes: nginx master and workers).
idle() {
  local label=$1 target=$2 n=$3 cert=${4:-} pids before opened held after established client fifo i
  read -r -a pids <<<"$(procs_of "$target")"
  # HAProxy wants two descriptors per connection it may hold; under a low hard limit it gets fewer.
  [[ $target == haproxy* ]] && ((n > HAPROXY_MAXCONN - 100)) && n=$((HAPROXY_MAXCONN - 100))
  before=$(rss_kb "${pids[@]}")
  fifo=$WORK/idle-$label.in
  mkfifo "$fifo"
  taskset -c "$LOAD_CPU" "$BIN/examples/idle_conns" "$(port_of "$target")" "$n" 120 ${cert:+"$cert"} <"$fifo" >"$WORK/idle-$label.out" 2>&1 &
  client=$!
  PIDS+=("$client")
  exec 4>"$fifo"
  for ((i = 0; i < 1200; i++)); do
    grep -qs '^ready' "$WORK/idle-$label.out" && break
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^ready' "$WORK/idle-$label.out"; then
    echo "  $label: the idle client did not get ready: $(cat "$WORK/idle-$label.out")" >&2
    exec 4>&-
    return 0
  fi
  opened=$(rss_kb "${pids[@]}")
  sleep 5
  held=$(rss_kb "${pids[@]}")
  established=$(ss -Htn state established "( sport = :$(port_of "$target") )" | wc -l)
  exec 4>&- # closing its stdin tells the client to close every connection
  wait "$client" 2>/dev/null || true
  sleep 2
  after=$(rss_kb "${pids[@]}")
  awk -v t="$label" -v b="$before" -v o="$opened" -v h="$held" -v a="$after" -v n="$established" 'BEGIN {
    printf "  %-14s %5d connections: RSS %6.1f MiB before, %6.1f MiB open, %6.1f MiB after 5 s idle, %6.1f MiB closed: %5.0f bytes per connection\n",
      t, n, b / 1024, o / 1024, h / 1024, a / 1024, (h - b) * 1024 / n }'
}

echo
has_stage plain || IDLE_CONNS=0 # the plain idle rows measure the plain listeners
if ((IDLE_CONNS > 0)); then
  echo "== idle connections: $IDLE_CONNS plain keep-alive connections, each after one request, held open"
  for t in tether haproxy; do idle "$t" "$t" "$IDLE_CONNS"; done
fi
has_stage tls || IDLE_TLS_CONNS=0
if ((IDLE_TLS_CONNS > 0)); then
  echo "== idle TLS connections: $IDLE_TLS_CONNS TLS keep-alive connections to the front listeners (the bench's" \
    "P-256 certificate, rustls client), each after one request, held open"
  for t in tether haproxy nginx; do idle "$t-tls" "$t-front" "$IDLE_TLS_CONNS" "$FRONT/cert.pem"; done
fi
