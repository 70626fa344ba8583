#!/usr/bin/env python3
"""Side-by-side benchmark of dugong and other Python HTTP clients.

Usage (from the repository root)::

    python contrib/bench.py            # full run, about 10-15 minutes
    python contrib/bench.py --quick    # every client and workload, small counts

What it does, in one run:

* makes sure the benchmark-only virtualenv ``.venv-bench`` exists with the
  clients of ``contrib/bench-requirements.txt`` and, installed apart with
  ``--target``, the original dugong 3.8.2 as a reference (it has the same
  import name as ours, so only its own worker puts it on ``sys.path``);
* starts nginx (installed with apt-get if missing) on 127.0.0.1 at a free port
  with a configuration written into a temporary directory, and the upload sink
  of ``contrib/bench/bench_servers.py``; both are stopped by PID at the end;
* runs every client in a worker process of its own
  (``contrib/bench/bench_clients.py``), validates its answers, warms it up and
  then interleaves the repetitions of all clients of a workload;
* prints one markdown table per workload, writes the raw results as JSON and
  draws a PNG chart with the matplotlib of the benchmark venv.

Only 127.0.0.1 is ever contacted. Timing never makes the run fail: the exit
status is 1 only for real errors (a crash, a wrong answer) of this dugong,
http.client, the raw-socket floor or the servers, or of any client with
``--strict``.
"""

from __future__ import annotations

import argparse
import contextlib
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
    stream_digest,
    write_pattern_file,
)

REQUIREMENTS = os.path.join(HERE, "bench-requirements.txt")
REFERENCE = "dugong==3.8.2"
REFERENCE_DIR_NAME = "dugong-3.8.2"
MiB = 1 << 20

#: every client row the benchmark knows, in table order
CLIENTS = [
    "dugong",
    "dugong-3.8.2",
    "http.client",
    "urllib3",
    "httpx",
    "httpx-async",
    "aiohttp",
    "pycurl",
    "floor",
]
#: failures of these make the run fail; the others are reported as rows
CORE_CLIENTS = {"dugong", "http.client", "floor"}

