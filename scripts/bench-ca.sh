#!/usr/bin/env bash
# The CA's signing throughput through its HTTPS API (docs/benchmarks.md, "Certificate
# authority: signing throughput").
#
#   scripts/bench-ca.sh [ROUNDS] [DURATION] [CONCURRENCY]
#   PROFILE=1 scripts/bench-ca.sh ...   # then also: where the inline server's CPU goes
#
# Defaults: 5 rounds of 10s with 16 concurrent clients. Builds the release binary, then
# starts two `meshrig ca serve` on 127.0.0.1:0 — one signing inline on the connection's
# task (the default), one on tokio's blocking pool (`--sign-on blocking`) — and drives
# them alternately, round by round, with `meshrig ca bench`: CONCURRENCY tasks sharing
# one CaClient (keep-alive HTTP/1.1 over TLS 1.3, one connection per task), each sending
# the same CSR again as soon as the last answer came, after a 1 s warm-up. Server and
# client share the machine's cores. Prints each round and then, per mode, the median
# CSRs/s, median p50/p99 latency, and the CPU time per CSR of the server process and
# of the client process (from /proc/PID/stat and getrusage, so Linux only), and the CPU
# the rest of the machine used meanwhile (from /proc/stat: noise, in vCPUs).
#
# With PROFILE=1 (needs perf), one more 10 s run of the inline server under
# `perf record --call-graph dwarf` (8 s) splits its CPU into: the CSR's signature check
# (ring's ECDSA P-256 verify), the rest of CSR parsing (PEM, base64, x509-parser), the
# leaf's signature (ECDSA P-256 sign), the rest of building the leaf (rcgen's DER, PEM),
# the kernel, and everything else in user space (TLS records, HTTP, JSON, tokio, malloc);
# µs per CSR = share × the server CPU per CSR of that run.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:-5}"
DURATION="${2:-10s}"
CONCURRENCY="${3:-16}"
case "$ROUNDS" in -h | --help)
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
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
# CPU seconds the whole machine has used so far (everything but idle and iowait).
machine_cpu_s() { awk -v t="$TICKS" '/^cpu / { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / t }' /proc/stat; }

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
echo "mode round csrs_per_s p50_ms p99_ms errors server_cpu_us_per_csr client_cpu_us_per_csr other_vcpu"
for round in $(seq "$ROUNDS"); do
    for mode in inline blocking; do
        before="$(cpu_s "${PID[$mode]}")"
        machine_before="$(machine_cpu_s)"
        wall_before="$(date +%s.%N)"
        out="$( { /usr/bin/time -f '%U %S' "$BIN" ca bench --ca "${ADDR[$mode]}" \
            --ca-root "$TMP/$mode/root-cert.pem" --token bench --sa bench \
            --concurrency "$CONCURRENCY" --duration "$DURATION" --json; } 2>"$TMP/time")"
        after="$(cpu_s "${PID[$mode]}")"
        machine_after="$(machine_cpu_s)"
        wall_after="$(date +%s.%N)"
        client_cpu="$(tail -1 "$TMP/time" | awk '{ print $1 + $2 }')"
        python3 - "$mode" "$round" "$before" "$after" "$client_cpu" "$out" \
            "$machine_before" "$machine_after" "$wall_before" "$wall_after" <<'EOF'
import json, sys
mode, rnd, before, after, client, out, m0, m1, w0, w1 = sys.argv[1:]
r = json.loads(out)
n = max(r["signed"], 1)
# The server's CPU includes the 1 s warm-up; scale by the counted share of requests.
total = r["signed"] * (1 + 1 / r["duration_s"])
print(mode, rnd, round(r["csrs_per_s"]), r["latency_ms"]["p50"], r["latency_ms"]["p99"],
      r["errors"], round((float(after) - float(before)) * 1e6 / total, 1),
      round(float(client) * 1e6 / total, 1),
      # Everything else the machine ran meanwhile, in vCPUs.
      round((float(m1) - float(m0) - (float(after) - float(before)) - float(client))
            / (float(w1) - float(w0)), 3))
