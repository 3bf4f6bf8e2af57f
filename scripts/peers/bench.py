#!/usr/bin/env python3
"""Measures meshrig's sidecar proxy beside nginx, haproxy and Envoy on loopback.

Driven by scripts/bench-peers.sh (which installs the peers and builds meshrig); run
that, not this. Every proxy is one HTTP/1.1 keep-alive hop in front of the same
`meshrig echo` backend (1 KiB responses); the proxies and the backend are pinned to
CPU 0, the load generator (`meshrig load`) to CPU 1. All targets stay up for the
whole run; each round runs every load level on every target, the targets' order
rotating from round to round, so slow drift on the shared machine hits all of them
alike. Per run it records the load generator's result (latency percentiles, rate,
errors), the proxy's CPU time (utime+stime from /proc/PID/stat, and the scheduler's
ns from /proc/PID/task/*/schedstat as a cross-check), its memory (VmRSS, VmHWM), and
how much CPU other processes took on each core meanwhile (the machine is shared).
After the rounds, with perf: syscalls and context switches per request of each proxy
(`perf stat`) and a sampled profile of meshrig and nginx (`perf record`), at 5k rps.

Writes under --out: runs/*.json (each load generator result), rounds.json and
rounds.csv (one row per run), summary.json and summary.md (the medians and ratios,
also printed). Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PEERS = ["meshrig", "nginx", "haproxy", "envoy"]
PROXIES = list(PEERS)  # plus "meshrig@BASE" with --base-bin
TARGETS = ["direct"] + PROXIES
HOST = "echo"  # the Host header every request carries: meshrig's service name
BODY_BYTES = 1024

MODES = {
    # rounds, seconds per open-loop run, seconds per closed-loop run, warm-up seconds
    # 5 rounds of 8 s rather than 3 of 12: the same time, but a noise burst from a
    # neighbour moves a median of 5 less than a median of 3.
    "full": dict(rounds=5, open_s=8, max_s=6, warmup_s=3, profile_s=8),
    "quick": dict(rounds=1, open_s=3, max_s=3, warmup_s=1, profile_s=2),
}
OPEN_RATES = [1000, 5000]
CONNECTIONS = 16  # open loop and closed loop alike
CORE_SERVERS = "0"
CORE_CLIENT = "1"
# Every process the script starts runs at this niceness (PEERS_NICE; root may go
# below 0), so that on a shared machine neighbours' compilers get less of our cores
# and their wake-ups preempt us less. Equal for all targets; 0 turns it off.
NICE = os.environ.get("PEERS_NICE", "-10")
# PEERS_RT=N (1-99): during the open-loop runs, the target, the backend and the load
# generator run SCHED_FIFO at priority N, so neighbours' processes cannot delay their
# wake-ups and the tail latency is the proxies' own. Not during closed-loop runs (which
# keep both cores busy). 0 turns it off.
RT_PRIO = os.environ.get("PEERS_RT", "50")
# PEERS_STEAL_MAX: an open-loop run during which the hypervisor stole more than this
# many vCPUs on average (/proc/stat steal, both cores) is run once more. Steal is
# outside every target's control and, on this VM, is what the worst tails track.
STEAL_MAX = float(os.environ.get("PEERS_STEAL_MAX", "0.015"))
PROCS: "Procs"  # set in main()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(template: str, out: Path, **values: str) -> Path:
    text = (HERE / template).read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    if "@" in text.replace('"@type"', ""):
        raise SystemExit(f"{template}: a placeholder was left unfilled")
    out.write_text(text)
    return out


# === processes ===


class Procs:
    """Every process this script starts; all are stopped on exit."""

    def __init__(self, pid_file: Path) -> None:
        self.children: list[subprocess.Popen] = []
        # The wrapper's EXIT trap reads this to stop, by id, whatever a killed driver
        # left behind.
        self.pid_file = pid_file
        pid_file.write_text("")

    def start(self, argv: list[str], log_path: Path, core: str, **kw) -> subprocess.Popen:
        f = open(log_path, "wb")
        p = subprocess.Popen(
            ["nice", "-n", NICE, "taskset", "-c", core, *argv],
            stdout=kw.pop("stdout", f),
            stderr=kw.pop("stderr", f),
            stdin=subprocess.DEVNULL,
            **kw,
        )
        self.children.append(p)
        with open(self.pid_file, "a") as pf:
            pf.write(f"{p.pid}\n")
        return p

    def run(self, argv: list[str], core: str) -> subprocess.CompletedProcess:
        """Runs argv to the end (pinned to core), stoppable by stop_all meanwhile."""
        p = self.start(argv, Path(os.devnull), core, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate()
        self.children.remove(p)
        return subprocess.CompletedProcess(argv, p.returncode, out.decode(), err.decode())

    def stop_all(self) -> None:
        for p in self.children:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 5
        for p in self.children:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def descendants(pid: int) -> list[int]:
    """pid and every process below it (nginx: master and worker)."""
    parents: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return sorted(out)


def cpu_s(pids: list[int]) -> tuple[float, float, float]:
    """(utime, stime) in seconds from /proc/PID/stat, and the scheduler's run time in
    seconds summed over the live threads' schedstat, over all pids."""
    utime, stime, sched_ns = 0, 0, 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        utime += int(fields[11])  # field 14
        stime += int(fields[12])  # field 15
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                sched_ns += int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
            except OSError:
                pass
    return utime / CLK_TCK, stime / CLK_TCK, sched_ns / 1e9


