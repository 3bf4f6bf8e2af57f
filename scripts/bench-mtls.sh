#!/usr/bin/env bash
# Reproduces the "mTLS cost" tables in docs/benchmarks.md.
#
#   scripts/bench-mtls.sh [full|quick]
#
# What mTLS costs `meshrig proxy`: load → client sidecar (outbound, sa sleep) → server
# sidecar (inbound, sa reviews) → `meshrig echo`, all on 127.0.0.1, plaintext against
# mTLS (static SVIDs from `meshrig ca issue`, PeerAuthentication STRICT), with the
# default connection pool and with one upstream connection per request (a
# DestinationRule with maxRequestsPerConnection: 1, so a full TLS 1.3 handshake per
# request). Two "nodes": the load generator and the client sidecar on CPU 0, the
# server sidecar and the backend on CPU 1 (all --threads 1). Each round runs every variant at 1,000 rps open loop and the
# new-connection ones closed loop, plaintext and mTLS alternating who goes first (each
# open-loop run after 1 s of unmeasured load at its rate, so the client sidecar's pool
# is warm); the tables are medians over the rounds. Every run is checked: the server sidecar's
# /metrics must count its requests under connection_security_policy="mutual_tls"
# (mTLS) or "none" (plaintext), with ~1 inbound connection per request when asked,
# and no answer may be an error or non-2xx — or the script stops with FAILED.
# Details: scripts/mtls/bench.py.
#
# full (default): 5 rounds of 8 s open-loop and 5 s closed-loop runs, then (with perf)
#   syscalls per request and a profile of the sidecars per variant; about 6 minutes
#   plus the build. quick: 1 round of 3 s / 2 s runs, 1 s of perf; about a minute.
#
# Environment: MESHRIG_REV=<commit> measures that commit, built from a clean `git
# archive` export under target/mtls-bench/ (others' edits in the working tree are not
# measured; the first build takes minutes); MESHRIG_BIN=<path> measures a prebuilt
# binary, and MESHRIG_COMMIT=<text> then says what it was built from; else the working
# tree is built (`cargo build --release --bin meshrig`). MTLS_NICE (default -10), MTLS_RT
# (SCHED_FIFO priority of the open-loop runs, default 50, 0 = off) and MTLS_STEAL_MAX
# (vCPU of hypervisor steal above which an open-loop run is repeated once, default
# 0.015) work as PEERS_* do in scripts/bench-peers.sh.
#
# Writes target/mtls-bench/MODE/{runs/,rounds.json,summary.json,summary.md} and prints
# the markdown tables. Every process it starts is stopped on exit, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-full}"
case "$MODE" in full | quick) ;; *)
    echo "usage: scripts/bench-mtls.sh [full|quick]" >&2
    exit 2
    ;;
esac
OUT="target/mtls-bench/$MODE"
mkdir -p "$OUT/tmp"

DRIVER_PID=""
cleanup() {
    if [[ -n "$DRIVER_PID" ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill -TERM "$DRIVER_PID" 2>/dev/null || true
        wait "$DRIVER_PID" 2>/dev/null || true
    fi
    # Whatever a killed driver left: it lists every process it started, by id.
    local pid
    if [[ -f "$OUT/tmp/pids" ]]; then
        while read -r pid; do
            [[ -n "$pid" && -r /proc/$pid/cmdline ]] || continue
            if tr '\0' ' ' </proc/"$pid"/cmdline | grep -qE "meshrig (echo|proxy|load) |perf (record|stat)"; then
                kill -TERM "$pid" 2>/dev/null || true
            fi
        done <"$OUT/tmp/pids"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in taskset chrt python3; do
    command -v "$tool" >/dev/null || {
        echo "$tool not found (util-linux, python3)" >&2
        exit 1
    }
done
PERF=$(command -v perf || true)
[[ -n "$PERF" ]] || echo "perf not found (apt-get install linux-perf): no syscall counts or profiles"

if [[ -n "${MESHRIG_BIN:-}" ]]; then
    BIN="$MESHRIG_BIN"
elif [[ -n "${MESHRIG_REV:-}" ]]; then
    SHA=$(git rev-parse --verify "$MESHRIG_REV^{commit}")
    BIN="target/mtls-bench/rev-$SHA/meshrig"
    if [[ ! -x "$BIN" ]]; then
        SRC="target/mtls-bench/rev-$SHA/src"
        rm -rf "$SRC"
        mkdir -p "$SRC"
        git archive "$SHA" | tar -x -C "$SRC"
        echo "building meshrig at ${SHA:0:12} in $SRC"
        (cd "$SRC" && CARGO_TARGET_DIR="$(pwd)/../../rev-build" cargo build --release --quiet --bin meshrig)
        cp target/mtls-bench/rev-build/release/meshrig "$BIN"
    fi
    export MESHRIG_COMMIT="${MESHRIG_COMMIT:-${SHA:0:7}}"
else
    cargo build --release --quiet --bin meshrig
    BIN=target/release/meshrig
fi

META=$(
    python3 - <<'PY'
import hashlib, json, os, platform, subprocess
def out(*argv):
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
commit = os.environ.get("MESHRIG_COMMIT") or out("git", "describe", "--always", "--dirty", "--abbrev=7")
if commit.endswith("-dirty"):  # name the uncommitted changes that were measured
    diff = subprocess.run(["git", "diff", "HEAD"], capture_output=True).stdout
    commit += f" (working tree, diff sha256 {hashlib.sha256(diff).hexdigest()[:12]})"
if os.environ.get("MESHRIG_BIN"):
    commit += f" (binary {os.environ['MESHRIG_BIN']})"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(json.dumps(dict(
    machine=f"{os.cpu_count()} vCPUs ({cpu}), {platform.system()} {platform.release()} {platform.machine()}",
    meshrig_commit=commit)))
PY
)

python3 scripts/mtls/bench.py "$MODE" --bin "$BIN" --perf "$PERF" --out "$OUT" --meta "$META" &
DRIVER_PID=$!
wait "$DRIVER_PID"
