"""The workloads, each written once, and the worker process that runs one client's rows
(``python bench_workloads.py CLIENT``, driven by bench.py through JSON lines)."""

import gc
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
import traceback
import tracemalloc

from bench_adapters import ADAPTERS, READ_SIZE, WrongAnswer
from bench_servers import PATTERN_SIZE, PIECE_SIZE, SMALL_SIZE, page_aligned, pattern
from bench_servers import stream_digest as digest


def piece_iter(size: int):
    """The upload: *size* bytes of the pattern in 64 KiB pieces."""
    pieces = [pattern()[i : i + PIECE_SIZE] for i in range(0, PATTERN_SIZE, PIECE_SIZE)]
    for i in range(size // PIECE_SIZE):
        yield pieces[i % len(pieces)]


def cpu_time(who: int = resource.RUSAGE_SELF) -> float:
    """The CPU seconds, user and system, of this process (all threads) or its children."""
    return sum(resource.getrusage(who)[:2])


class Tally:
    """The answers to GETs of the 1 KiB file: counted and, in a validation run, compared."""

    def __init__(self, check: bool):
        self.expect, self.sizes = pattern()[:SMALL_SIZE] if check else None, []

    def take(self, status, body) -> None:
        if status != 200 or (self.expect is not None and body != self.expect):
            raise WrongAnswer(
                f"status {status} and a body of {len(body)} bytes that differs from the 1 KiB file"
            )
        self.sizes.append(len(body))

    def result(self, want: int) -> dict:
        ops, nbytes = len(self.sizes), sum(self.sizes)
        if (ops, nbytes) != (want, want * SMALL_SIZE):
            raise WrongAnswer(f"{ops} answers of {nbytes} bytes in all, not {want} of 1 KiB")
        return {"ops": ops, "bytes": nbytes}


class Stream:
    """A streamed body: counted and, in a validation run, digested."""

    def __init__(self, check: bool):
        self.n, self.hash = 0, hashlib.sha256() if check else None

    def take(self, data) -> None:
        self.n += len(data)
        if self.hash is not None:
            self.hash.update(data)

    def result(self, status, size: int) -> dict:
        wrong = self.hash is not None and self.hash.hexdigest() != digest(size)
        if status != 200 or self.n != size or wrong:
            raise WrongAnswer(
                f"status {status} and {self.n} body bytes that differ from the file's {size}"
            )
        return {"ops": 1, "bytes": size}


class Workload:
    """TITLE: its report's heading; rows(a): adapter *a*'s (variant, label) pairs, by default
    its table named OFFERS; setup() readies a row, run() runs it once, every answer checked
    or not; ``fresh``: a new connection for each timed run."""

    TITLE, fresh, OFFERS = "", False, ""

    def rows(self, a):
        return list(getattr(a, self.OFFERS).items())

    def setup(self, a, variant: str, p: dict) -> None:
        a.connect()


class W1(Workload):
    TITLE = "{w1_n} sequential keep-alive GETs of 1 KiB on one connection"

    def rows(self, a):
        return [("seq", "sequential")]

    def run(self, a, variant, p, check):
        tally, get, path = Tally(check), a.get, p["path"]
        for _ in range(p["n"]):
            tally.take(*get(path))
        return tally.result(p["n"])


class W2(Workload):
    """Pipelined GETs on one connection, at depths 16 and 64: ``batch`` sends depth
    requests, then reads depth answers; ``co`` keeps depth in flight (``window``)."""

    TITLE = "{w2_n} pipelined GETs of 1 KiB on one connection"

    def rows(self, a):
        return [
            (f"{kind}-d{d}", f"{a.WINDOW}, depth {d}" if kind == "co" else f"send x{d}, read x{d}")
            for d in (16, 64)
            for kind in ("co", "batch")
        ]

    def run(self, a, variant, p, check):
        kind, depth = variant.split("-d")
        n, depth, path, tally = p["n"], int(depth), p["path"], Tally(check)
        if kind == "co":
            a.window(path, n, depth, tally.take)
            return tally.result(n)
        for done in range(0, n, depth):
            for _ in range(min(depth, n - done)):
                a.send(path)
            for _ in range(min(depth, n - done)):
                tally.take(*a.recv())
        return tally.result(n)


class W3(Workload):
    TITLE = "download of {w3_mib} MiB: read(64 KiB), readinto a 64 KiB buffer"
    fresh, OFFERS = True, "DOWNLOADS"

    def setup(self, a, variant, p):
        a.connect()
        a.buf = memoryview(page_aligned(READ_SIZE)) if variant == "readinto" else None

    def run(self, a, variant, p, check):
        stream = Stream(check)
        return stream.result(a.download(p["path"], a.buf, stream.take), p["size"])


class W4(Workload):
    TITLE = "upload of {w4_mib} MiB in 64 KiB pieces"
    fresh, OFFERS = True, "UPLOADS"

    def run(self, a, variant, p, check):
        size, headers = p["size"], {"X-Digest": "1"} if check else {}
        status, body = a.upload(variant, size, piece_iter(size), headers)
        want = b"%d %s\n" % (size, digest(size).encode() if check else b"-")
        if status != 200 or body != want:
            raise WrongAnswer(f"the sink answered {status} {body[:80]!r}, not {want!r}")
        return {"ops": 1, "bytes": size}


class W5(Workload):
    TITLE = "{w5_conns} connections x {w5_n} GETs of 1 KiB, concurrently"
    OFFERS = "MANY"

    def setup(self, a, variant, p):
        a.runner = a.many(variant, p["tasks"], p["path"])

    def run(self, a, variant, p, check):
        tally = Tally(check)
        a.runner(p["n"], tally.take)
        return tally.result(p["n"] * p["tasks"])


class W8(W5):
    TITLE = "{w8_tasks} tasks x {w8_n} GETs of 1 KiB through at most {w8_conns} connections"

    def rows(self, a):
        pooled, pipelines = a.POOLED, a.PIPELINES
        return [(f"{v}-p{k}", f"{pooled[v]}, pipeline {k}") for v in pooled for k in pipelines]

    def setup(self, a, variant, p):
        idiom, k = variant.rsplit("-p", 1)
        url = f"http://{a.host}:{a.port}{p['path']}"
        a.runner = a.pooled(idiom, p["tasks"], url, p["conns"], int(k))


class W6(Workload):
    TITLE = "import in a fresh process, best of the repetitions"

    def rows(self, a):
        return [("import", f"python -c {a.IMPORT!r}")]

    def setup(self, a, variant, p):
        pass

    def run(self, a, variant, p, check):
        env = dict(os.environ, PYTHONPYCACHEPREFIX=p["pycache"])  # outside the work tree
        before = cpu_time(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", a.IMPORT], env=env, check=True)
        return {"ops": 1, "bytes": 0, "cpu": cpu_time(resource.RUSAGE_CHILDREN) - before}


class W7(Workload):
    TITLE = "memory: streaming {w7_mib} MiB with read(64 KiB); one idle connection"

    def rows(self, a):
        return [("stream", next(iter(a.DOWNLOADS.values()))), ("idle", "idle connection")]

    def setup(self, a, variant, p):
        if variant == "stream":
            a.connect()

    def run(self, a, variant, p, check):
        gc.collect()
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            if variant == "idle":
                for _ in range(8):
                    a.connect()
                    a.get(p["path"])
                gc.collect()
                idle = (tracemalloc.get_traced_memory()[0] - start) / 8
                return {"ops": 8, "bytes": 0, "idle": idle}
            stream, size = Stream(check), p["size"]
            status = a.download(f"/gen/{size}", None, stream.take)
            peak = tracemalloc.get_traced_memory()[1] - start
            return {**stream.result(status, size), "peak": peak}
        finally:
            tracemalloc.stop()
            if variant == "idle":
                a.close()


WORKLOADS = {w.__name__: w() for w in (W1, W2, W3, W4, W5, W6, W7, W8)}


class Row:
    """One client doing one workload variant, in this worker."""

    def __init__(self, adapter, workload: Workload, variant: str, params: dict):
        self.a, self.w, self.variant, self.p = adapter, workload, variant, params

    def prepare(self) -> None:
        """Set up, run once validating every answer, warm up."""
        self.w.setup(self.a, self.variant, self.p)
        for check in [True] + [False] * self.p.get("warmup", 0):
            self.w.run(self.a, self.variant, self.p, check)

    def timed(self) -> dict:
        """One timed repetition. W3 and W4 first get a new connection, outside the
        clock: a TCP connection's receive buffer is sized by its early traffic."""
        if self.w.fresh:
            self.a.close()
            self.w.setup(self.a, self.variant, self.p)
        gc.collect()
        c0, t0 = cpu_time(), time.perf_counter()
        result = self.w.run(self.a, self.variant, self.p, False)
        t1, c1 = time.perf_counter(), cpu_time()
        return {"wall": t1 - t0, "cpu": c1 - c0, **result}  # W6 has a CPU time of its own


def serve(name: str, send) -> None:
    """Say the client's version and rows; then prepare, run (timed) or close a row a line."""
    cls = ADAPTERS[name]
    try:
        lib, version = cls.load()
    except Exception as exc:  # its rows are unavailable (dugong's depend on its version)
        lib, version = None, f"{type(exc).__name__}: {exc}"
    probes = [cls(lib, None, 0)] if lib or not name.startswith("dugong") else []
    offers = [[w, *row] for a in probes for w in cls.WORKLOADS for row in WORKLOADS[w].rows(a)]
    send({"version" if lib else "unavailable": version, "rows": offers})
    if lib is None:
        return
    rows: dict[str, Row] = {}
    for line in sys.stdin:
        msg = json.loads(line)
        rid = msg["row"]
        try:
            if msg["op"] == "prepare":
                adapter = cls(lib, "127.0.0.1", msg["params"]["port"])
                rows[rid] = Row(adapter, WORKLOADS[msg["workload"]], msg["variant"], msg["params"])
                rows[rid].prepare()
            elif msg["op"] == "close":
                rows.pop(rid).a.close()
            send(rows[rid].timed() if msg["op"] == "run" else {"ok": True})
        except Exception as exc:  # a WrongAnswer, or any failure of the client
            if rid in rows:
                rows.pop(rid).a.close()
            error = f"{type(exc).__name__}: {exc}"
            send({"error": error, "traceback": traceback.format_exc(limit=8)})


if __name__ == "__main__":
    # answers go to a private copy of standard output; what libraries print, to stderr
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    serve(sys.argv[1], lambda obj: out.write(json.dumps(obj) + "\n"))