def core_ticks() -> dict[str, tuple[int, int, int]]:
    """CPU name → (busy, idle, steal) ticks from /proc/stat, for cpu0 and cpu1."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0] in ("cpu0", "cpu1"):
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, f[1:9])
            out[f[0]] = (user + nice + system + irq + softirq + steal, idle + iowait, steal)
    return out


def mem_mib(pids: list[int]) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB, summed over pids."""
    rss = hwm = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss / 1024, hwm / 1024


def wait_port(port: int, what: str, proc: subprocess.Popen, timeout_s: float = 20) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited (code {proc.returncode}) before listening; see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s}s")


def check_get(port: int, what: str) -> None:
    """One GET through the target: 200 and a 1 KiB body, or stop."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/?size={BODY_BYTES}", headers={"Host": HOST})
    last = None
    for _ in range(50):
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                body = r.read()
                if r.status == 200 and len(body) == BODY_BYTES:
                    return
                last = f"status {r.status}, {len(body)} bytes"
        except Exception as e:  # noqa: BLE001 — retried, then reported
            last = repr(e)
        time.sleep(0.1)
    raise SystemExit(f"{what}: GET / through 127.0.0.1:{port} failed: {last}")


# === the run ===


def start_targets(args, procs: Procs, tmp: Path) -> dict:
    """Starts the backend and every proxy; returns name → {port, pids}."""
    targets: dict[str, dict] = {}
    p = procs.start(
        [args.bin, "echo", "--addr", "127.0.0.1:0", "--threads", "1"],
        tmp / "echo.log",
        CORE_SERVERS,
        stdout=subprocess.PIPE,
    )
    first = p.stdout.readline().decode().strip()  # `listening on ADDR`
    if not first.startswith("listening on "):
        raise SystemExit(f"meshrig echo did not start: {first!r}; see {tmp / 'echo.log'}")
    backend = first.split()[-1]
    bport = int(backend.rsplit(":", 1)[1])
    echo_pids = [p.pid]
    targets["direct"] = dict(port=bport, proc=p)
    log(f"backend: meshrig echo --threads 1 on {backend} (pid {p.pid})")

    # meshrig proxy: one tokio worker thread (--threads 1), registry names the backend.
    port = free_port()
    reg = render("registry.json.in", tmp / "registry.json", BACKEND=backend)
    p = procs.start(
        [args.bin, "proxy", "--registry", str(reg), "--service", "client",
         "--label", "app=client", "--outbound", f"127.0.0.1:{port}", "--threads", "1"],
        tmp / "meshrig-proxy.log", CORE_SERVERS,
    )
    targets["meshrig"] = dict(port=port, proc=p)
    if args.base_bin:  # the same proxy at another commit, for a before/after
        port = free_port()
        p = procs.start(
            [args.base_bin, "proxy", "--registry", str(reg), "--service", "client",
             "--label", "app=client", "--outbound", f"127.0.0.1:{port}", "--threads", "1"],
            tmp / "meshrig-base-proxy.log", CORE_SERVERS,
        )
        targets[args.base_label] = dict(port=port, proc=p)

    port = free_port()
    (tmp / "nginx-tmp").mkdir(exist_ok=True)
    conf = render("nginx.conf.in", tmp / "nginx.conf", DIR=tmp, PORT=port, BACKEND=backend)
    p = procs.start(
        [args.nginx, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-error.log")],
        tmp / "nginx.log", CORE_SERVERS,
    )
    targets["nginx"] = dict(port=port, proc=p)

    port = free_port()
    cfg = render("haproxy.cfg.in", tmp / "haproxy.cfg", PORT=port, BACKEND=backend)
    p = procs.start([args.haproxy, "-db", "-f", str(cfg)], tmp / "haproxy.log", CORE_SERVERS)
    targets["haproxy"] = dict(port=port, proc=p)

    port, admin = free_port(), free_port()
    yaml = render("envoy.yaml.in", tmp / "envoy.yaml", PORT=port, ADMIN_PORT=admin,
                  BACKEND_HOST="127.0.0.1", BACKEND_PORT=bport)
    p = procs.start(
        [args.envoy, "-c", str(yaml), "--concurrency", "1", "--disable-hot-restart",
         "-l", "warning"],
        tmp / "envoy.log", CORE_SERVERS,
    )
    targets["envoy"] = dict(port=port, proc=p)

    for name, t in targets.items():
        wait_port(t["port"], name, t["proc"])
        check_get(t["port"], name)
    time.sleep(0.5)  # nginx forks its worker after binding
    for name, t in targets.items():
        t["pids"] = echo_pids if name == "direct" else descendants(t["proc"].pid)
        t["threads"] = sum(len(os.listdir(f"/proc/{pid}/task")) for pid in t["pids"])
        log(f"{name}: 127.0.0.1:{t['port']}, pids {t['pids']}, {t['threads']} threads")
    targets["direct"]["echo_pids"] = echo_pids
    for t in targets.values():
        t["echo_pids"] = echo_pids
    return targets


def load(args, port: int, qps: float, seconds: float, out: Path | None,
         rt: bool = False) -> dict | None:
    argv = ["chrt", "-f", RT_PRIO] if rt else []
    argv += [args.bin, "load", "--qps", str(qps),
            "-c", str(CONNECTIONS), "-t", f"{seconds}s", "--threads", "1", "--quiet",
            "-H", f"Host: {HOST}"]
    if out is not None:
        argv += ["--json", str(out)]
    argv.append(f"http://127.0.0.1:{port}/?size={BODY_BYTES}")
    r = PROCS.run(argv, CORE_CLIENT)
    if r.returncode != 0:
        log(f"  meshrig load exited {r.returncode}: {r.stderr.strip()[:300]}")
    if out is None or not out.exists():
        return None
    return json.loads(out.read_text())


def set_policy(pids: list[int], policy: str, priority: str) -> None:
    """Sets the scheduling policy of every thread of pids (`chrt -a`)."""
    for pid in sorted(set(pids)):
        subprocess.run(["chrt", "-a", policy, "-p", priority, str(pid)], check=True,
                       stdout=subprocess.DEVNULL)


def measure(args, targets: dict, name: str, level: str, rnd: int, seconds: float, runs: Path) -> dict:
    t = targets[name]
    qps = 0 if level == "max" else int(level)
    pids = t["pids"]
    u0, k0, s0 = cpu_s(pids)
    eu0, ek0, _ = cpu_s(t["echo_pids"])
    ct0 = core_ticks()
    w0 = time.monotonic()
    out = runs / f"r{rnd}-{level}-{name}.json"
    rt = RT_PRIO != "0" and qps > 0
    if rt:
        set_policy(pids + t["echo_pids"], "-f", RT_PRIO)
    try:
        res = load(args, t["port"], qps, seconds, out, rt=rt)
    finally:
        if rt:
            set_policy(pids + t["echo_pids"], "-o", "0")
    wall = time.monotonic() - w0
    ct1 = core_ticks()
    u1, k1, s1 = cpu_s(pids)
    eu1, ek1, _ = cpu_s(t["echo_pids"])
    rss, hwm = mem_mib(pids)
    if res is None:
        raise SystemExit(f"no result from meshrig load against {name} ({level})")
    dur = res["duration_ns"] / 1e9
    reqs = res["requests_total"]
    user, kernel, sched = u1 - u0, k1 - k0, s1 - s0
    cpu = user + kernel
    backend = eu1 + ek1 - eu0 - ek0
    # Noise indicators: how busy each core was, and how much of that was not ours
    # (core 0: not the proxy or the backend; core 1: not the load generator).
    busy = {c: (ct1[c][0] - ct0[c][0]) / CLK_TCK / wall for c in ct0}
    # Busy as "not idle": idle time is measured precisely (nohz), busy time is sampled
    # at ticks, which this VM's tickless cores take rarely; both are kept.
    not_idle = {c: 1 - (ct1[c][1] - ct0[c][1]) / CLK_TCK / wall for c in ct0}
    steal = {c: (ct1[c][2] - ct0[c][2]) / CLK_TCK / wall for c in ct0}
    loadgen = (res["process"]["cpu_user_ns"] + res["process"]["cpu_system_ns"]) / 1e9
    own0 = backend + (0 if name == "direct" else cpu)
    row = dict(
        round=rnd, level=level, target=name, rps_target=qps or None,
        rps_actual=round(res["rps_actual"], 1), requests=reqs,
        errors=res["errors_total"], non_2xx=res["responses_total"] - res["success_total"],
        p50_us=res["latency_us"]["p50"], p90_us=res["latency_us"]["p90"],
        p99_us=res["latency_us"]["p99"], p999_us=res["latency_us"]["p999"],
        max_us=res["latency_us"]["max"], send_lag_p99_us=res["send_lag_us"]["p99"],
        uncorrected_p50_us=res["latency_uncorrected_us"]["p50"],
        uncorrected_p99_us=res["latency_uncorrected_us"]["p99"],
        duration_s=round(dur, 3), wall_s=round(wall, 3),
        proxy_cpu_s=round(cpu, 3), proxy_user_s=round(user, 3), proxy_sys_s=round(kernel, 3),
        proxy_sched_cpu_s=round(sched, 4),
        backend_cpu_s=round(backend, 3),
        backend_cpu_us_per_req=round(backend * 1e6 / max(reqs, 1), 2),
        core0_busy=round(busy["cpu0"], 3), core1_busy=round(busy["cpu1"], 3),
        core0_not_idle=round(not_idle["cpu0"], 3), core1_not_idle=round(not_idle["cpu1"], 3),
        core0_foreign=round(not_idle["cpu0"] - own0 / wall, 3),
        core1_foreign=round(not_idle["cpu1"] - loadgen / wall, 3),
        steal=round(steal["cpu0"] + steal["cpu1"], 3),
        vcpu=round(cpu / dur, 4), vcpu_sched=round(sched / dur, 4),
        cpu_us_per_req=round(cpu * 1e6 / max(reqs, 1), 2),
        user_us_per_req=round(user * 1e6 / max(reqs, 1), 2),
        sys_us_per_req=round(kernel * 1e6 / max(reqs, 1), 2),
        sched_cpu_us_per_req=round(sched * 1e6 / max(reqs, 1), 2),
        rss_mib=round(rss, 1), hwm_mib=round(hwm, 1),
    )
    if name == "direct":  # no proxy: the proxy columns describe nothing
        for k in ("proxy_cpu_s", "proxy_user_s", "proxy_sys_s", "proxy_sched_cpu_s", "vcpu",
                  "vcpu_sched", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req",
                  "sched_cpu_us_per_req", "rss_mib", "hwm_mib"):
            row[k] = None
    bad = "" if row["errors"] == 0 and row["non_2xx"] == 0 else f"  ERRORS {row['errors']} non-2xx {row['non_2xx']}"
    log(f"  r{rnd} {level:>4} {name:<8} {row['rps_actual']:>9} rps  p50 {row['p50_us']} µs  "
        f"p99 {row['p99_us']} µs  cpu {row['vcpu']} vCPU  {row['cpu_us_per_req']} µs/req  "
        f"rss {row['rss_mib']} MiB  foreign cpu0 {row['core0_foreign']} cpu1 {row['core1_foreign']}{bad}")
    return row


SYSCALLS = ["epoll_wait", "epoll_pwait", "epoll_ctl", "read", "readv", "recvfrom", "recvmsg",
            "write", "writev", "sendto", "sendmsg", "futex", "sched_yield", "accept4", "close"]


def background_load(args, port: int, qps: int, seconds: float) -> subprocess.Popen:
    return PROCS.start(
        [args.bin, "load", "--qps", str(qps), "-c", str(CONNECTIONS), "-t", f"{seconds}s",
         "--threads", "1", "--quiet", "-H", f"Host: {HOST}",
         f"http://127.0.0.1:{port}/?size={BODY_BYTES}"],
        Path(os.devnull), CORE_CLIENT,
    )


def profile(args, targets: dict, seconds: float, out: Path) -> dict:
    """Diagnostics at 5k rps, after the rounds: `perf stat` of syscalls and context
    switches per request for every proxy, and a `perf record` profile (no call graphs)
    of meshrig and nginx, written to out/perf-NAME.txt. Returns name → per-request counts."""
    if seconds <= 0 or not args.perf:
        return {}
    rate = 5000
    counts: dict[str, dict] = {}
    events = ["raw_syscalls:sys_enter", "context-switches", "cpu-migrations", "task-clock"]
    events += [f"syscalls:sys_enter_{n}" for n in SYSCALLS]
    for name in PROXIES:
        t = targets[name]
        lp = background_load(args, t["port"], rate, seconds + 1.5)
        time.sleep(0.7)
        stat_file = out / f"perf-stat-{name}.csv"
        PROCS.run([args.perf, "stat", "-x", ",", "-o", str(stat_file), "-e", ",".join(events),
                   "-p", ",".join(map(str, t["pids"])), "--", "sleep", str(seconds)], CORE_CLIENT)
        lp.wait()
        PROCS.children.remove(lp)
        requests = rate * seconds
        c: dict[str, float] = {}
        for line in stat_file.read_text().splitlines():
            f = line.split(",")
            if line.startswith("#") or len(f) < 3 or not f[0].replace(".", "").isdigit():
                continue
            ev = f[2].replace("syscalls:sys_enter_", "")
            c[ev] = float(f[0]) / requests
        counts[name] = c
        log(f"perf stat {name} at {rate} rps: {c.get('raw_syscalls:sys_enter', 0):.2f} syscalls, "
            f"{c.get('context-switches', 0):.2f} context switches per request")
    for name in ["meshrig", *PROXIES[len(PEERS):], "nginx"]:
        t = targets[name]
        data = out / f"perf-{name}.data"
        lp = background_load(args, t["port"], rate, seconds + 1.5)
        time.sleep(0.7)
        PROCS.run([args.perf, "record", "-F", "1999", "-o", str(data),
                   "-p", ",".join(map(str, t["pids"])), "--", "sleep", str(seconds)], CORE_CLIENT)
        lp.wait()
        PROCS.children.remove(lp)
        with open(out / f"perf-{name}.txt", "w") as f:
            for sort in ("dso", "dso,symbol"):
                f.flush()
                subprocess.run([args.perf, "report", "-i", str(data), "--no-children", "--stdio",
                                "--sort", sort, "--percent-limit", "0.3"],
                               stdout=f, stderr=subprocess.DEVNULL)
        r = subprocess.run([args.perf, "report", "-i", str(data), "--no-children", "--stdio",
                            "--sort", "dso,symbol"], capture_output=True, text=True)
        counts[name]["profile"] = categories(r.stdout)
        log(f"profile of {name} at {rate} rps: {out / f'perf-{name}.txt'}")
    return counts


def categories(report: str) -> dict[str, float]:
    """Percent of samples per kind of work, from `perf report --sort dso,symbol`."""
    import re
    out: dict[str, float] = {}
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(4)
        if dso.startswith("[kernel"):
            c = "kernel (TCP, epoll, scheduler)"
        elif dso.startswith("libc"):
            if re.search(r"malloc|free|_int_|unlink_chunk|tcache|consolidate|realloc|calloc", sym):
                c = "malloc/free"
            elif re.search(r"mem(cpy|move|set|cmp)", sym):
                c = "memcpy/memmove"
            else:
                c = "libc (syscall stubs)"
        elif dso == "[vdso]":
            c = "clock (vdso)"
        elif dso == "meshrig":
            # The first known crate named in the symbol (`<A as B>::f` counts as A's).
            kinds = [("mesh_core::", "mesh-core decisions"), ("mesh_proxy::", "mesh-proxy glue"),
                     ("hyper::", "hyper (HTTP/1 codec, both sides)"), ("tokio::", "tokio runtime"),
                     ("httparse::", "httparse"), ("http::", "http (HeaderMap)"), ("bytes::", "bytes"),
                     ("__rust", "malloc/free"), ("__rdl", "malloc/free"),
                     ("core::", "Rust core/alloc/std"), ("alloc::", "Rust core/alloc/std"),
                     ("std::", "Rust core/alloc/std")]
            hits = [(sym.find(k), name) for k, name in kinds if k in sym]
            c = min(hits)[1] if hits else "meshrig other"
        else:
            c = dso  # nginx, haproxy, envoy: their own code
        out[c] = out.get(c, 0.0) + pct
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# === summary ===


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(rows: list[dict], meta: dict, syscalls: dict | None = None) -> tuple[dict, str]:
    by = {}
    for r in rows:
        by.setdefault((r["level"], r["target"]), []).append(r)
    direct = {(r["round"], r["level"]): r for r in rows if r["target"] == "direct"}
    for r in rows:  # added latency vs direct, same round, same level
        d = direct[(r["round"], r["level"])]
        r["added_p50_us"] = r["p50_us"] - d["p50_us"]
        r["added_p99_us"] = r["p99_us"] - d["p99_us"]
        r["vcpu_per_1k"] = None if r["vcpu"] is None else round(r["vcpu"] / (r["rps_actual"] / 1000), 4)

    s: dict = {}
    for (level, target), rs in by.items():
        s.setdefault(target, {})[level] = {
            k: med(r[k] for r in rs)
            for k in ("rps_actual", "p50_us", "p99_us", "added_p50_us", "added_p99_us", "vcpu",
                      "vcpu_per_1k", "vcpu_sched", "cpu_us_per_req", "sched_cpu_us_per_req",
                      "user_us_per_req", "sys_us_per_req", "backend_cpu_us_per_req",
                      "rss_mib", "hwm_mib", "backend_cpu_s", "errors", "non_2xx")
        }
        s[target][level]["runs"] = len(rs)
    hwm_end = {t: max((r["hwm_mib"] or 0) for r in rows if r["target"] == t) for t in PROXIES}

    def f(x, nd=3):
        return "—" if x is None else f"{x:.{nd}f}"

    def ms(us):
        return "—" if us is None else f"{us / 1000:.3f}"

    n_rounds = max(r["round"] for r in rows)
    lines = []
    lines.append(f"machine: {meta['machine']}; meshrig {meta['meshrig_commit']}; "
                 f"{meta['peers']}; {n_rounds} round(s), started {meta['started_at']}")
    lines.append("")
    for rate in OPEN_RATES:
        lv = str(rate)
        lines.append(f"#### Open loop, {rate} rps, {CONNECTIONS} connections, 1 KiB responses "
                     f"(median of {n_rounds} × {meta['open_s']} s)")
        lines.append("")
        lines.append("| target | achieved rps | p50 ms | p99 ms | p99 range ms | added p50 ms "
                     "| added p99 ms | proxy vCPU | vCPU per 1k rps | errors |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for t in TARGETS:
            x = s[t][lv]
            added = ("—", "—") if t == "direct" else (f"{x['added_p50_us'] / 1000:+.3f}",
                                                      f"{x['added_p99_us'] / 1000:+.3f}")
            p99s = [r["p99_us"] for r in by[(lv, t)]]
            lines.append(f"| {t} | {x['rps_actual']:.0f} | {ms(x['p50_us'])} | {ms(x['p99_us'])} "
                         f"| {ms(min(p99s))}–{ms(max(p99s))} "
                         f"| {added[0]} | {added[1]} | {f(x['vcpu'])} | {f(x['vcpu_per_1k'])} "
                         f"| {x['errors'] + x['non_2xx']:.0f} |")
        lines.append("")
    lines.append(f"#### Max throughput, closed loop, {CONNECTIONS} connections "
                 f"(median of {n_rounds} × {meta['max_s']} s); memory")
    lines.append("")
    lines.append("| target | requests/s | proxy vCPU | proxy CPU µs per request | user / sys µs "
                 "| (schedstat µs/req) | backend CPU µs/req | RSS MiB after 5k rps | peak RSS (VmHWM) MiB |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for t in TARGETS:
        x = s[t]["max"]
        rss = s[t]["5000"]["rss_mib"]
        lines.append(f"| {t} | {x['rps_actual']:.0f} | {f(x['vcpu'])} | {f(x['cpu_us_per_req'], 1)} "
                     f"| {f(x['user_us_per_req'], 1)} / {f(x['sys_us_per_req'], 1)} "
                     f"| {f(x['sched_cpu_us_per_req'], 1)} | {f(x['backend_cpu_us_per_req'], 1)} | {f(rss, 1)} "
                     f"| {f(hwm_end[t], 1) if t != 'direct' else '—'} |")
    lines.append("")

    # meshrig against the best peer on each figure (lower is better unless noted).
    # Latency figures are differences of two small noisy numbers (they can be <= 0), so
    # they are compared as a difference, the others as a ratio. "rounds ahead" counts
    # the rounds in which meshrig beat every peer on that figure in the same round.
    per_round = {(r["round"], r["level"], r["target"]): r for r in rows}
    rounds = sorted({r["round"] for r in rows})
    figures = [
        ("added p50 @1k rps (ms)", "1000", "added_p50_us", 1e-3, min, 3),
        ("added p99 @1k rps (ms)", "1000", "added_p99_us", 1e-3, min, 3),
        ("added p50 @5k rps (ms)", "5000", "added_p50_us", 1e-3, min, 3),
        ("added p99 @5k rps (ms)", "5000", "added_p99_us", 1e-3, min, 3),
        ("proxy vCPU per 1k rps @1k", "1000", "vcpu_per_1k", 1, min, 3),
        ("proxy vCPU per 1k rps @5k", "5000", "vcpu_per_1k", 1, min, 3),
        ("max requests/s (higher is better)", "max", "rps_actual", 1, max, 0),
        ("proxy CPU µs per request at max", "max", "cpu_us_per_req", 1, min, 1),
        ("RSS MiB after 5k rps", "5000", "rss_mib", 1, min, 1),
    ]
    lines.append("#### meshrig against the best peer, figure by figure")
    lines.append("")
    lines.append("| figure | meshrig | best peer | its value | meshrig vs best | ahead? | rounds ahead |")
    lines.append("|---|---|---|---|---|---|---|")
    verdicts = []
    for label, level, key, scale, best_of, nd in figures:
        others = {t: s[t][level][key] * scale for t in PEERS if t != "meshrig"}
        best = best_of(others, key=others.get)
        m, b = s["meshrig"][level][key] * scale, others[best]
        ahead = (m > b) if best_of is max else (m < b)
        if key.startswith("added"):
            vs = f"{m - b:+.3f} ms"
        else:
            vs = "—" if b == 0 else f"{m / b:.2f}×"
        won = 0
        for rnd in rounds:
            mv = per_round[(rnd, level, "meshrig")][key]
            pv = [per_round[(rnd, level, t)][key] for t in PEERS if t != "meshrig"]
            won += all(mv > v for v in pv) if best_of is max else all(mv < v for v in pv)
        verdicts.append(dict(figure=label, meshrig=m, best_peer=best, best_value=b, ahead=ahead,
                             rounds_ahead=won, rounds=len(rounds)))
        lines.append(f"| {label} | {m:.{nd}f} | {best} | {b:.{nd}f} | {vs} | "
                     f"{'yes' if ahead else '**no**'} | {won}/{len(rounds)} |")
    lines.append("")
    if syscalls:
        lines.append(f"#### Per request at 5000 rps (perf stat, {meta.get('profile_s')} s each, after the rounds)")
        lines.append("")
        named = [n for n in SYSCALLS if any(syscalls[t].get(n, 0) >= 0.005 for t in PROXIES if t in syscalls)]
        for t in [t for t in PROXIES if t in syscalls]:
            syscalls[t]["other"] = max(0.0, syscalls[t].get("raw_syscalls:sys_enter", 0) - sum(
                syscalls[t].get(n, 0) for n in SYSCALLS))
        cols = ["raw_syscalls:sys_enter", "context-switches"] + named + ["other"]
        heads = ["syscalls", "context switches"] + cols[2:]
        lines.append("| proxy | " + " | ".join(heads) + " |")
        lines.append("|---" * (len(heads) + 1) + "|")
        for t in PROXIES:
            if t in syscalls:
                lines.append(f"| {t} | " + " | ".join(f"{syscalls[t].get(c, 0):.2f}" for c in cols) + " |")
        lines.append("")
    profiled = [t for t in PROXIES if syscalls and "profile" in syscalls.get(t, {})]
    if profiled:
        lines.append(f"#### Where the proxy's CPU goes at 5000 rps (perf record, {meta.get('profile_s')} s; "
                     "share of samples, and µs per request using the 5k-rps CPU median above)")
        lines.append("")
        lines.append("| proxy | kind of work | share | µs per request |")
        lines.append("|---|---|---|---|")
        for t in profiled:
            per_req = s[t]["5000"]["cpu_us_per_req"]
            for c, pct in syscalls[t]["profile"].items():
                if pct >= 0.5:
                    lines.append(f"| {t} | {c} | {pct:.1f}% | {pct * per_req / 100:.1f} |")
        lines.append("")
    noise = lambda k: (med(r[k] for r in rows), max(r[k] for r in rows))
    (f0m, f0x), (f1m, f1x), (stm, stx) = noise("core0_foreign"), noise("core1_foreign"), noise("steal")
    lines.append(f"Noise: CPU used by other processes during the runs, core 0 median {f0m:.3f} "
                 f"(max {f0x:.3f}) vCPU, core 1 median {f1m:.3f} (max {f1x:.3f}) vCPU; "
                 f"steal median {stm:.3f} (max {stx:.3f}) vCPU; "
                 f"{meta.get('runs_repeated_for_steal', 0)} open-loop run(s) repeated for steal "
                 f"> {meta.get('steal_max')} vCPU. Open-loop runs at SCHED_FIFO priority "
                 f"{meta.get('rt_priority')} (0: off), niceness {meta.get('nice')}.")
    lines.append("")
    summary = dict(meta=meta, medians=s, peak_hwm_mib=hwm_end, meshrig_vs_best=verdicts,
                   syscalls_per_request_5k=syscalls or {})
    return summary, "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=sorted(MODES))
    ap.add_argument("--bin", required=True)
    ap.add_argument("--nginx", required=True)
    ap.add_argument("--haproxy", required=True)
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--perf", default="")
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", default="{}", help="JSON: machine and version strings")
    ap.add_argument("--base-bin", default="", help="another meshrig binary, as one more target")
    ap.add_argument("--base-label", default="meshrig@base")
    args = ap.parse_args()
    if args.base_bin:
        PROXIES.append(args.base_label)
        TARGETS.append(args.base_label)
    cfg = MODES[args.mode]
    out = Path(args.out).resolve()
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for old in runs.glob("*.json"):
        old.unlink()
    tmp = out / "tmp"
    tmp.mkdir(exist_ok=True)

    procs = Procs(tmp / "pids")
    global PROCS
    PROCS = procs
    # SIGTERM/SIGINT from the wrapper's trap: stop the children, then exit.
    def on_signal(signum, _frame):
        procs.stop_all()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    meta = json.loads(args.meta)
    meta.update(mode=args.mode, nice=NICE, rt_priority=RT_PRIO, steal_max=STEAL_MAX, started_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                open_s=cfg["open_s"], max_s=cfg["max_s"], profile_s=cfg["profile_s"],
                connections=CONNECTIONS,
                body_bytes=BODY_BYTES, python=platform.python_version())
    rows: list[dict] = []
    discarded: list[dict] = []
    try:
        targets = start_targets(args, procs, tmp)
        log(f"warm-up: {cfg['warmup_s']} s at 5k rps and {cfg['warmup_s']} s closed loop per target")
        for name in TARGETS:
            load(args, targets[name]["port"], 5000, cfg["warmup_s"], None)
            load(args, targets[name]["port"], 0, cfg["warmup_s"], None)
        levels = [(str(r), cfg["open_s"]) for r in OPEN_RATES] + [("max", cfg["max_s"])]
        for rnd in range(1, cfg["rounds"] + 1):
            order = TARGETS[rnd - 1:] + TARGETS[:rnd - 1]
            log(f"round {rnd}/{cfg['rounds']}: order {' '.join(order)}")
            for level, seconds in levels:
                for name in order:
                    row = measure(args, targets, name, level, rnd, seconds, runs)
                    if level != "max" and row["steal"] > STEAL_MAX:
                        # The hypervisor took our vCPUs away during the run: its tail
                        # latency is the host's. Keep the row (marked) and run it again,
                        # once; the second run counts whatever its steal.
                        log(f"  r{rnd} {level} {name}: steal {row['steal']} vCPU > {STEAL_MAX}; "
                            "running it again")
                        row["discarded"] = True
                        discarded.append(row)
                        row = measure(args, targets, name, level, rnd, seconds, runs)
                    rows.append(row)
            # write as we go, so an interrupted run keeps its rounds
            (out / "rounds.json").write_text(
                json.dumps(dict(meta=meta, rows=rows, discarded=discarded), indent=1))
        meta["threads"] = {name: t["threads"] for name, t in targets.items()}
        syscalls = profile(args, targets, cfg["profile_s"], out)
        for name, t in targets.items():
            if t["proc"].poll() is not None:
                raise SystemExit(f"{name} died during the run (exit {t['proc'].returncode})")
    finally:
        procs.stop_all()

    meta["runs_repeated_for_steal"] = len(discarded)
    summary, table = summarize(rows, meta, syscalls)
    (out / "rounds.json").write_text(json.dumps(dict(meta=meta, rows=rows, discarded=discarded), indent=1))
    with open(out / "rounds.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(table + "\n")
    print()
    print(table)


if __name__ == "__main__":
    main()
