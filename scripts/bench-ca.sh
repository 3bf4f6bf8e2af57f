#!/usr/bin/env bash
# The CA's signing throughput through its HTTPS API (docs/benchmarks.md, "Certificate
# authority: signing throughput").
#
#   scripts/bench-ca.sh [ROUNDS] [DURATION] [CONCURRENCY]
#
# Defaults: 5 rounds of 10s with 16 concurrent clients. Builds the release binary, then
# starts two `meshrig ca serve` on 127.0.0.1:0 — one signing inline on the connection's
# task (the default), one on tokio's blocking pool (`--sign-on blocking`) — and drives
# them alternately, round by round, with `meshrig ca bench`: CONCURRENCY tasks sharing
# one CaClient (keep-alive HTTP/1.1 over TLS 1.3, one connection per task), each sending
# the same CSR again as soon as the last answer came, after a 1 s warm-up. Server and
# client share the machine's cores. Prints each round and then, per mode, the median
# CSRs/s, median p50/p99 latency, and the CPU time per CSR of the server process and
# of the client process (from /proc/PID/stat and getrusage, so Linux only).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:-5}"
DURATION="${2:-10s}"
CONCURRENCY="${3:-16}"
case "$ROUNDS" in -h | --help)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

if [[ ! -x /usr/bin/time ]]; then
    apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
cargo build --release --quiet --bin meshrig
BIN=target/release/meshrig
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

TICKS="$(getconf CLK_TCK)"
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v t="$TICKS" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }

declare -A ADDR PID
for mode in inline blocking; do
    mkfifo "$TMP/in-$mode"
    "$BIN" ca serve --listen 127.0.0.1:0 --state-dir "$TMP/$mode" --token bench=default/bench \
        --ttl 1h --sign-on "$mode" --exit-on-stdin-eof \
        <"$TMP/in-$mode" >"$TMP/out-$mode" 2>"$TMP/err-$mode" &
    PID[$mode]=$!
    PIDS+=("$!")
    exec {fd}>"$TMP/in-$mode" # holds stdin open; closed when the script exits
    for _ in $(seq 100); do
        grep -q '^ready$' "$TMP/out-$mode" 2>/dev/null && break
        sleep 0.1
    done
    ADDR[$mode]="$(sed -n 's/^ca listening on //p' "$TMP/out-$mode")"
    [[ -n "${ADDR[$mode]}" ]] || { cat "$TMP/err-$mode"; exit 1; }
done

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(git rev-parse --short HEAD) rounds=$ROUNDS duration=$DURATION concurrency=$CONCURRENCY cores=$(nproc)"
echo "mode round csrs_per_s p50_ms p99_ms errors server_cpu_us_per_csr client_cpu_us_per_csr"
for round in $(seq "$ROUNDS"); do
    for mode in inline blocking; do
        before="$(cpu_s "${PID[$mode]}")"
        out="$( { /usr/bin/time -f '%U %S' "$BIN" ca bench --ca "${ADDR[$mode]}" \
            --ca-root "$TMP/$mode/root-cert.pem" --token bench --sa bench \
            --concurrency "$CONCURRENCY" --duration "$DURATION" --json; } 2>"$TMP/time")"
        after="$(cpu_s "${PID[$mode]}")"
        client_cpu="$(tail -1 "$TMP/time" | awk '{ print $1 + $2 }')"
        python3 - "$mode" "$round" "$before" "$after" "$client_cpu" "$out" <<'EOF'
import json, sys
mode, rnd, before, after, client, out = sys.argv[1:]
r = json.loads(out)
n = max(r["signed"], 1)
# The server's CPU includes the 1 s warm-up; scale by the counted share of requests.
total = r["signed"] * (1 + 1 / r["duration_s"])
print(mode, rnd, round(r["csrs_per_s"]), r["latency_ms"]["p50"], r["latency_ms"]["p99"],
      r["errors"], round((float(after) - float(before)) * 1e6 / total, 1),
      round(float(client) * 1e6 / total, 1))
EOF
    done
done | tee "$TMP/rounds"

echo
echo "| signing | CSRs/s (median of $ROUNDS × $DURATION) | p50 latency | p99 latency | server CPU per CSR | client CPU per CSR |"
echo "|---|---|---|---|---|---|"
python3 - "$TMP/rounds" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l[0].isalpha() and not l.startswith("mode")]
for mode in ("inline", "blocking"):
    rs = [r for r in rows if r[0] == mode]
    med = lambda i: statistics.median(float(r[i]) for r in rs)
    print(f"| {mode} | {med(2):,.0f} | {med(3):.2f} ms | {med(4):.2f} ms | {med(6):.0f} µs | {med(7):.0f} µs |")
EOF