FULL = {
    "reps": 5,
    # short rows whose goals sit close to their bar: more repetitions steady the medians
    "reps_by_workload": {"W1": 15, "W2": 21, "W3": 15, "W4": 21},
    "warmup": 1,
    "w1_n": 4000,
    "w2_n": 12000,
    "w3_size": 256 * MiB,
    "w4_size": 256 * MiB,
    "w5_conns": 32,
    "w5_n": 200,
    "w6_runs": 20,
    "w7_size": 1024 * MiB,
    "timeout": 600,
    "check_n": 1024,  # requests of a validation or warm-up run, at most
    "check_size": 64 * MiB,  # size of W7's validation stream, at most
    "slow": 5.0,  # a row whose repetitions take longer than this (s) ...
    "slow_reps": 3,  # ... gets only this many repetitions
}
QUICK = {
    "reps": 2,
    "warmup": 0,
    "w1_n": 300,
    "w2_n": 640,
    "w3_size": 16 * MiB,
    "w4_size": 16 * MiB,
    "w5_conns": 32,
    "w5_n": 10,
    "w6_runs": 8,
    "w7_size": 32 * MiB,
    "timeout": 120,
    "check_n": 1024,
    "check_size": 64 * MiB,
    "slow": 5.0,
    "slow_reps": 2,
}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# set-up: the benchmark venv and nginx
# --------------------------------------------------------------------------


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def run_logged(
    cmd: list[str], logfile: str, env: dict | None = None, timeout: float = 900
) -> bool:
    with open(logfile, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            res = subprocess.run(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            fh.write(f"failed: {exc}\n")
            return False
    return res.returncode == 0


def tail(path: str, n: int = 600) -> str:
    try:
        with open(path, errors="replace") as fh:
            return fh.read()[-n:].strip()
    except OSError:
        return ""


def apt_install(packages: list[str], logfile: str) -> bool:
    """apt-get install, with apt-get update and a retry if the first try fails."""
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if run_logged(cmd, logfile, env):
        return True
    run_logged(["apt-get", "update"], logfile, env)
    return run_logged(cmd, logfile, env)


def requirement_lines() -> list[str]:
    out = []
    with open(REQUIREMENTS) as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(line)
    return out


def setup_venv(venv: str, reinstall: bool) -> tuple[str, dict]:
    """Create or reuse the benchmark venv; return its python and install status."""
    py = venv_python(venv)
    os.makedirs(venv, exist_ok=True)
    logfile = os.path.join(venv, "setup.log")
    if not os.path.exists(py):
        log(f"creating {os.path.relpath(venv, REPO)}")
        if not run_logged([sys.executable, "-m", "venv", venv], logfile):
            log(
                f"could not create the venv ({tail(logfile, 200)}); "
                "optional clients will be unavailable"
            )
            return sys.executable, {}
    reqs = requirement_lines()
    stamp_file = os.path.join(venv, "bench-stamp.json")
    with open(REQUIREMENTS, "rb") as fh:
        want = hashlib.sha256(fh.read() + REFERENCE.encode()).hexdigest()
    try:
        with open(stamp_file) as fh:
            stamp = json.load(fh)
    except (OSError, ValueError):
        stamp = {}
    if stamp.get("requirements") == want and not reinstall:
        return py, stamp.get("status", {})
    status = {}
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # all at once first (one resolver run is much faster); one by one if that fails
    log(f"installing {', '.join(reqs)} into the benchmark venv")
    together = run_logged([*pip, *reqs], logfile)
    for req in reqs:
        name = req.split("=")[0].split("<")[0].split(">")[0].strip()
        if together:
            status[name] = "ok"
            continue
        log(f"installing {req} on its own")
        ok = run_logged([*pip, req], logfile)
        if not ok and name == "pycurl":
            log("pycurl did not build: installing libcurl headers with apt-get and retrying")
            if apt_install(["libcurl4-openssl-dev", "libssl-dev"], logfile):
                ok = run_logged([*pip, req], logfile)
        status[name] = "ok" if ok else f"pip install {req} failed: {tail(logfile, 300)}"
        if not ok:
            log(f"{req}: install failed; its rows will be reported as unavailable")
    target = os.path.join(venv, REFERENCE_DIR_NAME)
    log(f"installing {REFERENCE} with --target into {os.path.relpath(target, REPO)}")
    shutil.rmtree(target, ignore_errors=True)
    ok = run_logged([*pip, "--no-deps", "--target", target, REFERENCE], logfile)
    status["dugong-3.8.2"] = (
        "ok" if ok else f"pip install {REFERENCE} failed: {tail(logfile, 300)}"
    )
    with open(stamp_file, "w") as fh:
        json.dump({"requirements": want, "status": status}, fh, indent=1)
    return py, status


def ensure_nginx(logfile: str, allow_install: bool) -> str | None:
    binary = find_nginx()
    if binary or not allow_install:
        return binary
    log("nginx not found: apt-get install -y nginx-light")
    apt_install(["nginx-light"], logfile)
    return find_nginx()


# --------------------------------------------------------------------------
# workers
# --------------------------------------------------------------------------


class WorkerFailed(Exception):
    pass


class Worker:
    """One client in its own process, driven over a JSON line protocol."""

    def __init__(self, name: str, python: str, env: dict, workdir: str, timeout: float,
                 cpus: set[int] | None = None):
        self.name = name
        self.timeout = timeout
        self.errlog = os.path.join(workdir, f"worker-{name}.log")
        self._err = open(self.errlog, "ab")  # noqa: SIM115 (lives as long as the worker)
        self.proc = subprocess.Popen(
            [python, os.path.join(BENCH_DIR, "bench_clients.py"), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
            cwd=workdir,
        )
        if cpus:
            pin_process(self.proc.pid, cpus)
        self._buf = b""
        self.hello: dict | None = None

    def greet(self) -> dict:
        if self.hello is None:
            self.hello = self._recv(60)
        return self.hello

    def _recv(self, timeout: float) -> dict:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerFailed(
                    f"{self.name}: no answer within {timeout:.0f} s (worker stopped)"
                )
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait()
                raise WorkerFailed(
                    f"{self.name}: worker exited with status {self.proc.returncode}: "
                    + tail(self.errlog, 800)
                )
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, msg: dict, timeout: float | None = None) -> dict:
        if self.proc.poll() is not None:
            raise WorkerFailed(f"{self.name}: worker is gone: {tail(self.errlog, 800)}")
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as exc:
            raise WorkerFailed(f"{self.name}: cannot talk to the worker: {exc}") from None
        return self._recv(timeout or self.timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        stop_process(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                stop_process(self.proc)
        for f in (self.proc.stdin, self.proc.stdout, self._err):
            with contextlib.suppress(OSError):
                f.close()


def worker_env(name: str, venv: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower()
        not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "pythonpath", "pythonhome")
    }
    if name == "dugong":
        env["BENCH_REPO_ROOT"] = REPO
        env["PYTHONPATH"] = REPO
    elif name == "dugong-3.8.2":
        ref = os.path.join(venv, REFERENCE_DIR_NAME)
        env["BENCH_DUGONG_REF"] = ref
        env["PYTHONPATH"] = ref
    return env


# --------------------------------------------------------------------------
# the plan: rows of each workload
# --------------------------------------------------------------------------


def build_plan(cfg: dict, nginx_port: int, sink_port: int, small_body: bytes) -> dict:
    small = {"host": "127.0.0.1", "port": nginx_port, "path": "/1k", "small_body": small_body}
    plan: dict[str, list] = {}

    def row(w, client, variant, label, params, **extra):
        rid = f"{w}/{client}/{variant}"
        r = {
            "id": rid,
            "workload": w,
            "client": client,
            "variant": variant,
            "label": label,
            "params": params,
        }
        r.update(extra)
        plan.setdefault(w, []).append(r)

    warm = cfg["warmup"]

    def fewer(n):
        # validation and warm-up of request counts: at most cfg["check_n"]
        k = min(n, cfg["check_n"])
        return {"n": k, "expect_ops": k, "expect_bytes": k * SMALL_SIZE}

    # W1
    n1 = cfg["w1_n"]
    p1 = dict(
        small, n=n1, warmup=warm, expect_ops=n1, expect_bytes=n1 * SMALL_SIZE, check=fewer(n1)
    )
    for c in CLIENTS:
        row("W1", c, "seq", "sequential", p1, unit="req")
    # W2
    n2 = cfg["w2_n"]
    for depth in (16, 64):
        p2 = dict(
            small,
            n=n2,
            depth=depth,
            warmup=warm,
            expect_ops=n2,
            expect_bytes=n2 * SMALL_SIZE,
            check=fewer(n2),
        )
        for c in ("dugong", "dugong-3.8.2"):
            row(
                "W2",
                c,
                f"co-d{depth}",
                f"co_ sender+receiver, depth {depth}",
                dict(p2),
                unit="req",
                depth=depth,
            )
            row(
                "W2",
                c,
                f"blocking-d{depth}",
                f"send x{depth}, read x{depth}",
                dict(p2),
                unit="req",
                depth=depth,
            )
        # "each": one send() per request, as a client must whose send_request puts
        # each request on the wire before it returns; "blocking" and "co": the same
        # traffic as dugong's rows of those names, one send() per request
        floors = (("window", f"pre-built, depth {depth}"),
                  ("each", f"pre-built, one send() per request, depth {depth}"),
                  ("blocking", f"pre-built, send x{depth}, read x{depth}"),
                  ("co", f"pre-built, one send() per response read, depth {depth}"))
        for kind, label in floors:
            row("W2", "floor", f"{kind}-d{depth}", label, dict(p2), unit="req", depth=depth)
    # W3
    size3 = cfg["w3_size"]
    p3 = {
        "host": "127.0.0.1",
        "port": nginx_port,
        "path": "/large/large.bin",
        "size": size3,
        "digest": stream_digest(size3),
        "warmup": warm,
        "expect_ops": 1,
        "expect_bytes": size3,
    }
    for variant in ("read", "readinto"):
        for c in CLIENTS:
            if c == "floor":
                continue
            if variant == "readinto" and c not in (
                "dugong",
                "dugong-3.8.2",
                "http.client",
                "urllib3",
            ):
                continue
            label = {"read": "read(64 KiB)", "readinto": "readinto(64 KiB buffer)"}[variant]
            if variant == "read" and c in ("httpx", "httpx-async"):
                label = "iter_bytes(64 KiB)"
            elif variant == "read" and c == "pycurl":
                label = "write callback, 64 KiB buffer"
            elif variant == "read" and c == "aiohttp":
                label = "content.read(64 KiB)"
            row("W3", c, variant, label, p3, unit="MiB")
    row("W3", "floor", "readinto", "recv_into(64 KiB buffer)", p3, unit="MiB")
    # W4
    size4 = cfg["w4_size"]
    p4 = {
        "host": "127.0.0.1",
        "port": sink_port,
        "size": size4,
        "digest": stream_digest(size4),
        "warmup": warm,
        "expect_ops": 1,
        "expect_bytes": size4,
    }
    w4_clients = {
        "plain": CLIENTS,
        "expect100": ["dugong", "dugong-3.8.2", "aiohttp", "pycurl", "floor"],
        "chunked": [c for c in CLIENTS],
    }
    labels4 = {
        "plain": "Content-Length",
        "expect100": "Content-Length + 100-continue",
        "chunked": "chunked",
    }
    for variant, clients in w4_clients.items():
        for c in clients:
            row("W4", c, variant, labels4[variant], p4, unit="MiB")
    # W5
    conns, n5 = cfg["w5_conns"], cfg["w5_n"]
    k5 = max(1, min(n5, cfg["check_n"] // conns))
    p5 = dict(
        small,
        conns=conns,
        n=n5,
        warmup=warm,
        expect_ops=conns * n5,
        expect_bytes=conns * n5 * SMALL_SIZE,
        check={"n": k5, "expect_ops": conns * k5, "expect_bytes": conns * k5 * SMALL_SIZE},
    )
    row("W5", "dugong", "poll", "selectors loop, co_ generators", p5, unit="req")
    row("W5", "dugong", "aio", "asyncio + AioFuture", p5, unit="req")
    row("W5", "dugong-3.8.2", "poll", "selectors loop, co_ generators", p5, unit="req")
    row("W5", "dugong-3.8.2", "aio", "asyncio + AioFuture", p5, unit="req")
    row("W5", "http.client", "threads", f"{conns} threads", p5, unit="req")
    row("W5", "httpx-async", "async", "asyncio", p5, unit="req")
    row("W5", "aiohttp", "async", "asyncio", p5, unit="req")
    row("W5", "floor", "poll", "selectors loop, pre-built", p5, unit="req")
    # W7
    size7 = cfg["w7_size"]
    check7 = min(size7, cfg["check_size"])
    p7 = {
        "host": "127.0.0.1",
        "port": sink_port,
        "size": size7,
        "warmup": 0,
        "expect_ops": 1,
        "expect_bytes": size7,
        "check": {"size": check7, "digest": stream_digest(check7), "expect_bytes": check7},
    }
    p7i = dict(small, warmup=0)
    labels7 = {
        "httpx": "iter_bytes(64 KiB)",
        "httpx-async": "iter_bytes(64 KiB)",
        "aiohttp": "content.read(64 KiB)",
        "pycurl": "write callback",
        "floor": "recv_into(64 KiB buffer)",
    }
    for c in CLIENTS:
        row("W7", c, "stream", labels7.get(c, "read(64 KiB)"), p7, unit="MiB")
    for c in ("dugong", "dugong-3.8.2", "http.client", "urllib3", "floor"):
        row("W7", c, "idle", "idle connection", p7i, unit="idle")
    return plan


# --------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------


class Bench:
    def __init__(
        self, args, cfg: dict, python: str, venv: str, install_status: dict, workdir: str
    ):
        self.args = args
        self.cfg = cfg
        self.python = python
        self.venv = venv
        self.install_status = install_status
        self.workdir = workdir
        self.workers: dict[str, Worker] = {}
        self.unavailable: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        self.errors: list[str] = []
        #: port -> PID of the process serving it, whose CPU time each timed run records
        self.servers: dict[int, int] = {}
        #: the CPUs the client workers run on (None: wherever the system puts them)
        self.client_cpus: set[int] | None = None

    # workers ----------------------------------------------------------------

    def _new_worker(self, name: str) -> Worker:
        """Start the worker process of client *name* (on the client CPUs if pinned)."""
        return Worker(name, self.python, worker_env(name, self.venv), self.workdir,
                      self.cfg["timeout"], self.client_cpus)

    def start_workers(self, clients: list[str]) -> None:
        pending = {}
        for name in clients:
            pkg = {"httpx-async": "httpx"}.get(name, name)
            status = self.install_status.get(pkg, "ok")
            if status != "ok":
                self.unavailable[name] = status
                continue
            if name == "dugong-3.8.2" and not os.path.isdir(
                os.path.join(self.venv, REFERENCE_DIR_NAME, "dugong")
            ):
                self.unavailable[name] = f"{REFERENCE} is not installed in the benchmark venv"
                continue
            pending[name] = self._new_worker(name)
        for name, w in pending.items():
            self._greet(name, w)

    def _greet(self, name: str, w: Worker) -> None:
        try:
            hello = w.greet()
        except WorkerFailed as exc:
            hello = {"unavailable": str(exc)}
        if "unavailable" in hello:
            reason = hello["unavailable"]
            w.stop()
            if name in CORE_CLIENTS:
                self.error(f"{name}: cannot start: {reason}")
            self.unavailable[name] = reason
            log(f"{name}: unavailable ({reason})")
        else:
            self.workers[name] = w
            self.versions[name] = hello.get("version", "?")

    def worker(self, name: str) -> Worker | None:
        w = self.workers.get(name)
        if w is not None and not w.alive():
            log(f"{name}: worker died, starting a new one")
            w.stop()
            del self.workers[name]
            w = self._new_worker(name)
            self._greet(name, w)
            w = self.workers.get(name)
        return w

    def stop_workers(self) -> None:
        for w in self.workers.values():
            w.stop()
        self.workers.clear()

    def error(self, msg: str) -> None:
        self.errors.append(msg)
        log(f"ERROR: {msg}")

    def row_failed(self, row: dict, msg: str, unsupported: bool = False) -> None:
        """Record a failure: fatal for core clients (or with --strict)."""
        fatal = row["client"] in CORE_CLIENTS or self.args.strict
        if unsupported and row["client"] != "dugong":
            row["status"] = "n/a"
            row["reason"] = msg
            return
        if row["client"] == "dugong-3.8.2" and not self.args.strict:
            # the reference is used as it is, unpatched: what fails on this
            # Python is reported, with the reason
            row["status"] = "unavailable"
            row["reason"] = msg
            log(f"{row['id']}: unavailable: {msg.splitlines()[0]}")
            return
        row["status"] = "error"
        row["reason"] = msg
        if fatal:
            self.error(f"{row['id']}: {msg}")
        else:
            log(f"{row['id']}: {msg} (reported as a row, not fatal)")

    # one workload -----------------------------------------------------------

    def run_workload(self, w: str, rows: list[dict]) -> None:
        cfg = self.cfg
        t0 = time.monotonic()
        log(f"{w}: {bench_report.title(w, cfg)}")
        active = []
        for row in rows:
            row["samples"] = []
            if row["client"] in self.unavailable:
                row["status"] = "unavailable"
                row["reason"] = self.unavailable[row["client"]]
                continue
            worker = self.worker(row["client"])
            if worker is None:
                row["status"] = "unavailable"
                row["reason"] = self.unavailable.get(row["client"], "worker did not start")
                continue
            params = {k: v for k, v in row["params"].items() if k != "small_body"}
            if "small_body" in row["params"]:
                params["small_body_hex"] = row["params"]["small_body"].hex()
            try:
                ans = worker.call(
                    {
                        "op": "prepare",
                        "row": row["id"],
                        "workload": w,
                        "variant": row["variant"],
                        "params": params,
                    }
                )
            except WorkerFailed as exc:
                self.row_failed(row, str(exc))
                continue
            if "ok" in ans:
                row["status"] = "ok"
                active.append(row)
            elif "unsupported" in ans:
                self.row_failed(row, ans["unsupported"], unsupported=True)
            else:
                self.row_failed(
                    row,
                    ans.get("error", "?")
                    + ("\n" + ans["traceback"] if "traceback" in ans else ""),
                )
        for rep in range(cfg.get("reps_by_workload", {}).get(w, cfg["reps"])):
            k = rep % len(active) if active else 0
            for row in active[k:] + active[:k]:
                if row["status"] != "ok":
                    continue
                s = row["samples"]
                if len(s) >= cfg["slow_reps"] and min(x["wall"] for x in s) > cfg["slow"]:
                    continue  # a slow row: fewer repetitions keep the full run short
                worker = self.worker(row["client"])
                server = self.servers.get(row["params"].get("port"))
                busy0 = process_cpu(server)
                try:
                    ans = (
                        worker.call({"op": "run", "row": row["id"]})
                        if worker
                        else {"error": "worker gone"}
                    )
                except WorkerFailed as exc:
                    ans = {"error": str(exc)}
                if "error" in ans:
                    self.row_failed(row, ans["error"])
                    continue
                busy1 = process_cpu(server)
                if busy0 is not None and busy1 is not None:
                    # the server idles outside the timed part, so this is its CPU for the run
                    ans["server_cpu"] = cpu_between(busy0, busy1)
                row["samples"].append(ans)
        for row in active:
            worker = self.worker(row["client"])
            if worker is None:
                continue
            try:
                worker.call({"op": "close", "row": row["id"]}, timeout=30)
            except WorkerFailed as exc:
                log(f"{row['id']}: close failed: {exc}")
        log(f"{w}: {time.monotonic() - t0:.1f} s")

    # W6: import time ---------------------------------------------------------

    def run_w6(self, clients: list[str]) -> list[dict]:
        cfg = self.cfg
        log(f"W6: {bench_report.title('W6', cfg)}")
        base_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONSTARTUP")
        }
        base_env["PYTHONPYCACHEPREFIX"] = os.path.join(self.venv, "pycache-w6")
        ref_env = dict(base_env, PYTHONPATH=os.path.join(self.venv, REFERENCE_DIR_NAME))
        cmds = []
        if "dugong" in clients:
            cmds.append(("dugong", "import dugong", REPO, base_env))
        if "dugong-3.8.2" in clients and "dugong-3.8.2" not in self.unavailable:
            cmds.append(("dugong-3.8.2", "import dugong", self.workdir, ref_env))
        cmds.append(("http.client", "import http.client", REPO, base_env))
        cmds.append(("floor", "pass", REPO, base_env))
        rows = []
        for name, code, cwd, env in cmds:
            row = {
                "id": f"W6/{name}",
                "workload": "W6",
                "client": name,
                "variant": "import",
                "label": f"python -c {code!r}",
                "unit": "ms",
                "samples": [],
                "status": "ok",
            }
            rows.append(row)
            # validate: the import works, and from the right place
            check = f"{code}\nimport sys, os\n"
            check += "m = sys.modules.get('dugong') or sys.modules.get('http')\n"
            check += "print(os.path.abspath(getattr(m, '__file__', '') or '') if m else '-')"
            res = subprocess.run(
                [self.python, "-c", check],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            where = res.stdout.strip()
            expect = {
                "dugong": REPO,
                "dugong-3.8.2": os.path.join(self.venv, REFERENCE_DIR_NAME),
            }.get(name)
            if res.returncode != 0:
                self.row_failed(row, f"import failed: {res.stderr.strip()[-400:]}")
            elif expect and not where.startswith(expect + os.sep):
                self.row_failed(row, f"imported from {where}, not from {expect}")
            else:
                for _ in range(2):  # warm-up: byte-code caches, page cache
                    subprocess.run([self.python, "-c", code], cwd=cwd, env=env, check=False)
        for _ in range(cfg["w6_runs"]):
            for row, (_name, code, cwd, env) in zip(rows, cmds, strict=True):
                if row["status"] != "ok":
                    continue
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                res = subprocess.run([self.python, "-c", code], cwd=cwd, env=env, check=False)
                t1 = time.perf_counter()
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                if res.returncode != 0:
                    self.row_failed(row, f"exit status {res.returncode}")
                    continue
                cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                row["samples"].append({"wall": t1 - t0, "cpu": cpu, "ops": 1, "bytes": 0})
        return rows


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Benchmark dugong against other HTTP clients on 127.0.0.1."
    )
    ap.add_argument(
        "--quick", action="store_true", help="small counts and sizes, 2 repetitions (CI)"
    )
    ap.add_argument("--reps", type=int, help="repetitions per row (default 5, quick 2)")
    ap.add_argument("--clients", help="comma-separated subset of: " + ",".join(CLIENTS))
    ap.add_argument("--workloads", help="comma-separated subset of W1..W7")
    ap.add_argument(
        "--json", help="results file (default bench-results.json, quick: bench-results-quick.json)"
    )
    ap.add_argument(
        "--chart", help="PNG chart (default doc/_static/bench.png, quick: bench-results-quick.png)"
    )
    ap.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    ap.add_argument("--pin", action="store_true",
                    help="run the servers on the first CPU and the clients on the others")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--venv", help="benchmark virtualenv (default .venv-bench in the repository)")
    ap.add_argument(
        "--no-setup", action="store_true", help="install nothing (no venv, pip or apt-get)"
    )
    ap.add_argument("--reinstall", action="store_true", help="run the pip installs again")
    ap.add_argument(
        "--no-nginx",
        action="store_true",
        help="serve the GETs from the upload sink instead of nginx (results not comparable)",
    )
    ap.add_argument(
        "--strict", action="store_true", help="an error of any client makes the run fail"
    )
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    cfg = dict(QUICK if args.quick else FULL)
    if args.reps:
        cfg["reps"] = args.reps
        cfg.pop("reps_by_workload", None)
    for key in ("w3_size", "w4_size", "w7_size"):
        cfg[key + "_mib"] = cfg[key] // MiB
    clients = CLIENTS if not args.clients else [c.strip() for c in args.clients.split(",")]
    unknown = set(clients) - set(CLIENTS)
    if unknown:
        sys.exit(f"unknown clients: {', '.join(sorted(unknown))}")
    workloads = ["W1", "W2", "W3", "W4", "W5", "W6", "W7"]
    if args.workloads:
        workloads = [w.strip().upper() for w in args.workloads.split(",")]
    suffix = "-quick" if args.quick else ""
    json_path = args.json or os.path.join(REPO, f"bench-results{suffix}.json")
    chart_path = args.chart or (
        os.path.join(REPO, "bench-results-quick.png")
        if args.quick
        else os.path.join(REPO, "doc", "_static", "bench.png")
    )
    venv = os.path.abspath(
        args.venv or os.environ.get("BENCH_VENV") or os.path.join(REPO, ".venv-bench")
    )

    # stop cleanly on SIGTERM as on Ctrl-C: the finally blocks stop our processes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    workdir = tempfile.mkdtemp(prefix="dugong-bench-")
    nginx = sink = None
    bench = None
    try:
        if args.no_setup:
            python = venv_python(venv) if os.path.exists(venv_python(venv)) else sys.executable
            install_status = {}
        else:
            python, install_status = setup_venv(venv, args.reinstall)
        setup_done = time.monotonic()

        # files for nginx, from the same pattern as every other body
        www = os.path.join(workdir, "www")
        os.makedirs(os.path.join(www, "large"))
        small_body = pattern()[:SMALL_SIZE]
        with open(os.path.join(www, "1k"), "wb") as fh:
            fh.write(small_body)
        if "W3" in workloads:
            write_pattern_file(os.path.join(www, "large", "large.bin"), cfg["w3_size"])
        for root, dirs, files in os.walk(workdir):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)

        sink = Sink(python)
        sink_port = sink.start()
        nginx_bin = None
        if not args.no_nginx:
            nginx_bin = ensure_nginx(os.path.join(workdir, "apt.log"), not args.no_setup)
        server_note = ""
        if nginx_bin:
            nginx = Nginx(nginx_bin, workdir)
            try:
                nginx_port = nginx.start()
                server_note = f"nginx {nginx.version()}"
            except RuntimeError as exc:
                log(f"nginx failed: {exc}")
                nginx = None
        if nginx is None:
            # fallback: the sink also serves /1k and /gen/N (W3 then uses /gen)
            nginx_port = sink_port
            server_note = "the upload sink (nginx unavailable)"
            log("nginx unavailable: serving GETs from the upload sink; results are not comparable")
        log(
            f"servers: static files on 127.0.0.1:{nginx_port} ({server_note}), "
            f"sink on 127.0.0.1:{sink_port}"
        )

        plan = build_plan(cfg, nginx_port, sink_port, small_body)
        if nginx is None:
            for row in plan.get("W3", []):
                row["params"] = dict(row["params"], path=f"/gen/{cfg['w3_size']}")

        bench = Bench(args, cfg, python, venv, install_status, workdir)
        bench.servers[sink_port] = sink.proc.pid
        if nginx is not None and nginx.worker_pid() is not None:
            bench.servers[nginx_port] = nginx.worker_pid()
        if args.pin:
            # servers on the first CPU, clients on the others: no client ever waits for
            # the scheduler to move the server off its core, or the other way round
            cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            if len(cpus) >= 2 and all(pin_process(pid, {cpus[0]})
                                      for pid in set(bench.servers.values())):
                bench.client_cpus = set(cpus[1:])
                log(f"servers pinned to CPU {cpus[0]}, clients to {sorted(bench.client_cpus)}")
        bench.start_workers(clients)
        results = []
        for w in workloads:
            if w == "W6":
                t6 = time.monotonic()
                results.extend(bench.run_w6(clients))
                log(f"W6: {time.monotonic() - t6:.1f} s")
                continue
            rows = [r for r in plan.get(w, []) if r["client"] in clients]
            bench.run_workload(w, rows)
            results.extend(rows)
        bench.stop_workers()
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
    meta = {
        "mode": "quick" if args.quick else "full",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "server": server_note,
        "versions": bench.versions,
        "unavailable": bench.unavailable,
        "config": {k: v for k, v in cfg.items() if not k.endswith("_mib")},
        "setup_seconds": round(setup_done - t_start, 1),
    }
    report = bench_report.analyse(results, cfg)
    text = bench_report.markdown(report, meta, cfg)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    with open(json_path, "w") as fh:
        json.dump(
            {
                "meta": meta,
                "rows": report["rows"],
                "goals": report["goals"],
                "errors": bench.errors,
            },
            fh,
            indent=1,
        )
    log(f"results written to {os.path.relpath(json_path)}")
    if not args.no_chart:
        os.makedirs(os.path.dirname(os.path.abspath(chart_path)), exist_ok=True)
        res = subprocess.run(
            [python, os.path.join(BENCH_DIR, "bench_report.py"), "chart", json_path, chart_path],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode == 0:
            log(f"chart written to {os.path.relpath(chart_path)}")
        else:
            log(
                "no chart ("
                + (
                    res.stderr.strip().splitlines()[-1]
                    if res.stderr.strip()
                    else "matplotlib failed"
                )
                + ")"
            )
    log(f"done in {time.monotonic() - t_start:.1f} s (set-up {setup_done - t_start:.1f} s)")
    if bench.errors:
        log(f"{len(bench.errors)} error(s):")
        for e in bench.errors:
            log("  " + e.splitlines()[0])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
