#!/usr/bin/env python3
"""Benchmark dugong against other Python HTTP clients and a raw-socket floor, on 127.0.0.1.

    python contrib/bench.py            # full run (make bench): 15-20 minutes on 2 cores
    python contrib/bench.py --quick    # every client and workload, small counts (CI)

How it is built, in the order a run goes:

* this file sets up the benchmark venv ``.venv-bench`` (the clients of
  ``bench-requirements.txt``; dugong 3.8.2 installed apart with ``--target``, as it has
  our import name), starts nginx and the upload sink (``bench/bench_servers.py``) and
  one worker process per client, then, workload by workload, prepares every row and
  interleaves the timed repetitions of all rows (the order rotates each repetition, one
  worker busy at a time), reading the server's CPU time around each. W6 (import time)
  runs here;
* ``bench/bench_workloads.py``: the workloads, each written once, and the worker;
* ``bench/bench_adapters.py``: one adapter per client (a handful of small methods), and
  the concurrency drivers;
* ``bench/bench_report.py``: medians, the goals (a table of data), the markdown tables
  and the chart.

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
REPO = os.path.dirname(HERE)
BENCH_DIR = os.path.join(HERE, "bench")
sys.path.insert(0, BENCH_DIR)

import bench_report  # noqa: E402
from bench_servers import (  # noqa: E402
    SMALL_SIZE,
    Nginx,
    Sink,
    cpu_between,
    find_nginx,
    pattern,
    pin_process,
    process_cpu,
    stop_process,
    write_pattern_file,
)

REQUIREMENTS = os.path.join(HERE, "bench-requirements.txt")
REFERENCE = "dugong==3.8.2"
MiB = 1 << 20
CLIENTS = ["dugong", "dugong-3.8.2", "http.client", "urllib3", "httpx", "httpx-async",
           "aiohttp", "pycurl", "floor"]
CORE = {"dugong", "http.client", "floor"}  # their errors fail the run
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"]

FULL = {
    "reps": 5, "warmup": 1,
    # rows whose goals sit close to their bars: more samples steady the medians
    "reps_by": {"W1": 15, "W2": 21, "W3": 15, "W4": 21},
    "w1_n": 4000, "w2_n": 12000, "w3_size": 256 * MiB, "w4_size": 256 * MiB,
    "w5_conns": 32, "w5_n": 200, "w6_runs": 20, "w7_size": 1024 * MiB,
    "w8_tasks": 32, "w8_n": 200, "w8_conns": 8,
    "timeout": 600, "slow": 5.0, "slow_reps": 3,  # a row slower than 5 s: 3 repetitions
}
QUICK = dict(FULL, reps=2, warmup=0, reps_by={}, w1_n=300, w2_n=640, w3_size=16 * MiB,
             w4_size=16 * MiB, w5_n=10, w6_runs=8, w7_size=32 * MiB, w8_n=10, timeout=120,
             slow_reps=2)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- set-up


def run_logged(cmd: list[str], logfile: str, env: dict | None = None) -> bool:
    with open(logfile, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                              check=False).returncode == 0


def apt_install(packages: list[str], logfile: str) -> bool:
    """apt-get install, after an apt-get update if the first try fails (needs root)."""
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    return run_logged(cmd, logfile, env) or (
        run_logged(["apt-get", "update"], logfile, env) and run_logged(cmd, logfile, env))


def setup_venv(venv: str) -> dict[str, str]:
    """Create or update the benchmark venv; what failed to install, with the reason.

    Each requirement that fails on its own makes only its client's rows unavailable
    (pycurl builds against libcurl's headers when no wheel fits: they are installed
    with apt-get and pycurl tried again). A stamp records the installs."""
    py, logfile = os.path.join(venv, "bin", "python"), os.path.join(venv, "setup.log")
    with open(REQUIREMENTS) as fh:
        reqs = [line.split("#")[0].strip() for line in fh if line.split("#")[0].strip()]
    want = hashlib.sha256("\n".join([*reqs, REFERENCE]).encode()).hexdigest()
    stamp = os.path.join(venv, "bench-stamp.json")
    if os.path.exists(stamp):
        with open(stamp) as fh:
            old = json.load(fh)
        if old["requirements"] == want:
            return old["failed"]
    os.makedirs(venv, exist_ok=True)
    if not os.path.exists(py) and not run_logged([sys.executable, "-m", "venv", venv], logfile):
        raise SystemExit(f"cannot create {venv}: see {logfile}")
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    log(f"installing {', '.join(reqs)} into {os.path.relpath(venv, REPO)}")
    failed = {}
    if not run_logged([*pip, *reqs], logfile):
        headers = ["libcurl4-openssl-dev", "libssl-dev"]
        for req in reqs:
            name = req.split("=")[0]
            if not run_logged([*pip, req], logfile) and not (
                    name == "pycurl" and apt_install(headers, logfile)
                    and run_logged([*pip, req], logfile)):
                failed[name] = f"pip install {req} failed (see {logfile})"
                log(failed[name])
    target = os.path.join(venv, "dugong-3.8.2")
    shutil.rmtree(target, ignore_errors=True)
    if not run_logged([*pip, "--no-deps", "--target", target, REFERENCE], logfile):
        failed["dugong-3.8.2"] = f"pip install {REFERENCE} failed (see {logfile})"
    with open(stamp, "w") as fh:
        json.dump({"requirements": want, "failed": failed}, fh)
    return failed


# ---------------------------------------------------------------- workers


class WorkerFailed(Exception):
    pass


class Worker:
    """One client in a process of its own, driven by JSON lines (bench_workloads.py)."""

    def __init__(self, name: str, python: str, venv: str, workdir: str, timeout: float):
        self.name, self.timeout, self.buf = name, timeout, b""
        env = {k: v for k, v in os.environ.items() if k.lower() not in (
            "http_proxy", "https_proxy", "all_proxy", "no_proxy", "pythonpath", "pythonhome")}
        if name.startswith("dugong"):
            where = REPO if name == "dugong" else os.path.join(venv, "dugong-3.8.2")
            env["BENCH_DUGONG"] = env["PYTHONPATH"] = where
        self.errlog = os.path.join(workdir, f"worker-{name}.log")
        with open(self.errlog, "wb") as err:
            self.proc = subprocess.Popen(
                [python, os.path.join(BENCH_DIR, "bench_workloads.py"), name],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env, cwd=workdir)

    def receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if not select.select([self.proc.stdout], [], [], deadline - time.monotonic())[0]:
                self.stop()
                raise WorkerFailed(f"no answer within {timeout:.0f} s (worker stopped)")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                with open(self.errlog, errors="replace") as fh:
                    raise WorkerFailed(f"worker exited: {fh.read()[-800:]}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, msg: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise WorkerFailed(f"the worker is gone: {exc}") from None
        return self.receive(self.timeout)

    def stop(self) -> None:
        try:
            self.proc.stdin.close()  # the worker's loop ends with its input
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            stop_process(self.proc, signal.SIGKILL)
        self.proc.stdout.close()


# ---------------------------------------------------------------- the run


class Bench:
    def __init__(self, args, cfg: dict, python: str, venv: str, workdir: str):
        self.args, self.cfg, self.python, self.venv, self.workdir = (
            args, cfg, python, venv, workdir)
        self.workers: dict[str, Worker] = {}
        self.versions: dict[str, str] = {}
        self.unavailable: dict[str, str] = {}
        self.offers: dict[str, list] = {}  # client -> [[workload, variant, label], ...]
        self.errors: list[str] = []
        self.servers: dict[int, int] = {}  # port -> PID whose CPU time each run records

    def start_workers(self, clients: list[str], failed: dict[str, str]) -> None:
        for name in clients:
            if name in failed or name.split("-")[0] in failed:
                self.unavailable[name] = failed.get(name) or failed[name.split("-")[0]]
            else:
                self.workers[name] = Worker(name, self.python, self.venv, self.workdir,
                                            self.cfg["timeout"])
        for name, worker in list(self.workers.items()):
            try:
                hello = worker.receive(60)
            except WorkerFailed as exc:
                hello = {"unavailable": str(exc)}
            if "unavailable" in hello:
                worker.stop()
                del self.workers[name]
                self.unavailable[name] = hello["unavailable"]
                (self.error if name in CORE else log)(f"{name}: unavailable: "
                                                      f"{hello['unavailable']}")
            else:
                self.versions[name] = hello["version"]
                self.offers[name] = hello["rows"]

    def stop_workers(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.workers.clear()

    def error(self, msg: str) -> None:
        self.errors.append(msg)
        log(f"ERROR: {msg}")

    def plan(self, w: str, clients: list[str], nginx: int, sink: int) -> list[dict]:
        """The rows of workload *w*: what each client's worker offers, in table order."""
        cfg = self.cfg
        small = {"port": nginx, "path": "/1k", "warmup": cfg["warmup"]}
        p = {"W1": dict(small, n=cfg["w1_n"]), "W2": dict(small, n=cfg["w2_n"]),
             "W3": {"port": nginx, "path": "/large/large.bin", "size": cfg["w3_size"],
                    "warmup": cfg["warmup"]},
             "W4": {"port": sink, "size": cfg["w4_size"], "warmup": cfg["warmup"]},
             "W5": dict(small, tasks=cfg["w5_conns"], n=cfg["w5_n"]),
             "W7": {"port": sink, "size": cfg["w7_size"]},
             "W8": dict(small, tasks=cfg["w8_tasks"], n=cfg["w8_n"], conns=cfg["w8_conns"],
                        url=f"http://127.0.0.1:{nginx}/1k")}[w]
        return [{"id": f"{w}/{client}/{variant}", "workload": w, "client": client,
                 "variant": variant, "label": label, "samples": [], "status": "ok",
                 "params": dict(small, warmup=0) if variant == "idle" else p}
                for client in clients for ww, variant, label in self.offers.get(client, [])
                if ww == w]

    def failed(self, row: dict, answer: dict) -> None:
        """Record a row that cannot run: n/a, unavailable, or an error (fatal for the
        core clients; dugong 3.8.2 is used unpatched, so its errors say unavailable)."""
        reason = answer.get("na") or answer.get("unavailable") or answer.get("error", "?")
        status = "n/a" if "na" in answer else "unavailable" if "unavailable" in answer else (
            "unavailable" if row["client"] == "dugong-3.8.2" else "error")
        row.update(status=status, reason=reason + "\n" + answer.get("traceback", ""))
        if status == "error" and row["client"] in CORE:
            self.error(f"{row['id']}: {reason}\n{answer.get('traceback', '')}")
        elif status != "n/a":
            log(f"{row['id']}: {status}: {reason}")

    def call(self, row: dict, msg: dict) -> dict:
        worker = self.workers.get(row["client"])
        if worker is None:
            return {"unavailable": self.unavailable.get(row["client"], "no worker")}
        try:
            return worker.call(dict(msg, row=row["id"]))
        except WorkerFailed as exc:
            self.workers.pop(row["client"]).stop()
            return {"error": str(exc)}

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
        for rep in range(cfg["reps_by"].get(w, cfg["reps"])):
            for row in active[rep % len(active):] + active[:rep % len(active)]:
                s = row["samples"]
                if row["status"] != "ok" or (
                        len(s) >= cfg["slow_reps"] and min(x["wall"] for x in s) > cfg["slow"]):
                    continue  # a slow row: fewer repetitions keep the full run short
                server = self.servers.get(row["params"]["port"])
                before = process_cpu(server)
                answer = self.call(row, {"op": "run"})
                after = process_cpu(server)
                if "wall" not in answer:
                    self.failed(row, answer)
                    continue
                if before is not None and after is not None:
                    answer["server_cpu"] = cpu_between(before, after)
                s.append(answer)
        for row in active:
            if row["client"] in self.workers and row["status"] == "ok":
                self.call(row, {"op": "close"})
        log(f"{w}: {time.monotonic() - t0:.1f} s")

    def run_w6(self, clients: list[str]) -> list[dict]:
        """W6: ``python -c 'import dugong'`` and the others, each in a fresh process,
        with byte code cached (in the venv, nothing written into the work tree)."""
        env = {k: v for k, v in os.environ.items() if k not in (
            "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONSTARTUP")}
        env["PYTHONPYCACHEPREFIX"] = os.path.join(self.venv, "pycache-w6")
        reference = os.path.join(self.venv, "dugong-3.8.2")
        commands = [("dugong", "import dugong", REPO, env),
                    ("dugong-3.8.2", "import dugong", self.workdir,
                     dict(env, PYTHONPATH=reference)),
                    ("http.client", "import http.client", REPO, env),
                    ("floor", "pass", REPO, env)]
        commands = [c for c in commands if c[0] in [*clients, "http.client", "floor"]
                    and c[0] not in self.unavailable]
        rows = []
        for name, code, cwd, env in commands:
            row = {"id": f"W6/{name}", "workload": "W6", "client": name, "variant": "import",
                   "label": f"python -c {code!r}", "samples": [], "status": "ok"}
            rows.append(row)
            where = {"dugong": REPO, "dugong-3.8.2": reference}.get(name, "")
            check = f"{code}\nimport sys; print(getattr(sys.modules.get('dugong'), '__file__', 0))"
            res = subprocess.run([self.python, "-c", check], cwd=cwd, env=env, text=True,
                                 capture_output=True, check=False)
            if res.returncode or not res.stdout.startswith(where):
                self.failed(row, {"error": f"imported from {res.stdout.strip()!r}, not from "
                                           f"{where!r}: {res.stderr[-400:]}"})
            for _ in range(2):  # warm-up: byte-code cache, page cache
                subprocess.run([self.python, "-c", code], cwd=cwd, env=env, check=False)
        for _ in range(self.cfg["w6_runs"]):
            for row, (_, code, cwd, env) in zip(rows, commands, strict=True):
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run([self.python, "-c", code], cwd=cwd, env=env, check=False)
                t1 = time.perf_counter()
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                row["samples"].append({"wall": t1 - t0, "cpu": cpu})
        return rows