EOF
    done
done | tee "$TMP/rounds"

echo
echo "| signing | CSRs/s (median of $ROUNDS × $DURATION) | p50 latency | p99 latency | server CPU per CSR | client CPU per CSR | other processes (vCPU) |"
echo "|---|---|---|---|---|---|---|"
python3 - "$TMP/rounds" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l[0].isalpha() and not l.startswith("mode")]
for mode in ("inline", "blocking"):
    rs = [r for r in rows if r[0] == mode]
    med = lambda i: statistics.median(float(r[i]) for r in rs)
    print(f"| {mode} | {med(2):,.0f} | {med(3):.2f} ms | {med(4):.2f} ms | {med(6):.0f} µs | {med(7):.0f} µs | {med(8):.2f} |")
EOF

if [[ "${PROFILE:-0}" == 1 ]]; then
    command -v perf >/dev/null || { echo "PROFILE=1 needs perf" >&2; exit 1; }
    mode=inline
    before="$(cpu_s "${PID[$mode]}")"
    "$BIN" ca bench --ca "${ADDR[$mode]}" --ca-root "$TMP/$mode/root-cert.pem" --token bench \
        --sa bench --concurrency "$CONCURRENCY" --duration 10s --json >"$TMP/profile-run" &
    bench_pid=$!
    sleep 2
    perf record -q -F 999 --call-graph dwarf,16384 -p "${PID[$mode]}" -o "$TMP/perf.data" -- sleep 8 2>/dev/null
    wait "$bench_pid"
    after="$(cpu_s "${PID[$mode]}")"
    perf report -i "$TMP/perf.data" --children --sort sym --stdio -g none 2>/dev/null >"$TMP/children"
    perf report -i "$TMP/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null >"$TMP/dsos"
    echo
    echo "Where the inline server's CPU goes ($CONCURRENCY clients, perf record 8 s):"
    echo
    python3 - "$TMP/children" "$TMP/dsos" "$TMP/profile-run" "$before" "$after" <<'EOF'
import json, re, sys
children, dsos, run, before, after = sys.argv[1:]
def share(pattern, path=children):
    best = 0.0
    for line in open(path):
        m = re.match(r"\s*([\d.]+)%\s+(?:[\d.]+%\s+)?(.*)", line)
        if m and re.search(pattern, m.group(2).rstrip()):
            best = max(best, float(m.group(1)))
    return best
verify = share(r"EcdsaVerificationAlgorithm as ring::signature::VerificationAlgorithm>::verify")
parse = share(r"\] mesh_ca::csr::VerifiedCsr::from_pem") - verify
sign = share(r"\] ring::ec::suite_b::ecdsa::signing::EcdsaKeyPair::sign")
build = share(r"\] mesh_ca::authority::Ca::sign$") - sign
kernel = share(r"\[kernel", dsos)
rest = 100 - verify - parse - sign - build - kernel
r = json.loads(open(run).read())
total = r["signed"] * (1 + 1 / r["duration_s"])
cpu_us = (float(after) - float(before)) * 1e6 / total
print(f"run: {r['csrs_per_s']:,.0f} CSRs/s under the profiler; server CPU {cpu_us:.0f} µs per CSR")
print()
print("| part | share of the server's CPU | µs per CSR |")
print("|---|---|---|")
for name, s in [
    ("CSR signature check (ECDSA P-256 verify, ring)", verify),
    ("CSR parse (PEM, base64, x509-parser)", parse),
    ("leaf signature (ECDSA P-256 sign, ring)", sign),
    ("leaf build (rcgen: fields, DER, PEM)", build),
    ("kernel (TCP, epoll, scheduler)", kernel),
    ("the rest in user space (TLS records, HTTP, JSON, tokio, malloc)", rest),
]:
    print(f"| {name} | {s:.1f}% | {s * cpu_us / 100:.0f} |")
EOF
fi
