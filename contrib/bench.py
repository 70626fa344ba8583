#!/usr/bin/env python3
"""Benchmark dugong against other Python HTTP clients and a raw-socket floor, on 127.0.0.1.

    python contrib/bench.py            # full run (make bench): 15-20 minutes on 2 cores
    python contrib/bench.py --quick    # every client and workload, small counts (CI)

This file sets up the benchmark venv ``.venv-bench`` (the clients of
``bench-requirements.txt``; dugong 3.8.2, which has our import name, installed apart
with ``--target``), starts nginx and the upload sink (``bench/bench_servers.py``) and one
worker process per client (``bench/bench_workloads.py``: the workloads, each written
once; ``bench/bench_adapters.py``: one adapter per client). Workload by workload, it has
every row prepared (validated, warmed up), then interleaves the timed repetitions of all
rows, one worker busy at a time, the order rotating each repetition, and reads the
server's CPU time around each. W6 (import time) runs here. ``bench/bench_report.py``
makes the medians, the goals, the tables and the chart.

Timing never fails a run: the exit status is 1 only for a crash or a wrong answer of
this dugong, http.client, the floor or the servers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO, BENCH_DIR = os.path.dirname(HERE), os.path.join(HERE, "bench")
sys.path.insert(0, BENCH_DIR)

import bench_report  # noqa: E402
import bench_servers as servers  # noqa: E402

REQUIREMENTS = os.path.join(HERE, "bench-requirements.txt")
REFERENCE = "dugong==3.8.2"
VENV = os.path.join(REPO, ".venv-bench")
CLIENTS = ["dugong", "dugong-3.8.2", "http.client", "urllib3", "httpx", "httpx-async",
           "aiohttp", "pycurl", "floor"]
CORE = {"dugong", "http.client", "floor"}  # their errors fail the run
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"]
MiB = 1 << 20
FULL = {
    "reps": 5, "warmup": 1,
    # rows whose goals sit close to their bars: more samples steady the medians
    "reps_by": {"W1": 15, "W2": 21, "W3": 15, "W4": 21},
    "slow": 5.0, "slow_reps": 3,  # a row whose runs take over 5 s: 3 repetitions
    "w1_n": 4000, "w2_n": 12000, "w3_size": 256 * MiB, "w4_size": 256 * MiB,
    "w5_conns": 32, "w5_n": 200, "w6_runs": 20, "w7_size": 1024 * MiB,
    "w8_tasks": 32, "w8_n": 200, "w8_conns": 8, "timeout": 600,
}
QUICK = dict(FULL, reps=2, warmup=0, reps_by={}, slow_reps=2, w1_n=300, w2_n=640,
             w3_size=16 * MiB, w4_size=16 * MiB, w5_n=10, w6_runs=8, w7_size=32 * MiB,
             w8_n=10, timeout=120)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run_logged(cmd: list[str], env: dict | None = None) -> bool:
    with open(os.path.join(VENV, "setup.log"), "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, stdout=fh, stderr=fh, env=env, check=False).returncode == 0


def apt_install(*packages: str) -> bool:
    """apt-get install, after apt-get update if the first try fails (as root only)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    return bool(shutil.which("apt-get")) and os.geteuid() == 0 and (run_logged(cmd, env) or (
        run_logged(["apt-get", "update"], env) and run_logged(cmd, env)))


def setup_venv() -> dict[str, str]:
    """Create or update the benchmark venv; what could not be installed, and why.

    A requirement that fails makes only its client's rows unavailable (pycurl needs
    libcurl's headers when no wheel fits: apt-get installs them and pip tries again).
    A stamp in the venv records what was installed."""
    with open(REQUIREMENTS) as fh:
        reqs = [line.split("#")[0].strip() for line in fh if line.split("#")[0].strip()]
    want = hashlib.sha256("\n".join([*reqs, REFERENCE]).encode()).hexdigest()
    stamp = os.path.join(VENV, "bench-stamp.json")
    if os.path.exists(stamp):
        with open(stamp) as fh:
            old = json.load(fh)
        if old["requirements"] == want:
            return old["failed"]
    os.makedirs(VENV, exist_ok=True)
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python) and not run_logged([sys.executable, "-m", "venv", VENV]):
        sys.exit(f"cannot create {VENV}: see setup.log there")
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    log(f"installing {', '.join(reqs)} into {VENV}")
    failed = {}
    for req in reqs if not run_logged([*pip, *reqs]) else ():
        if not run_logged([*pip, req]) and not (req.startswith("pycurl") and apt_install(
                "libcurl4-openssl-dev", "libssl-dev") and run_logged([*pip, req])):
            failed[req.split("=")[0]] = f"pip install {req} failed: see .venv-bench/setup.log"
    target = os.path.join(VENV, "dugong-3.8.2")
    shutil.rmtree(target, ignore_errors=True)
    if not run_logged([*pip, "--no-deps", "--target", target, REFERENCE]):
        failed["dugong-3.8.2"] = f"pip install {REFERENCE} failed: see .venv-bench/setup.log"
    with open(stamp, "w") as fh:
        json.dump({"requirements": want, "failed": failed}, fh)
    return failed


