#!/usr/bin/env python3
"""Measures what mTLS costs `meshrig proxy`: plaintext against mTLS, side by side.

Driven by scripts/bench-mtls.sh (which builds meshrig); run that, not this. Topology,
all on 127.0.0.1, one pair of sidecars per variant:

    meshrig load ──▶ client sidecar (--outbound, sa sleep) ──▶ server sidecar
                     (--inbound + --app, sa reviews) ──▶ meshrig echo (1 KiB bodies)

Variants: plaintext (no identity, no PeerAuthentication) and mTLS (static SVIDs from
`meshrig ca issue`, server PeerAuthentication STRICT, client auto mTLS), each with the
default connection pool ("reuse") and with a DestinationRule
`maxRequestsPerConnection: 1` ("new-conn": one upstream connection, so one full TLS
1.3 handshake, per request). Two "nodes": the load generator and the client sidecar
are pinned to CPU 0, the server sidecar and the backend to CPU 1 (all --threads 1).
Each round runs every variant at 1,000 rps open loop and the new-conn variants closed
loop; which of plaintext and mTLS goes first alternates from round to round. Before each open-loop run, 1 s of the same
load, not measured, brings the client sidecar's upstream pool back to steady state
(connections closed while the other variants ran would otherwise be re-opened, with
handshakes, inside the measured run). Per run: the load generator's result, the two
sidecars' CPU time (utime+stime from /proc/PID/stat; per-thread schedstat as a
cross-check), and the server sidecar's /metrics before and after — every request
must be counted under connection_security_policy "mutual_tls" (mTLS) or "none"
(plaintext), and the server must have accepted about one connection per request in
new-conn runs and almost none in reuse runs, or the run stops. So does any error or
non-2xx answer. With perf, after the rounds: syscalls per request (perf stat) and a
profile of both sidecars (perf record) per variant at 1,000 rps.

Writes under --out: runs/*.json (each load result), rounds.json (one row per run),
summary.json and summary.md (medians and ratios; also printed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
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
MODES = {
    # rounds, seconds per open-loop run, per closed-loop run, warm-up, perf diagnostics
    "full": dict(rounds=5, open_s=8, max_s=5, warmup_s=2, diag_s=5),
    "quick": dict(rounds=1, open_s=3, max_s=2, warmup_s=1, diag_s=1),
}
POOLS = ["reuse", "new-conn"]
SECS = ["plaintext", "mtls"]
SHOWN = {"plaintext": "plaintext", "mtls": "mTLS"}
OPEN_RPS = 1000
OPEN_CONNECTIONS = 16
MAX_CONNECTIONS = 8
# Two "nodes": the client (load generator and its sidecar) on CPU 0, the server (its
# sidecar and the echo app) on CPU 1, as a client pod and a server pod would be.
CORE_CLIENT, CORE_SERVER = "0", "1"
HOST, BODY_BYTES = "reviews", 1024
NICE = os.environ.get("MTLS_NICE", "-10")
RT_PRIO = os.environ.get("MTLS_RT", "50")  # SCHED_FIFO during open-loop runs; 0 = off
STEAL_MAX = float(os.environ.get("MTLS_STEAL_MAX", "0.015"))  # vCPU; above: run again once
PROCS: "Procs"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fail(msg: str) -> None:
    raise SystemExit(f"FAILED: {msg}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# === processes ===


class Procs:
    """Every process this script starts, pinned and reniced; all stopped on exit."""

    def __init__(self, pid_file: Path) -> None:
        self.children: list[subprocess.Popen] = []
        self.pid_file = pid_file  # the wrapper's EXIT trap stops these by id
        pid_file.write_text("")

    def start(self, argv: list[str], log_path: Path | None, core: str, **kw) -> subprocess.Popen:
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL
        p = subprocess.Popen(["nice", "-n", NICE, "taskset", "-c", core, *argv],
                             stdout=kw.pop("stdout", out), stderr=kw.pop("stderr", out),
                             stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)
        self.children.append(p)
        with open(self.pid_file, "a") as f:
            f.write(f"{p.pid}\n")
        return p

    def run(self, argv: list[str], core: str) -> subprocess.CompletedProcess:
        p = self.start(argv, None, core, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate()
        self.children.remove(p)
        return subprocess.CompletedProcess(argv, p.returncode, out.decode(), err.decode())

    def stop_all(self) -> None:
        for p in self.children:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 5
        for p in self.children:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def cpu_s(pid: int) -> tuple[float, float, float]:
    """(utime, stime) from /proc/PID/stat and the scheduler's run time summed over its
    threads' schedstat, in seconds."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    sched = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            sched += int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
        except OSError:
            pass
    return int(f[11]) / CLK_TCK, int(f[12]) / CLK_TCK, sched / 1e9


