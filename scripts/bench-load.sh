#!/usr/bin/env bash
# Reproduces the tables in docs/benchmarks.md (load generator section).
#
#   scripts/bench-load.sh [quick|full]
#
# 1. Max throughput: `meshrig load --qps 0 -c 32` vs `wrk -t1 -c32` against the same
#    `meshrig echo`, the server pinned to CPU 0 and the client to CPU 1, alternating
#    runs; medians and the ratio.
# 2. Open-loop accuracy at 10k rps: achieved rate vs target, p99/max send lag.
# 3. Peak RSS of a long 10k-rps run (10 minutes in `full`, 1 minute in `quick`).
#
# Traffic goes only to 127.0.0.1. Needs wrk (installed from Debian if missing),
# taskset (util-linux) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-quick}"
ROUNDS=5
RUN_S=10
SOAK="1m"
if [[ "$MODE" == "full" ]]; then SOAK="10m"; fi

if ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet
BIN=target/release/meshrig
OUT=target/bench
mkdir -p "$OUT"

ECHO_PID=""
cleanup() { [[ -n "$ECHO_PID" ]] && kill "$ECHO_PID" 2>/dev/null || true; }
trap cleanup EXIT

start_echo() {
    taskset -c 0 "$BIN" echo --addr 127.0.0.1:0 --threads 1 >"$OUT/echo.out" 2>"$OUT/echo.err" &
    ECHO_PID=$!
    for _ in $(seq 100); do
        [[ -s "$OUT/echo.out" ]] && break
        sleep 0.05
    done
    ADDR=$(head -1 "$OUT/echo.out" | awk '{print $3}')
    URL="http://$ADDR/"
}

json_field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d'+sys.argv[2]))" "$1" "$2"; }
median() { python3 -c "import statistics,sys; print(round(statistics.median(float(x) for x in sys.argv[1:]),1))" "$@"; }

start_echo
echo "machine: $(nproc) cores, $(uname -srm); echo at $URL pinned to CPU 0, clients pinned to CPU 1"

# --- 1. throughput -----------------------------------------------------------------
wrk_rps=(); mr_rps=()
for i in $(seq "$ROUNDS"); do
    w=$(taskset -c 1 wrk -t1 -c32 -d"${RUN_S}s" "$URL" | awk '/Requests\/sec/ {print $2}')
    wrk_rps+=("$w")
    taskset -c 1 "$BIN" load --qps 0 -c 32 -t "${RUN_S}s" --threads 1 --quiet --json "$OUT/max-$i.json" "$URL"
    m=$(json_field "$OUT/max-$i.json" "['rps_actual']")
    mr_rps+=("$m")
    echo "round $i: wrk $w rps, meshrig $m rps"
done
W=$(median "${wrk_rps[@]}"); M=$(median "${mr_rps[@]}")
RATIO=$(python3 -c "print(round($M/$W,3))")

# --- 2. open-loop accuracy at 10k rps ----------------------------------------------
acc_rows=""
for i in 1 2 3; do
    taskset -c 1 "$BIN" load --qps 10000 -c 32 -t "${RUN_S}s" --threads 1 --quiet --json "$OUT/open-$i.json" "$URL"
    f="$OUT/open-$i.json"
    rate=$(json_field "$f" "['rps_actual']")
    err=$(python3 -c "print(round(100*abs($rate-10000)/10000,3))")
    acc_rows+="| $i | 10000 | $rate | $err% | $(json_field "$f" "['send_lag_us']['p50']") | $(json_field "$f" "['send_lag_us']['p99']") | $(json_field "$f" "['send_lag_us']['max']") | $(json_field "$f" "['latency_us']['p99']") | $(json_field "$f" "['latency_uncorrected_us']['p99']") | $(json_field "$f" "['schedule']['scheduler_cpu_percent']")% |\n"
done

# --- 3. peak RSS of a long run -------------------------------------------------------
taskset -c 1 "$BIN" load --qps 10000 -c 32 -t "$SOAK" --threads 1 --quiet --json "$OUT/soak.json" "$URL"
RSS=$(python3 -c "import json; print(round(json.load(open('$OUT/soak.json'))['process']['max_rss_bytes']/2**20,1))")
SOAK_N=$(json_field "$OUT/soak.json" "['requests_total']")
SOAK_RATE=$(json_field "$OUT/soak.json" "['rps_actual']")
taskset -c 1 "$BIN" load --qps 10000 -c 32 -t 10s --threads 1 --quiet --json "$OUT/short.json" "$URL"
RSS_SHORT=$(python3 -c "import json; print(round(json.load(open('$OUT/short.json'))['process']['max_rss_bytes']/2**20,1))")

cat <<TABLE

### Max throughput, closed loop, 32 connections (median of $ROUNDS × ${RUN_S}s runs)

| client | rps (median) | all runs |
|---|---|---|
| wrk -t1 -c32 | $W | ${wrk_rps[*]} |
| meshrig load --qps 0 -c 32 --threads 1 | $M | ${mr_rps[*]} |
| **ratio meshrig / wrk** | **$RATIO** | goal ≥ 0.9 |

### Open loop at 10,000 rps, 32 connections, ${RUN_S}s

| run | target rps | achieved rps | error | send lag p50 µs | send lag p99 µs | send lag max µs | latency p99 µs (corrected) | latency p99 µs (uncorrected) | scheduler CPU |
|---|---|---|---|---|---|---|---|---|---|
$(printf "%b" "$acc_rows")
### Memory

| run | requests | achieved rps | peak RSS |
|---|---|---|---|
| 10k rps for 10s | $(json_field "$OUT/short.json" "['requests_total']") | $(json_field "$OUT/short.json" "['rps_actual']") | ${RSS_SHORT} MiB |
| 10k rps for $SOAK | $SOAK_N | $SOAK_RATE | ${RSS} MiB |
TABLE