# ---------------------------------------------------------------- main


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
    args = parse_args(argv)
    t_start = time.monotonic()
    cfg = dict(QUICK if args.quick else FULL)
    if args.reps:
        cfg.update(reps=args.reps, reps_by={})
    asked = set(args.clients.split(",") if args.clients else CLIENTS)
    workloads = args.workloads.upper().split(",") if args.workloads else WORKLOADS
    if asked - set(CLIENTS) or set(workloads) - set(WORKLOADS):
        sys.exit(f"unknown clients or workloads: {args.clients} {args.workloads}")
    clients = [c for c in CLIENTS if c in asked]
    suffix = "-quick" if args.quick else ""
    json_path = args.json or os.path.join(REPO, f"bench-results{suffix}.json")
    chart_path = args.chart or os.path.join(
        REPO, *(["bench-results-quick.png"] if args.quick else ["doc", "_static", "bench.png"]))
    venv = os.path.join(REPO, ".venv-bench")
    python = os.path.join(venv, "bin", "python")
    failed = {} if args.no_setup else setup_venv(venv)
    if not os.path.exists(python):
        sys.exit(f"no benchmark venv at {venv}: run without --no-setup once")
    nginx_bin = find_nginx()
    if nginx_bin is None and not args.no_setup:
        log("nginx not found: apt-get install nginx-light")
        apt_install(["nginx-light"], os.path.join(venv, "setup.log"))
        nginx_bin = find_nginx()
    if nginx_bin is None:
        sys.exit("the benchmark needs nginx")
    setup_done = time.monotonic()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    workdir = tempfile.mkdtemp(prefix="dugong-bench-")
    os.chmod(workdir, 0o755)  # nginx's worker may run as another user
    nginx = sink = bench = None
    results = []
    try:
        os.makedirs(os.path.join(workdir, "www", "large"))
        with open(os.path.join(workdir, "www", "1k"), "wb") as fh:
            fh.write(pattern()[:SMALL_SIZE])
        if "W3" in workloads:
            write_pattern_file(os.path.join(workdir, "www", "large", "large.bin"),
                               cfg["w3_size"])
        for root, dirs, files in os.walk(workdir):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
        sink = Sink(python)
        nginx = Nginx(nginx_bin, workdir)
        nginx_port = nginx.start()
        log(f"servers: nginx {nginx.version()} on port {nginx_port}, sink on {sink.port}")
        bench = Bench(args, cfg, python, venv, workdir)
        bench.servers = {sink.port: sink.proc.pid, nginx_port: nginx.worker_pid()}
        cpus = sorted(os.sched_getaffinity(0))
        if args.pin and len(cpus) >= 2 and all(
                pin_process(pid, {cpus[0]}) for pid in bench.servers.values()):
            # no request then waits for the scheduler to move a server or a client
            log(f"servers pinned to CPU {cpus[0]}, clients to {cpus[1:]}")
            os.sched_setaffinity(0, set(cpus[1:]))  # the workers inherit it
        bench.start_workers(clients, failed)
        for w in workloads:
            if w == "W6":
                results += bench.run_w6(clients)
                continue
            rows = bench.plan(w, clients, nginx_port, sink.port)
            bench.run_workload(w, rows)
            results += rows
    finally:
        if bench is not None:
            bench.stop_workers()
        if nginx is not None:
            nginx.stop()
        if sink is not None:
            sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    for row in results:
        row.pop("params", None)
    meta = {"mode": "quick" if args.quick else "full", "date": time.strftime("%Y-%m-%d %H:%M"),
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "server": f"nginx {nginx.version()}",
            "versions": bench.versions, "unavailable": bench.unavailable, "config": cfg,
            "setup_seconds": round(setup_done - t_start, 1)}
    goals = bench_report.analyse(results)
    text = bench_report.markdown(results, goals, meta, cfg)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)
    with open(json_path, "w") as fh:
        json.dump({"meta": meta, "rows": results, "goals": goals, "errors": bench.errors},
                  fh, indent=1)
    log(f"results written to {os.path.relpath(json_path)}")
    if not args.no_chart:
        res = subprocess.run([python, os.path.join(BENCH_DIR, "bench_report.py"), "chart",
                              json_path, chart_path], capture_output=True, text=True, check=False)
        log(f"chart written to {os.path.relpath(chart_path)}" if res.returncode == 0 else
            f"no chart: {(res.stderr.strip().splitlines() or ['matplotlib failed'])[-1]}")
    log(f"done in {time.monotonic() - t_start:.1f} s (set-up {setup_done - t_start:.1f} s)")
    for e in bench.errors:
        log(f"error: {e.splitlines()[0]}")
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
