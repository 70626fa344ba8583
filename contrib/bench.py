#!/usr/bin/env python3
"""Benchmark dugong against other Python HTTP clients and a raw-socket floor, on 127.0.0.1.

    make bench-quick    # or: make bench; python contrib/bench.py [--quick] [--pin]

See contrib/BENCHMARK.rst. The exit status is 1 only for a crash or a wrong answer of
dugong, http.client, the floor or the servers."""

import argparse
import functools
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from subprocess import PIPE, Popen

HERE = os.path.dirname(os.path.abspath(__file__))
REPO, BENCH_DIR = os.path.dirname(HERE), os.path.join(HERE, "bench")
sys.path.insert(0, BENCH_DIR)

import bench_report  # noqa: E402
import bench_servers as servers  # noqa: E402
from bench_adapters import ADAPTERS  # noqa: E402

VENV = os.path.join(REPO, ".venv-bench")  # made by make bench and make bench-quick
PYTHON = os.path.join(VENV, "bin", "python")
REFERENCE_DIR = os.path.join(VENV, "dugong-3.8.2")
CLIENTS = list(ADAPTERS)
CORE = {"dugong", "http.client", "floor"}  # their errors fail the run
WORKLOADS = list(bench_report.TITLES)
SETTINGS = {  # each one's value in the full run and in the quick run
    "reps": (5, 2),
    "warmup": (1, 0),
    # rows whose goals sit close to their bars: more samples steady the medians
    "reps_by": ({"W1": 15, "W2": 21, "W3": 15, "W4": 21, "W5": 15, "W6": 20}, {}),
    "w1_n": (4000, 300),
    "w2_n": (12000, 640),
    "w3_mib": (256, 16),
    "w4_mib": (256, 16),
    "w5_conns": (32, 32),
    "w5_n": (200, 10),
    "w7_mib": (1024, 32),
    "w8_tasks": (32, 32),
    "w8_n": (200, 10),
    "w8_conns": (8, 8),
    "timeout": (600, 120),  # seconds a worker may take to answer
}
#: where client and server take turns (one request at a time), both run on one CPU, unless
#: --pin says otherwise: on two, each turn waits for an idle CPU to wake, and which rows
#: the scheduler put on nginx's CPU decided their rates (11,000 or 78,000 requests/s)
ONE_CPU = {"W1"}
log = functools.partial(print, "[bench]", file=sys.stderr, flush=True)  # log(message)