class Worker:
    """One client in a process of its own, driven by JSON lines."""

    def __init__(self, name: str, workdir: str, timeout: float):
        self.timeout, self.buf = timeout, b""
        env = {k: v for k, v in os.environ.items() if k.lower() not in (
            "http_proxy", "https_proxy", "all_proxy", "no_proxy", "pythonpath", "pythonhome")}
        if name.startswith("dugong"):
            where = REPO if name == "dugong" else os.path.join(VENV, "dugong-3.8.2")
            env["BENCH_DUGONG"] = env["PYTHONPATH"] = where
        self.errlog = os.path.join(workdir, f"worker-{name}.log")
        with open(self.errlog, "wb") as err:
            self.proc = subprocess.Popen(
                [os.path.join(VENV, "bin", "python"),
                 os.path.join(BENCH_DIR, "bench_workloads.py"), name],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env, cwd=workdir)

    def call(self, msg: dict | None = None, timeout: float | None = None) -> dict:
        """Send *msg* (if any) and wait for the answer. A worker that does not answer in
        time or is gone is stopped; the answer is then an error."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            if msg is not None:
                self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
                self.proc.stdin.flush()
            while b"\n" not in self.buf:
                if not select.select([self.proc.stdout], [], [], deadline - time.monotonic())[0]:
                    raise OSError("no answer in time")
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise OSError("it exited")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            return json.loads(line)
        except (OSError, ValueError) as exc:
            self.stop()
            with open(self.errlog, errors="replace") as fh:
                return {"error": f"the worker failed ({exc}): {fh.read()[-800:]}"}

    def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.stdin.close()  # the worker's loop ends with its input
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                servers.stop_process(self.proc, signal.SIGKILL)
            self.proc.stdout.close()


class Bench:
    def __init__(self, cfg: dict, workdir: str, ports: dict[str, int], pids: dict[int, int]):
        self.cfg, self.workdir, self.ports, self.pids = cfg, workdir, ports, pids
        self.workers: dict[str, Worker] = {}
        self.versions: dict[str, str] = {}
        self.unavailable: dict[str, str] = {}
        self.offers: dict[str, list] = {}  # client -> [[workload, variant, label], ...]
        self.errors: list[str] = []

    def start_workers(self, clients: list[str], failed: dict[str, str]) -> None:
        for name in clients:
            reason = failed.get(name) or failed.get(name.split("-")[0])
            if reason:
                self.unavailable[name] = reason
            else:
                self.workers[name] = Worker(name, self.workdir, self.cfg["timeout"])
        for name, worker in list(self.workers.items()):
            hello = worker.call(timeout=60)
            if "version" not in hello:
                self.workers.pop(name).stop()
                self.unavailable[name] = reason = hello.get("unavailable") or hello["error"]
                (self.error if name in CORE else log)(f"{name}: {reason}")
            else:
                self.versions[name], self.offers[name] = hello["version"], hello["rows"]

    def error(self, msg: str) -> None:
        self.errors.append(msg)
        log(f"ERROR: {msg}")

    def plan(self, w: str, clients: list[str]) -> list[dict]:
        """The rows of workload *w*: what each client's worker offers, in table order."""
        cfg, nginx, sink = self.cfg, self.ports["nginx"], self.ports["sink"]
        small = {"port": nginx, "path": "/1k", "warmup": cfg["warmup"]}
        p = {"W1": dict(small, n=cfg["w1_n"]), "W2": dict(small, n=cfg["w2_n"]),
             "W3": dict(small, path="/large/large.bin", size=cfg["w3_size"]),
             "W4": dict(small, port=sink, size=cfg["w4_size"]),
             "W5": dict(small, tasks=cfg["w5_conns"], n=cfg["w5_n"]),
             "W7": {"port": sink, "size": cfg["w7_size"]},
             "W8": dict(small, tasks=cfg["w8_tasks"], n=cfg["w8_n"], conns=cfg["w8_conns"],
                        url=f"http://127.0.0.1:{nginx}/1k")}[w]
        return [{"id": f"{w}/{client}/{variant}", "workload": w, "client": client,
                 "variant": variant, "label": label, "samples": [], "status": "ok",
                 "params": dict(small, warmup=0) if variant == "idle" else p}
                for client in clients for ww, variant, label in self.offers.get(client, ())
                if ww == w]

    def call(self, row: dict, msg: dict) -> dict:
        worker = self.workers[row["client"]]
        if worker.proc.returncode is not None:
            return {"error": "its worker failed before"}
        return worker.call(dict(msg, row=row["id"]))

    def failed(self, row: dict, answer: dict) -> None:
        """A row that cannot run: n/a, unavailable, or an error (fatal for the core
        clients; dugong 3.8.2 is used unpatched, so its errors say unavailable)."""
        kind = next((k for k in ("na", "unavailable") if k in answer), "error")
        status = {"na": "n/a", "unavailable": "unavailable"}.get(kind) or (
            "unavailable" if row["client"] == "dugong-3.8.2" else "error")
        row.update(status=status, reason=f"{answer[kind]}\n{answer.get('traceback', '')}")
        (self.error if status == "error" and row["client"] in CORE else log)(
            f"{row['id']}: {status}: {row['reason'].strip()}")

    def run_workload(self, w: str, rows: list[dict]) -> None:
        """Prepare every row of *w*, then interleave their timed repetitions."""
        cfg, t0 = self.cfg, time.monotonic()
        log(f"{w}: {bench_report.title(w, cfg)}")
        for row in rows:
            answer = self.call(row, {"op": "prepare", "workload": w, "variant": row["variant"],
                                     "params": row["params"]})
            if "ok" not in answer:
                self.failed(row, answer)
        active = [r for r in rows if r["status"] == "ok"]
        for rep in range(cfg["reps_by"].get(w, cfg["reps"]) if active else 0):
            for row in active[rep % len(active):] + active[:rep % len(active)]:
                s = row["samples"]
                if row["status"] != "ok" or (
                        len(s) >= cfg["slow_reps"] and min(x["wall"] for x in s) > cfg["slow"]):
                    continue  # a slow row: fewer repetitions keep the full run short
                server = self.pids.get(row["params"]["port"])
                before = servers.process_cpu(server)
                answer = self.call(row, {"op": "run"})
                after = servers.process_cpu(server)
                if "wall" not in answer:
                    self.failed(row, answer)
                elif before is not None and after is not None:
                    s.append(dict(answer, server_cpu=servers.cpu_between(before, after)))
                else:
                    s.append(answer)
        for row in active:
            if row["status"] == "ok":
                self.call(row, {"op": "close"})
        log(f"{w}: {time.monotonic() - t0:.1f} s")

    def run_w6(self, clients: list[str]) -> list[dict]:
        """W6: ``python -c 'import dugong'`` and the others, in fresh processes, with byte
        code cached (in the venv, so that nothing is written into the work tree)."""
        python, runs = os.path.join(VENV, "bin", "python"), []
        env = {k: v for k, v in os.environ.items() if k not in (
            "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONSTARTUP")}
        env["PYTHONPYCACHEPREFIX"] = os.path.join(VENV, "pycache-w6")
        reference = os.path.join(VENV, "dugong-3.8.2")
        for name, code, where in (("dugong", "import dugong", REPO),
                                  ("dugong-3.8.2", "import dugong", reference),
                                  ("http.client", "import http.client", ""),
                                  ("floor", "pass", "")):
            if name not in [*clients, "http.client", "floor"] or name in self.unavailable:
                continue
            row = {"id": f"W6/{name}", "workload": "W6", "client": name, "status": "ok",
                   "variant": "import", "label": f"python -c {code!r}", "samples": []}
            how = {"cwd": REPO if name == "dugong" else self.workdir,
                   "env": dict(env, PYTHONPATH=reference) if name == "dugong-3.8.2" else env}
            check = f"{code}; import sys; print(getattr(sys.modules.get('dugong'), '__file__', 0))"
            found = subprocess.run([python, "-c", check], capture_output=True, text=True,
                                   check=False, **how).stdout
            if not found.startswith(where):
                self.failed(row, {"error": f"imported from {found!r}, not {where!r}"})
            runs.append((row, [python, "-c", code], how))
        for i in range(2 + self.cfg["w6_runs"]):  # two warm-up runs: byte-code, page cache
            for row, cmd, how in runs:
                r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                subprocess.run(cmd, check=True, **how)
                t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                if i >= 2:
                    row["samples"].append({"wall": t1 - t0, "cpu": r1.ru_utime - r0.ru_utime
                                           + r1.ru_stime - r0.ru_stime})
        return [row for row, _, _ in runs]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts, 2 repetitions (CI)")
    ap.add_argument("--reps", type=int, help="repetitions of every row")
    ap.add_argument("--clients", help="a comma-separated subset of " + ",".join(CLIENTS))
    ap.add_argument("--workloads", help="a comma-separated subset of " + ",".join(WORKLOADS))
    ap.add_argument("--json", help="results file (default bench-results[-quick].json)")
    ap.add_argument("--chart", help="PNG chart (default doc/_static/bench.png; quick: "
                                    "bench-results-quick.png)")
    ap.add_argument("--no-chart", action="store_true", help="draw no chart")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--pin", action="store_true",
                    help="servers on the first CPU, client workers on the others")
    ap.add_argument("--no-setup", action="store_true",
                    help="install nothing: use the benchmark venv and nginx as they are")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args, t_start = parse_args(argv), time.monotonic()
    cfg = dict(QUICK if args.quick else FULL)
    if args.reps:
        cfg.update(reps=args.reps, reps_by={})
    asked = set(args.clients.split(",") if args.clients else CLIENTS)
    workloads = args.workloads.upper().split(",") if args.workloads else WORKLOADS
    if asked - set(CLIENTS) or set(workloads) - set(WORKLOADS):
        sys.exit(f"unknown clients or workloads: {args.clients} {args.workloads}")
    clients = [c for c in CLIENTS if c in asked]
    quick = "-quick" if args.quick else ""
    json_path = args.json or os.path.join(REPO, f"bench-results{quick}.json")
    chart_path = args.chart or os.path.join(REPO, "bench-results-quick.png" if quick else
                                            os.path.join("doc", "_static", "bench.png"))
    failed = {} if args.no_setup else setup_venv()
    nginx_bin = servers.find_nginx() or (
        None if args.no_setup else (apt_install("nginx-light"), servers.find_nginx())[1])
    if nginx_bin is None or not os.path.exists(os.path.join(VENV, "bin", "python")):
        sys.exit("the benchmark needs nginx and its venv: run it once without --no-setup")
    setup_done = time.monotonic()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    workdir = tempfile.mkdtemp(prefix="dugong-bench-")
    nginx = sink = bench = None
    results = []
    try:
        os.makedirs(os.path.join(workdir, "www", "large"))
        with open(os.path.join(workdir, "www", "1k"), "wb") as fh:
            fh.write(servers.pattern()[:servers.SMALL_SIZE])
        if "W3" in workloads:
            servers.write_pattern_file(os.path.join(workdir, "www", "large", "large.bin"),
                                       cfg["w3_size"])
        for root, _, files in os.walk(workdir):  # nginx's worker may be another user
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        sink = servers.Sink(os.path.join(VENV, "bin", "python"))
        nginx = servers.Nginx(nginx_bin, workdir)
        log(f"servers: {nginx.version()} on port {nginx.port}, the sink on {sink.port}")
        bench = Bench(cfg, workdir, {"nginx": nginx.port, "sink": sink.port},
                      {nginx.port: nginx.worker, sink.port: sink.proc.pid})
        cpus = sorted(os.sched_getaffinity(0))
        if args.pin and len(cpus) > 1 and all(
                servers.pin_process(pid, {cpus[0]}) for pid in bench.pids.values()):
            # no request then waits for the scheduler to move a server or a client
            os.sched_setaffinity(0, cpus[1:])  # the workers inherit it
            log(f"servers pinned to CPU {cpus[0]}, clients to {cpus[1:]}")
        bench.start_workers(clients, failed)
        for w in workloads:
            rows = bench.run_w6(clients) if w == "W6" else bench.plan(w, clients)
            if w != "W6":
                bench.run_workload(w, rows)
            results += rows
    finally:
        for worker in bench.workers.values() if bench else ():
            worker.stop()
        for server in (nginx, sink):
            if server is not None:
                server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    for row in results:
        row.pop("params", None)
    meta = {"mode": "quick" if args.quick else "full", "date": time.strftime("%Y-%m-%d %H:%M"),
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "server": nginx.version(), "versions": bench.versions,
            "unavailable": bench.unavailable, "config": cfg}
    goals = bench_report.analyse(results)
    text = bench_report.markdown(results, goals, meta, cfg)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)
    with open(json_path, "w") as fh:
        json.dump({"meta": meta, "rows": results, "goals": goals, "errors": bench.errors}, fh,
                  indent=1)
    log(f"results written to {json_path}")
    if not args.no_chart:
        res = subprocess.run([os.path.join(VENV, "bin", "python"), bench_report.__file__,
                              "chart", json_path, chart_path], capture_output=True, text=True,
                             check=False)
        log(f"chart written to {chart_path}" if res.returncode == 0 else
            f"no chart: {(res.stderr.strip().splitlines() or ['matplotlib failed'])[-1]}")
    log(f"done in {time.monotonic() - t_start:.1f} s (set-up {setup_done - t_start:.1f} s)")
    for e in bench.errors:
        log(f"error: {e.splitlines()[0]}")
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