def core_ticks() -> tuple[int, int]:
    """(idle+iowait, steal) ticks summed over CPUs 0 and 1, from /proc/stat."""
    idle = steal = 0
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0] in ("cpu0", "cpu1"):
            idle += int(f[4]) + int(f[5])
            steal += int(f[8])
    return idle, steal


def wait_ready(port: int, what: str, proc: subprocess.Popen) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            fail(f"{what} exited (code {proc.returncode}) before listening; see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    fail(f"{what} did not listen on 127.0.0.1:{port} within 20 s")


def check_get(port: int, what: str) -> None:
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
    fail(f"{what}: GET through 127.0.0.1:{port} failed: {last}")


def scrape(admin: int) -> dict:
    """From the server sidecar's /metrics: requests per connection_security_policy,
    and the inbound connections it accepted."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict = {"requests": {}, "connections": 0.0}
    for line in text.splitlines():
        if line.startswith("istio_requests_total{"):
            m = re.search(r'connection_security_policy="([^"]*)"', line)
            pol = m.group(1) if m else "?"
            out["requests"][pol] = out["requests"].get(pol, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("istio_tcp_connections_opened_total{"):
            out["connections"] += float(line.rsplit(" ", 1)[1])
    return out


# === the run ===


def start_all(args, tmp: Path) -> dict:
    certs = tmp / "certs"
    subprocess.run([args.bin, "ca", "init", "--out", str(certs / "ca")], check=True,
                   stdout=subprocess.DEVNULL)
    for sa in ("sleep", "reviews"):
        subprocess.run([args.bin, "ca", "issue", "--trust-domain", "cluster.local", "--ns", "default",
                        "--sa", sa, "--ca-cert", str(certs / "ca/ca-cert.pem"),
                        "--ca-key", str(certs / "ca/ca-key.pem"), "--out", str(certs / sa)],
                       check=True, stdout=subprocess.DEVNULL)

    def identity(sec: str, sa: str) -> list[str]:
        if sec == "plaintext":
            return []
        d = certs / sa
        return ["--cert", str(d / "cert.pem"), "--key", str(d / "key.pem"), "--bundle", str(d / "bundle.pem")]

    echo = PROCS.start([args.bin, "echo", "--addr", "127.0.0.1:0", "--threads", "1"],
                       tmp / "echo.log", CORE_SERVER, stdout=subprocess.PIPE)
    first = echo.stdout.readline().decode().strip()  # `listening on ADDR`
    if not first.startswith("listening on "):
        fail(f"meshrig echo did not start: {first!r}")
    backend = first.split()[-1]
    log(f"backend: meshrig echo --threads 1 on {backend} (pid {echo.pid}), CPU {CORE_SERVER}")
    variants = {}
    for pool in POOLS:
        for sec in SECS:
            name = f"{pool}/{sec}"
            tag = name.replace("/", "-")
            inbound, admin, outbound = free_port(), free_port(), free_port()
            reg = tmp / f"registry-{tag}.json"
            reg.write_text((HERE / "registry.json.in").read_text().replace("@INBOUND@", f"127.0.0.1:{inbound}"))
            common = [args.bin, "proxy", "--registry", str(reg), "--threads", "1", "--exit-on-stdin-eof"]
            server = PROCS.start(
                common + ["--service", "reviews", "--label", "app=reviews,version=v1",
                          "--service-account", "reviews", "--inbound", f"127.0.0.1:{inbound}",
                          "--app", backend, "--admin", f"127.0.0.1:{admin}"]
                + (["--config", str(HERE / "strict.yaml")] if sec == "mtls" else [])
                + identity(sec, "reviews"),
                tmp / f"server-{tag}.log", CORE_SERVER, stdin=subprocess.PIPE)
            client = PROCS.start(
                common + ["--service", "sleep", "--label", "app=sleep", "--service-account", "sleep",
                          "--outbound", f"127.0.0.1:{outbound}"]
                + (["--config", str(HERE / "new-connection.yaml")] if pool == "new-conn" else [])
                + identity(sec, "sleep"),
                tmp / f"client-{tag}.log", CORE_CLIENT, stdin=subprocess.PIPE)
            variants[name] = dict(pool=pool, sec=sec, port=outbound, admin=admin,
                                  server=server, client=client, echo=echo)
    for name, v in variants.items():
        wait_ready(v["admin"], f"server sidecar {name}", v["server"])
        wait_ready(v["port"], f"client sidecar {name}", v["client"])
        check_get(v["port"], name)
        log(f"{name}: load → 127.0.0.1:{v['port']} (client pid {v['client'].pid}) → server pid "
            f"{v['server'].pid} (admin {v['admin']})")
    return variants


def load(args, port: int, qps: int, seconds: float, out: Path | None, rt: bool = False) -> dict | None:
    argv = ["chrt", "-f", RT_PRIO] if rt else []
    argv += [args.bin, "load", "--qps", str(qps), "-c", str(OPEN_CONNECTIONS if qps else MAX_CONNECTIONS),
             "-t", f"{seconds}s", "--threads", "1", "--quiet", "-H", f"Host: {HOST}"]
    argv += ["--json", str(out)] if out else []
    r = PROCS.run(argv + [f"http://127.0.0.1:{port}/?size={BODY_BYTES}"], CORE_CLIENT)
    if r.returncode != 0:
        log(f"  meshrig load exited {r.returncode}: {r.stderr.strip()[:300]}")
    return json.loads(out.read_text()) if out and out.exists() else None


def set_policy(pids: list[int], policy: str, prio: str, check: bool = True) -> None:
    for pid in pids:
        subprocess.run(["chrt", "-a", policy, "-p", prio, str(pid)], check=check,
                       stdout=subprocess.DEVNULL, stderr=None if check else subprocess.DEVNULL)


def measure(args, v: dict, name: str, level: str, rnd: int, seconds: float, runs: Path) -> dict:
    qps = 0 if level == "max" else int(level)
    pids = [v["client"].pid, v["server"].pid]
    if qps:
        # Not measured: brings the client sidecar's upstream pool back to its steady state
        # (connections closed while the other variants ran are re-opened here, so that a
        # reuse run pays no handshakes and a new-conn run starts at its pace).
        load(args, v["port"], qps, 1, None)
    m0 = scrape(v["admin"])
    (cu0, ck0, cs0), (su0, sk0, ss0) = cpu_s(pids[0]), cpu_s(pids[1])
    e0 = sum(cpu_s(v["echo"].pid)[:2])
    idle0, steal0 = core_ticks()
    w0 = time.monotonic()
    out = runs / f"r{rnd}-{level}-{name.replace('/', '-')}.json"
    rt = RT_PRIO != "0" and qps > 0
    if rt:
        set_policy(pids + [v["echo"].pid], "-f", RT_PRIO)
    try:
        res = load(args, v["port"], qps, seconds, out, rt=rt)
    finally:
        if rt:
            # not checked: on SIGTERM the processes may be gone already
            set_policy(pids + [v["echo"].pid], "-o", "0", check=False)
    wall = time.monotonic() - w0
    (cu1, ck1, cs1), (su1, sk1, ss1) = cpu_s(pids[0]), cpu_s(pids[1])
    e1 = sum(cpu_s(v["echo"].pid)[:2])
    idle1, steal1 = core_ticks()
    time.sleep(0.1)  # let the last responses reach the counters
    m1 = scrape(v["admin"])
    if res is None:
        fail(f"no result from meshrig load against {name} ({level})")
    reqs = res["requests_total"]
    # utime+stime: the kernel scales the exact run time by a tick-sampled user/system
    # split, so the sum is exact (schedstat agrees) but the split is not, on this VM's
    # tickless cores; the perf profile says where the time goes instead.
    c0, c1, s0, s1 = cu0 + ck0, cu1 + ck1, su0 + sk0, su1 + sk1
    cpu = (c1 - c0) + (s1 - s0)
    own = cpu + (e1 - e0) + (res["process"]["cpu_user_ns"] + res["process"]["cpu_system_ns"]) / 1e9
    row = dict(
        round=rnd, level=level, variant=name, pool=v["pool"], sec=v["sec"],
        rps_actual=round(res["rps_actual"], 1), requests=reqs, errors=res["errors_total"],
        non_2xx=res["responses_total"] - res["success_total"],
        p50_us=res["latency_us"]["p50"], p99_us=res["latency_us"]["p99"],
        p999_us=res["latency_us"]["p999"], duration_s=round(res["duration_ns"] / 1e9, 3),
        client_cpu_s=round(c1 - c0, 3), server_cpu_s=round(s1 - s0, 3), cpu_s=round(cpu, 3),
        sched_cpu_s=round((cs1 - cs0) + (ss1 - ss0), 4),
        vcpu=round(cpu / (res["duration_ns"] / 1e9), 4),
        cpu_per_1k=round(cpu * 1000 / max(reqs, 1), 5),  # CPU-s per 1k requests = vCPU at 1k rps
        sched_cpu_per_1k=round(((cs1 - cs0) + (ss1 - ss0)) * 1000 / max(reqs, 1), 5),
        client_us_per_req=round((c1 - c0) * 1e6 / max(reqs, 1), 1),
        server_us_per_req=round((s1 - s0) * 1e6 / max(reqs, 1), 1),
        us_per_req=round(cpu * 1e6 / max(reqs, 1), 1),
        per_core_s=round(reqs / cpu, 1) if cpu > 0 else None,  # requests per sidecar CPU-second
        policies={k: m1["requests"].get(k, 0) - m0["requests"].get(k, 0)
                  for k in set(m0["requests"]) | set(m1["requests"])},
        server_connections=m1["connections"] - m0["connections"],
        conns_per_req=round((m1["connections"] - m0["connections"]) / max(reqs, 1), 4),
        steal=round((steal1 - steal0) / CLK_TCK / wall, 3),
        # CPU that others took from our two cores: not idle, and not the sidecars, echo or load
        foreign=round(2 - (idle1 - idle0) / CLK_TCK / wall - own / wall, 3),
    )
    log(f"  r{rnd} {level:>4} {name:<18} {row['rps_actual']:>8} rps  p50 {row['p50_us']} µs  "
        f"p99 {row['p99_us']} µs  sidecars {row['us_per_req']} µs/req (client {row['client_us_per_req']}, "
        f"server {row['server_us_per_req']})  conns {row['server_connections']:.0f}  "
        f"steal {row['steal']}  foreign {row['foreign']}")
    verify(row)
    return row


def verify(row: dict) -> None:
    """The run was what it claims to be, and every answer was a 2xx; else stop."""
    name, reqs = f"r{row['round']} {row['level']} {row['variant']}", row["requests"]
    if row["errors"] or row["non_2xx"]:
        fail(f"{name}: {row['errors']} errors and {row['non_2xx']} non-2xx answers (see runs/)")
    want = "mutual_tls" if row["sec"] == "mtls" else "none"
    got = row["policies"]
    others = {k: n for k, n in got.items() if k != want and n}
    if others or not reqs * 0.99 <= got.get(want, 0) <= reqs + 2 * OPEN_CONNECTIONS:
        fail(f"{name}: the server sidecar counted {got} requests by connection_security_policy; "
             f"expected {reqs} under {want!r} and none under any other")
    conns = row["server_connections"]
    if row["pool"] == "new-conn" and conns < 0.95 * reqs:
        fail(f"{name}: {conns:.0f} inbound connections for {reqs} requests; expected one per request")
    if row["pool"] == "reuse" and conns > max(0.01 * reqs, 2 * OPEN_CONNECTIONS):
        fail(f"{name}: {conns:.0f} inbound connections for {reqs} requests; expected reuse")


# === diagnostics (perf) ===

SYSCALLS = ["read", "recvfrom", "write", "writev", "sendto", "epoll_wait", "accept4", "connect", "close"]


def diagnose(args, variants: dict, seconds: float, out: Path) -> dict:
    """At 1,000 rps per variant: syscalls and context switches per request of each
    sidecar (perf stat --per-thread), and a profile of both sidecars (perf record)."""
    if seconds <= 0 or not args.perf:
        return {}
    diag: dict = {}
    events = ["raw_syscalls:sys_enter", "context-switches"] + [f"syscalls:sys_enter_{s}" for s in SYSCALLS]
    for name, v in variants.items():
        tag = name.replace("/", "-")
        tids = {}
        for role in ("client", "server"):
            for t in os.listdir(f"/proc/{v[role].pid}/task"):
                tids[int(t)] = role
        pids = ",".join(str(v[r].pid) for r in ("client", "server"))
        d: dict = {"client": {}, "server": {}}
        for what in ("stat", "record"):
            bg = PROCS.start([args.bin, "load", "--qps", str(OPEN_RPS), "-c", str(OPEN_CONNECTIONS),
                              "-t", f"{seconds + 1.5}s", "--threads", "1", "--quiet", "-H", f"Host: {HOST}",
                              f"http://127.0.0.1:{v['port']}/?size={BODY_BYTES}"], None, CORE_CLIENT)
            time.sleep(0.7)
            if what == "stat":
                f = out / f"perf-stat-{tag}.csv"
                PROCS.run([args.perf, "stat", "--per-thread", "-x", ",", "-o", str(f), "-e", ",".join(events),
                           "-p", pids, "--", "sleep", str(seconds)], CORE_SERVER)
                for line in f.read_text().splitlines():
                    c = line.split(",")
                    if line.startswith("#") or len(c) < 4 or not c[1].replace(".", "").isdigit():
                        continue
                    role = tids.get(int(c[0].rsplit("-", 1)[1]))
                    if role:
                        ev = c[3].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "syscalls")
                        d[role][ev] = d[role].get(ev, 0) + float(c[1]) / (OPEN_RPS * seconds)
            else:
                data = out / f"perf-{tag}.data"
                PROCS.run([args.perf, "record", "-F", "1999", "-o", str(data), "-p", pids,
                           "--", "sleep", str(seconds)], CORE_SERVER)
                r = subprocess.run([args.perf, "report", "-i", str(data), "--no-children", "--stdio",
                                    "--sort", "dso,symbol"], capture_output=True, text=True)
                (out / f"perf-{tag}.txt").write_text(r.stdout)
                d["profile"] = categories(r.stdout)
            bg.wait()
            PROCS.children.remove(bg)
        diag[name] = d
        log(f"perf {name}: syscalls per request client {d['client'].get('syscalls', 0):.2f}, "
            f"server {d['server'].get('syscalls', 0):.2f}; profile in {out / f'perf-{tag}.txt'}")
    return diag


KINDS = [  # (pattern on the symbol, kind); the first match wins
    (r"nistz256|p256|ecp_|ecdsa", "ring: P-256 (ECDSA sign/verify)"),
    (r"25519|^fe4?_|^ge_|x25519", "ring: X25519 (key exchange)"),
    (r"sha(256|512)|digest|hmac|hkdf", "ring: SHA-2 (transcript, HKDF)"),
    (r"aes|gcm|ghash", "ring: AES-GCM (records)"),
    (r"^ring", "ring: other"),
    (r"x509_parser|asn1_rs|der_parser|webpki|spiffe|SpiffeId", "certificate parsing and checks"),
    (r"rustls", "rustls (TLS state machine, records)"),
    (r"hyper::", "hyper"), (r"tokio::", "tokio"),
    (r"mesh_core::|mesh_proxy::", "mesh-core/mesh-proxy"),
    (r"__rust|__rdl|malloc|free|_int_|unlink_chunk|tcache|consolidate|realloc|calloc", "malloc/free"),
    (r"mem(cpy|move|set|cmp)", "memcpy/memset"),
]


def categories(report: str) -> dict[str, float]:
    """Percent of samples per kind of work, from `perf report --sort dso,symbol`."""
    out: dict[str, float] = {}
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(4)
        if dso.startswith("[kernel"):
            kind = "kernel (TCP, epoll, scheduler)"
        else:
            s = re.sub(r"^ring_core_\d+_\d+_\d+__", "", sym)
            kind = next((k for p, k in KINDS if re.search(p, s)), "other user space")
        out[kind] = out.get(kind, 0.0) + pct
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# === summary ===


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(rows: list[dict], meta: dict, diag: dict) -> tuple[dict, str]:
    R = max(r["round"] for r in rows)
    keys = ["rps_actual", "p50_us", "p99_us", "vcpu", "cpu_per_1k", "sched_cpu_per_1k", "us_per_req",
            "client_us_per_req", "server_us_per_req", "per_core_s", "conns_per_req"]
    med_of = {}
    for r in rows:
        med_of.setdefault((r["level"], r["variant"]), []).append(r)
    s = {f"{lv} {v}": {k: med(r[k] for r in rs) for k in keys} | {"runs": len(rs)}
         for (lv, v), rs in med_of.items()}
    by = {(r["round"], r["level"], r["variant"]): r for r in rows}
    derived: dict = {}
    for pool, level in (("reuse", str(OPEN_RPS)), ("new-conn", str(OPEN_RPS)), ("new-conn", "max")):
        pairs = [(by[(n, level, f"{pool}/plaintext")], by[(n, level, f"{pool}/mtls")])
                 for n in range(1, R + 1) if (n, level, f"{pool}/mtls") in by]
        derived[f"{level} {pool}"] = dict(
            added_p50_us=med(m["p50_us"] - p["p50_us"] for p, m in pairs),
            added_p99_us=med(m["p99_us"] - p["p99_us"] for p, m in pairs),
            cpu_ratio_of_medians=s[f"{level} {pool}/mtls"]["cpu_per_1k"] / s[f"{level} {pool}/plaintext"]["cpu_per_1k"],
            cpu_ratio_per_round=[round(m["cpu_per_1k"] / p["cpu_per_1k"], 3) for p, m in pairs],
            sched_ratio_of_medians=s[f"{level} {pool}/mtls"]["sched_cpu_per_1k"] / s[f"{level} {pool}/plaintext"]["sched_cpu_per_1k"],
            added_us_per_req=med(m["us_per_req"] - p["us_per_req"] for p, m in pairs),
            rps_ratio=s[f"{level} {pool}/mtls"]["rps_actual"] / s[f"{level} {pool}/plaintext"]["rps_actual"],
        )

    def ms(us):
        return f"{us / 1000:.3f}"

    L = [f"machine: {meta['machine']}; meshrig {meta['meshrig_commit']}; {R} round(s), started "
         f"{meta['started_at']}; load and client sidecar on CPU {CORE_CLIENT}, server sidecar and echo "
         f"on CPU {CORE_SERVER} (sidecars and echo --threads 1, load --threads 1)", ""]

    def open_table(pool: str, title: str) -> None:
        lv = str(OPEN_RPS)
        L.append(f"#### {title}: open loop, {OPEN_RPS} rps, {OPEN_CONNECTIONS} connections, "
                 f"1 KiB responses (median of {R} × {meta['open_s']} s)")
        L.append("")
        L.append("| variant | achieved rps | p50 ms | p99 ms | added p50 ms | added p99 ms | client sidecar "
                 "CPU µs/req | server sidecar CPU µs/req | sidecars vCPU per 1k rps | (schedstat) | "
                 "server conns per req |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        d = derived[f"{lv} {pool}"]
        for sec in SECS:
            x = s[f"{lv} {pool}/{sec}"]
            add = ("—", "—") if sec == "plaintext" else (f"{d['added_p50_us'] / 1000:+.3f}",
                                                         f"{d['added_p99_us'] / 1000:+.3f}")
            L.append(f"| {SHOWN[sec]} | {x['rps_actual']:.0f} | {ms(x['p50_us'])} | {ms(x['p99_us'])} | {add[0]} "
                     f"| {add[1]} | {x['client_us_per_req']:.1f} | {x['server_us_per_req']:.1f} "
                     f"| {x['cpu_per_1k']:.4f} | {x['sched_cpu_per_1k']:.4f} "
                     f"| {x['conns_per_req']:.3f} |")
        per = d["cpu_ratio_per_round"]
        L.append("")
        L.append(f"mTLS / plaintext CPU per 1k rps: **{d['cpu_ratio_of_medians']:.3f}×** "
                 f"({(d['cpu_ratio_of_medians'] - 1) * 100:+.1f}%; schedstat {d['sched_ratio_of_medians']:.3f}×); "
                 f"per round {min(per):.3f}–{max(per):.3f}×, under 1.10× in {sum(x < 1.10 for x in per)}/{len(per)} "
                 f"rounds; {d['added_us_per_req']:+.1f} µs of sidecar CPU per request (median of per-round differences).")
        L.append("")

    open_table("reuse", "With connection reuse (default pool)")
    L.append(f"#### New connection per request (maxRequestsPerConnection: 1): closed loop, "
             f"{MAX_CONNECTIONS} connections (median of {R} × {meta['max_s']} s)")
    L.append("")
    L.append("| variant | requests/s | sidecars vCPU | client / server CPU µs per request | sidecars CPU µs "
             "per request | connections (plaintext) or full handshakes (mTLS) per second per core |")
    L.append("|---|---|---|---|---|---|")
    for sec in SECS:
        x = s[f"max new-conn/{sec}"]
        L.append(f"| {SHOWN[sec]} | {x['rps_actual']:.0f} | {x['vcpu']:.3f} | {x['client_us_per_req']:.1f} / "
                 f"{x['server_us_per_req']:.1f} | {x['us_per_req']:.1f} | {x['per_core_s']:.0f} |")
    d = derived["max new-conn"]
    L.append("")
    L.append(f"mTLS / plaintext: {d['rps_ratio']:.3f}× the requests/s, {d['cpu_ratio_of_medians']:.2f}× the "
             f"CPU per request; the TLS handshake and records add {d['added_us_per_req']:.0f} µs of sidecar CPU "
             f"per connection (both ends; median of per-round differences), i.e. "
             f"{1e6 / d['added_us_per_req']:.0f} handshakes per core-second on TLS alone.")
    L.append("")
    open_table("new-conn", "New connection per request")
    if diag:
        L.append(f"#### Per request at {OPEN_RPS} rps (perf stat, {meta['diag_s']} s each, after the rounds)")
        L.append("")
        cols = ["syscalls", "context-switches"] + SYSCALLS
        L.append("| variant | sidecar | " + " | ".join(cols) + " |")
        L.append("|---|---|" + "---|" * len(cols))
        for name, dd in diag.items():
            for role in ("client", "server"):
                L.append(f"| {name} | {role} | " + " | ".join(f"{dd[role].get(c, 0):.2f}" for c in cols) + " |")
        L.append("")
        L.append(f"#### Where the two sidecars' CPU goes at {OPEN_RPS} rps (perf record, {meta['diag_s']} s; "
                 "share of samples, and µs per request using the CPU medians above)")
        L.append("")
        names = list(diag)
        kinds = sorted({k for dd in diag.values() for k in dd["profile"]},
                       key=lambda k: -max(dd["profile"].get(k, 0) for dd in diag.values()))
        L.append("| kind of work | " + " | ".join(names) + " |")
        L.append("|---|" + "---|" * len(names))
        for k in kinds:
            if max(dd["profile"].get(k, 0) for dd in diag.values()) < 0.5:
                continue
            cells = []
            for n in names:
                pct = diag[n]["profile"].get(k, 0)
                cells.append(f"{pct:.1f}% · {pct * s[f'{OPEN_RPS} {n}']['us_per_req'] / 100:.1f} µs")
            L.append(f"| {k} | " + " | ".join(cells) + " |")
        L.append("")
    noise = lambda k: (med(r[k] for r in rows), max(r[k] for r in rows))
    (fm, fx), (sm, sx) = noise("foreign"), noise("steal")
    L.append(f"Checked in every run: the server sidecar counted each request under "
             f"connection_security_policy \"mutual_tls\" (mTLS) or \"none\" (plaintext), accepted ~1 "
             f"connection per request (new-conn) or almost none (reuse); no errors, no non-2xx. Noise: other "
             f"processes on CPUs 0-1 median {fm:.3f} (max {fx:.3f}) vCPU; steal median {sm:.3f} "
             f"(max {sx:.3f}) vCPU; {meta.get('runs_repeated_for_steal', 0)} open-loop run(s) repeated for "
             f"steal > {STEAL_MAX}. Niceness {NICE}; open-loop runs SCHED_FIFO {RT_PRIO} (0: off).")
    L.append("")
    return dict(meta=meta, medians=s, mtls_vs_plaintext=derived, perf=diag), "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=sorted(MODES))
    ap.add_argument("--bin", required=True)
    ap.add_argument("--perf", default="")
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", default="{}")
    args = ap.parse_args()
    cfg = MODES[args.mode]
    out = Path(args.out).resolve()
    runs, tmp = out / "runs", out / "tmp"
    runs.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(exist_ok=True)
    for old in list(runs.glob("*.json")) + list(out.glob("perf-*")):
        old.unlink()
    global PROCS
    PROCS = Procs(tmp / "pids")

    def on_signal(signum, _frame):
        PROCS.stop_all()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    meta = json.loads(args.meta) | dict(
        mode=args.mode, started_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **{k: cfg[k] for k in ("open_s", "max_s", "diag_s")}, nice=NICE, rt_priority=RT_PRIO)
    rows: list[dict] = []
    repeated = 0
    try:
        variants = start_all(args, tmp)
        log(f"warm-up: {cfg['warmup_s']} s at {OPEN_RPS} rps per variant (and closed loop for new-conn)")
        for name, v in variants.items():
            load(args, v["port"], OPEN_RPS, cfg["warmup_s"], None)
            if v["pool"] == "new-conn":
                load(args, v["port"], 0, cfg["warmup_s"], None)
        for rnd in range(1, cfg["rounds"] + 1):
            secs = SECS if rnd % 2 else SECS[::-1]  # who goes first alternates
            plan = [(str(OPEN_RPS), p, sc, cfg["open_s"]) for p in POOLS for sc in secs]
            plan += [("max", "new-conn", sc, cfg["max_s"]) for sc in secs]
            log(f"round {rnd}/{cfg['rounds']}")
            for level, pool, sec, seconds in plan:
                name = f"{pool}/{sec}"
                row = measure(args, variants[name], name, level, rnd, seconds, runs)
                if level != "max" and row["steal"] > STEAL_MAX:
                    log(f"  steal {row['steal']} vCPU > {STEAL_MAX}: running it again, once")
                    repeated += 1
                    row = measure(args, variants[name], name, level, rnd, seconds, runs)
                rows.append(row)
            (out / "rounds.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
        diag = diagnose(args, variants, cfg["diag_s"], out)
        for name, v in variants.items():
            for role in ("client", "server"):
                if v[role].poll() is not None:
                    fail(f"the {role} sidecar of {name} died during the run (exit {v[role].returncode})")
    finally:
        PROCS.stop_all()
    meta["runs_repeated_for_steal"] = repeated
    summary, table = summarize(rows, meta, diag)
    (out / "rounds.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(table + "\n")
    print()
    print(table)


if __name__ == "__main__":
    main()