class Bench:
    """The workers, driven by JSON lines, and the workloads' rows. A worker per client
    says which rows it has; each row then runs in a worker of its own, so that rows of
    one client do not take turns in one process (the floor has one row where dugong
    has four)."""

    def __init__(
        self, cfg: dict, workdir: str, nginx: servers.Nginx, sink: servers.Sink, pin: bool
    ):
        self.cfg, self.nginx, self.sink = cfg, nginx, sink
        self.workdir, self.pin = workdir, pin
        self.cpus = None  # the CPUs of the workers started now (None: the system decides)
        self.workers: dict[str, Popen] = {}  # a client's name, or a row's id -> its worker
        self.versions: dict[str, str] = {}
        self.unavailable: dict[str, str] = {}  # client -> why
        self.offers: list[list[str]] = []  # [client, workload, variant, label] of each row
        self.errors: list[str] = []
        for name in CLIENTS:
            self.start(name, name)
        for name in CLIENTS:  # each worker says its version and rows, or why it has none
            hello = self.call(name)
            servers.stop_process(self.workers.pop(name))
            self.offers += [[name, *row] for row in hello.get("rows", [])]
            if "version" in hello:
                self.versions[name] = hello["version"]
                continue
            reason = hello.get("unavailable") or hello["error"]
            if os.path.exists(failed := os.path.join(VENV, "failed", name)):  # kept by make
                with open(failed) as fh:  # the exception that stopped pip, else its last line
                    lines = [line.strip() for line in fh if line.strip()] or ["?"]
                told = [line for line in lines if re.match(r"\w*Error: ", line)] or lines
                reason = f"pip could not install it ({told[-1]}; .venv-bench/failed/{name})"
            self.unavailable[name] = reason.splitlines()[0][:300]
            self.versions[name] = f"unavailable: {self.unavailable[name]}"
            self.error(name, f"{name}: {reason}")

    def start(self, key: str, client: str) -> None:
        """Start a worker of *client*, known as *key*; it first says hello (see `call`)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        if where := {"dugong": REPO, "dugong-3.8.2": REFERENCE_DIR}.get(client):
            env["BENCH_DUGONG"] = env["PYTHONPATH"] = where
        cmd, pipe = [PYTHON, os.path.join(BENCH_DIR, "bench_workloads.py"), client], PIPE
        self.workers[key] = Popen(cmd, env=env, stdin=pipe, stdout=pipe, cwd=self.workdir)
        if self.cpus:
            os.sched_setaffinity(self.workers[key].pid, self.cpus)

    def call(self, name: str, msg: dict | None = None) -> dict:
        """Worker *name*'s answer to *msg* (if any), or an error if it is gone or late."""
        proc = self.workers[name]
        try:
            if msg is not None:
                proc.stdin.write(json.dumps(msg).encode() + b"\n")
                proc.stdin.flush()
            if not select.select([proc.stdout], [], [], self.cfg["timeout"])[0]:
                raise OSError("no answer in time")
            if not (line := proc.stdout.readline()):
                raise OSError("it exited")
            return json.loads(line)
        except (OSError, ValueError) as exc:
            servers.stop_process(proc)
            return {"error": f"the worker failed: {exc}"}

    def error(self, client: str, msg: str) -> None:
        if client in CORE:
            self.errors.append(msg)
        log(f"{'ERROR: ' if client in CORE else ''}{msg}")

    def ask(self, row: dict, msg: dict) -> dict | None:
        """The answer of *row*'s worker; None if the row failed (then marked so)."""
        answer = self.call(row["id"], dict(msg, row=row["id"]))
        if "error" not in answer:
            return answer
        row.update(status="error", reason=f"{answer['error']}\n{answer.get('traceback', '')}")
        self.error(row["client"], f"{row['id']}: {answer['error']}")
        return None

    def run_workload(self, w: str) -> list[dict]:
        """Prepare every row of *w*, then interleave their timed repetitions."""
        t0, cfg, nginx, sink = time.monotonic(), self.cfg, self.nginx.port, self.sink.port
        log(f"{w}: {bench_report.TITLES[w].format(**cfg)}")
        params = {"port": nginx, "path": "/1k", "warmup": cfg["warmup"]}  # what a row asks
        params |= {
            "W1": {"n": cfg["w1_n"]},
            "W2": {"n": cfg["w2_n"]},
            "W3": {"path": "/large/large.bin", "size": cfg["w3_mib"] << 20},
            "W4": {"port": sink, "size": cfg["w4_mib"] << 20},
            "W5": {"tasks": cfg["w5_conns"], "n": cfg["w5_n"]},
            "W6": {"port": None, "pycache": os.path.join(VENV, "pycache-w6")},
            "W7": {"port": sink, "size": cfg["w7_mib"] << 20},
            "W8": {"tasks": cfg["w8_tasks"], "n": cfg["w8_n"], "conns": cfg["w8_conns"]},
        }[w]
        rows, server_cpus = [], os.sched_getaffinity(self.nginx.proc.pid)
        if w in ONE_CPU and not self.pin and len(server_cpus) > 1:
            self.cpus = {min(server_cpus)}
            os.sched_setaffinity(self.nginx.proc.pid, self.cpus)
            log(f"{w}: nginx and the clients on CPU {min(server_cpus)}")
        for client, _, variant, label in (offer for offer in self.offers if offer[1] == w):
            row = {"id": f"{w}/{client}/{variant}", "workload": w, "client": client}
            row |= {"variant": variant, "label": label, "samples": [], "status": "ok"}
            # W7's idle connections are to nginx, its stream from the sink
            row["params"] = dict(params, port=nginx) if variant == "idle" else params
            rows.append(row)
            if client in self.unavailable:
                row.update(status="unavailable", reason=self.unavailable[client])
                continue
            self.start(row["id"], client)
            if "error" in (hello := self.call(row["id"])):
                row.update(status="error", reason=hello["error"])
                self.error(client, f"{row['id']}: {hello['error']}")
            else:
                self.ask(row, {"op": "prepare", **row})
        active = [r for r in rows if r["status"] == "ok"]
        server = {nginx: self.nginx.proc.pid, sink: self.sink.proc.pid}
        for rep in range(cfg["reps_by"].get(w, cfg["reps"]) if active else 0):
            for row in active[rep % len(active) :] + active[: rep % len(active)]:
                if row["status"] != "ok":
                    continue
                before = servers.process_cpu(pid := server.get(row["params"]["port"]))
                if answer := self.ask(row, {"op": "run"}):
                    if before is not None and (after := servers.process_cpu(pid)) is not None:
                        answer["server_cpu"] = after - before
                    row["samples"].append(answer)
        for row in rows:
            if row["status"] == "ok":
                self.ask(row, {"op": "close"})
            if (proc := self.workers.pop(row["id"], None)) is not None:
                servers.stop_process(proc)
        if self.cpus:
            os.sched_setaffinity(self.nginx.proc.pid, server_cpus)
            self.cpus = None
        log(f"{w}: {time.monotonic() - t0:.1f} s")
        return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts, 2 repetitions (CI)")
    ap.add_argument("--workloads", help="a comma-separated subset of " + ",".join(WORKLOADS))
    ap.add_argument("--pin", action="store_true", help="servers on one CPU, clients on the others")
    args, t_start = ap.parse_args(), time.monotonic()
    cfg = {key: values[args.quick] for key, values in SETTINGS.items()}
    workloads = args.workloads.upper().split(",") if args.workloads else WORKLOADS
    if set(workloads) - set(WORKLOADS):
        sys.exit(f"unknown workloads: {args.workloads}")
    nginx_bin = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx_bin is None or not os.path.exists(REFERENCE_DIR):
        sys.exit("the benchmark needs nginx and its venv: make bench-quick installs them")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    workdir = tempfile.mkdtemp(prefix="dugong-bench-")
    nginx = sink = bench = None
    try:
        os.makedirs(os.path.join(workdir, "www", "large"))
        with open(os.path.join(workdir, "www", "1k"), "wb") as fh:
            fh.write(servers.pattern()[: servers.SMALL_SIZE])
        with open(os.path.join(workdir, "www", "large", "large.bin"), "wb") as fh:
            fh.writelines(servers.pattern_pieces(cfg["w3_mib"] << 20 if "W3" in workloads else 0))
        sink, nginx = servers.Sink(PYTHON), servers.Nginx(nginx_bin, workdir)
        log(f"servers: {nginx.version} on port {nginx.port}, the sink on {sink.port}")
        cpus = sorted(os.sched_getaffinity(0))
        if args.pin and len(cpus) > 1:  # the threads a process starts inherit its CPUs
            for pid in (nginx.proc.pid, sink.proc.pid):
                os.sched_setaffinity(pid, cpus[:1])
            os.sched_setaffinity(0, cpus[1:])
            log(f"servers pinned to CPU {cpus[0]}, clients to {cpus[1:]}")
        bench = Bench(cfg, workdir, nginx, sink, args.pin)
        results = [row for w in workloads for row in bench.run_workload(w)]
    finally:
        for proc in bench.workers.values() if bench else ():
            servers.stop_process(proc)
        for server in filter(None, (nginx, sink)):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    meta = {
        "mode": "quick" if args.quick else "full",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "server": nginx.version,
        "versions": bench.versions,
        "config": cfg,
        "placement": "servers on one CPU, clients on the others"
        if args.pin
        else f"{', '.join(sorted(ONE_CPU))} on nginx's CPU, the rest where the system put it",
    }
    goals = bench_report.analyse(results)
    print(bench_report.markdown(results, goals, meta))
    # Only a full run replaces the manual's chart; a partial one is kept next to it.
    partial = args.quick or args.workloads
    name = "bench-results-quick" if args.quick else "bench-results" + ("-partial" * bool(partial))
    json_path = os.path.join(REPO, f"{name}.json")
    with open(json_path, "w") as fh:
        report = {"meta": meta, "rows": results, "goals": goals, "errors": bench.errors}
        json.dump(report, fh, indent=1)
    chart_path = os.path.join(REPO, f"{name}.png" if partial else "doc/_static/bench.png")
    cmd = [PYTHON, bench_report.__file__, json_path, chart_path]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    png = f"no chart: {res.stderr.strip()[-300:]}" if res.returncode else f"chart in {chart_path}"
    log(f"results in {json_path}; {png}")
    log(f"done in {time.monotonic() - t_start:.1f} s, {len(bench.errors)} errors")
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
