#!/usr/bin/env bash
# The simulator at scale (docs/benchmarks.md): how much faster than real time it runs a
# 1,000-instance mesh, how many events a second it processes, and its peak memory.
#
#   scripts/bench-sim.sh [full|quick|DURATION]
#
# full (the default) runs each scenario for its own spec.duration (60 s of virtual
# time); quick passes `--duration 10s`; anything else is passed as `--duration`
# (`scripts/bench-sim.sh 30s`). Scenarios:
#
# - benches/scenarios/mesh-1000.yaml: 1,000 instances, 50k rps at the edge, a frontend
#   fanning out to two backends that call a data tier (200k requests/s inside the mesh);
# - benches/scenarios/mesh-1000-onehop.yaml: the same 1,000 instances and 50k rps, every
#   request one hop client → service (50k requests/s inside the mesh).
#
# Each run is `/usr/bin/time -v target/release/meshrig run FILE --quiet --out DIR`
# (one thread: the simulator is single-threaded); wall time and peak RSS come from
# time(1), events processed from result.json (`.sim.events_processed`). The
# simulator's own numbers (events, latencies, assertions) do not depend on the machine;
# the wall time and RSS do. Needs GNU time (installed from Debian if missing) and jq or
# python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ARG="${1:-full}"
case "$ARG" in
    full) DURATION_FLAG=() ;;
    quick) DURATION_FLAG=(--duration 10s) ;;
    -h | --help)
        sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) DURATION_FLAG=(--duration "$ARG") ;;
esac
SCENARIOS=(benches/scenarios/mesh-1000.yaml benches/scenarios/mesh-1000-onehop.yaml)

if [[ ! -x /usr/bin/time ]]; then
    apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
if command -v jq >/dev/null; then
    json() { jq -r "$2" "$1"; }
else
    # A jq path of plain keys (`.sim.events_processed`) is all this script asks.
    json() {
        python3 -c 'import json,sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].strip(".").split("."): v = v[k]
print(v)' "$1" "$2"
    }
fi
calc() { python3 -c "print($1)"; }

cargo build --release --quiet
BIN=target/release/meshrig
OUT=target/bench-sim
mkdir -p "$OUT"

MACHINE="$(nproc) cores, $(uname -srm), meshrig $("$BIN" --version | awk '{print $2}')"

rows=""
for file in "${SCENARIOS[@]}"; do
    name=$(basename "$file" .yaml)
    dir="$OUT/$name"
    echo "running $name${DURATION_FLAG[*]:+ (${DURATION_FLAG[*]})} ..." >&2
    status=0
    /usr/bin/time -v -o "$dir.time" "$BIN" run "$file" "${DURATION_FLAG[@]}" --quiet --out "$dir" || status=$?
    # 1 is a failed assertion: the run itself is complete and its timing stands.
    if ((status != 0 && status != 1)); then
        echo "meshrig run $file exited $status" >&2
        exit "$status"
    fi
    result="$dir/result.json"
    if ((status == 1)); then
        failed=$(json "$result" '[.assertions[] | select(.passed | not)] | length' 2>/dev/null || echo "some")
        echo "note: $name: $failed assertion(s) failed (timing still reported)" >&2
    fi
    # "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.34"
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0
        for (i = 1; i <= n; i++) s = s * 60 + p[i]
        print s }' "$dir.time")
    rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir.time")
    virtual=$(calc "$(json "$result" .duration_ns) / 1e9")
    events=$(json "$result" .sim.events_processed)
    ratio=$(calc "round($virtual / max($wall, 0.01), 2)")
    events_s=$(calc "f'{round($events / max($wall, 0.01)):,}'")
    rss=$(calc "round($rss_kib / 1024, 1)")
    rows+="| $name | $virtual | $wall | ${ratio}× | $(calc "f'{$events:,}'") | $events_s | $rss |\n"
done

cat <<TABLE

### Simulator at scale: 1,000 instances, 50k rps (\`scripts/bench-sim.sh $ARG\`)

machine: $MACHINE; the simulator uses one core.

| scenario | virtual s | wall s | ×real time | events processed | events/s | peak RSS MiB |
|---|---|---|---|---|---|---|
$(printf "%b" "$rows")
TABLE
