"""Medians, goals, markdown tables and the chart of a benchmark run; the chart by
``python bench_report.py RESULTS.json OUT.png`` with the benchmark venv (matplotlib)."""

import json
import statistics
import sys

KiB, MiB, X = 1 << 10, 1 << 20, "\u00d7"
TITLES = {
    "W1": "{w1_n} sequential keep-alive GETs of 1 KiB on one connection",
    "W2": "{w2_n} pipelined GETs of 1 KiB on one connection",
    "W3": "download of {w3_mib} MiB: read(64 KiB), readinto a 64 KiB buffer",
    "W4": "upload of {w4_mib} MiB in 64 KiB pieces",
    "W5": "{w5_conns} connections x {w5_n} GETs of 1 KiB, concurrently",
    "W6": "import in a fresh process, best of the repetitions",
    "W7": "memory: streaming {w7_mib} MiB with read(64 KiB); one idle connection",
    "W8": "{w8_tasks} tasks x {w8_n} GETs of 1 KiB through at most {w8_conns} connections",
}
#: the rate and CPU columns of workloads counted in requests or in MiB, and the CPU scale
UNITS = {"req": ("req/s", "CPU µs/req", 1e6), "MiB": ("MiB/s", "CPU ms/MiB", 1e3)}

#: dugong's goals: (workload, dugong's row, measure, compared with, bar). A rate
#: ("median") is better higher, "cpu", "best" (W6), "peak" and "idle" (W7) lower. The
#: ratio to a client's row of the same pattern (`match`), to the fastest row but the
#: floor's ("best client"), or (None) the value itself is held against the bar.
GOALS = [
    ("W1", "seq", "median", "floor", 0.95),
    ("W1", "seq", "median", "http.client", 3.0),
    ("W1", "seq", "cpu", "http.client", 0.3),
    ("W2", "co-d16", "median", "floor", 0.9),
    ("W2", "batch-d16", "median", "floor", 0.9),
    ("W2", "co-d64", "median", "floor", 0.95),
    ("W2", "batch-d64", "median", "floor", 0.95),
    ("W3", "read", "cpu", "http.client", 1.1),
    ("W3", "read", "median", "best client", 0.9),
    ("W3", "readinto", "cpu", "floor", 1.1),
    ("W4", "plain", "median", "floor", 0.9),
    ("W4", "expect100", "median", "floor", 0.9),
    ("W4", "chunked", "median", "floor", 0.9),
    ("W5", "loop", "median", "floor", 0.8),
    ("W5", "aio", "median", "aiohttp", 3.0),
    ("W5", "anyio-asyncio", "median", "aiohttp", 2.0),
    ("W6", "import", "best", "http.client", 1.0),
    ("W7", "stream", "peak", None, 1024 * KiB),
    ("W7", "idle", "idle", None, 72 * KiB),  # BUFFER_SIZE + 8 KiB
    ("W8", "loop-p1", "median", "aiohttp", 2.0),
    ("W8", "loop-p16", "median", "aiohttp", 5.0),
    ("W8", "loop-p16", "median", "floor", 0.6),
    ("W8", "threads-p1", "median", "urllib3", 1.5),
]
MEASURES = {
    "median": "rate",
    "cpu": "CPU",
    "best": "import time",
    "peak": "peak memory",
    "idle": "memory",
}


def unit(w: str) -> str:
    return "MiB" if w in ("W3", "W4", "W7") else "req"


def stats(row: dict) -> None:
    """The medians and ranges of a row's samples, put into the row."""
    s = row.get("samples") or []
    if row["status"] == "ok" and not s:
        row.update(status="error", reason="no sample")
    if not s:
        return
    if row["workload"] == "W6":
        row.update(
            best=min(x["wall"] for x in s) * 1e3,
            median=statistics.median(x["wall"] for x in s) * 1e3,
            cpu=statistics.median(x["cpu"] for x in s) * 1e3,
        )
        return
    if "idle" in s[0]:
        row["idle"] = statistics.median(x["idle"] for x in s)
        return
    per = [x["ops"] if unit(row["workload"]) == "req" else x["bytes"] / MiB for x in s]
    rates = [k / x["wall"] for k, x in zip(per, s, strict=True)]
    cpus = [x["cpu"] / k * UNITS[unit(row["workload"])][2] for k, x in zip(per, s, strict=True)]
    busy = [x["server_cpu"] / x["wall"] for x in s if "server_cpu" in x]  # share of a core
    row.update(
        median=statistics.median(rates),
        min=min(rates),
        max=max(rates),
        cpu=statistics.median(cpus),
        server_busy=statistics.median(busy) if len(busy) == len(s) else None,
    )
    if "peak" in s[0]:
        row["peak"] = max(x["peak"] for x in s)


def ok(row: dict | None, key: str = "median") -> bool:
    return row is not None and row["status"] == "ok" and row.get(key) is not None


def match(rows: list[dict], client: str, like: dict) -> dict | None:
    """*client*'s row to compare *like* with, in the same workload: the same variant,
    else the same last part of it (``-p16`` in W8), else the client's only row."""
    cands = [r for r in rows if r["client"] == client and r["workload"] == like["workload"]]
    last = like["variant"].rsplit("-", 1)[-1]
    for found in (
        [r for r in cands if r["variant"] == like["variant"]],
        [r for r in cands if r["variant"].rsplit("-", 1)[-1] == last],
        cands,
    ):
        if len(found) == 1:
            return found[0]
    return None


def ratio(a: dict | None, b: dict | None, key: str = "median") -> float | None:
    return a[key] / b[key] if ok(a, key) and ok(b, key) and b[key] else None


def meets(value: float, key: str, bar: float) -> bool:
    return value >= bar if key == "median" else value <= bar


def evaluate(rows: list[dict]) -> list[dict]:
    """Each goal's verdict: met, not met, n/a (no data), or out of reach: not met, and
    the raw-socket floor of the same pattern does not reach the bar either."""
    goals = []
    for w, variant, key, other, bar in GOALS:
        row = next(
            (
                r
                for r in rows
                if r["workload"] == w and r["client"] == "dugong" and r["variant"] == variant
            ),
            None,
        )
        if row is None:
            continue
        ref = match(rows, other, row) if other else None
        if other == "best client":
            ref = max(
                (r for r in rows if r["workload"] == w and r["client"] != "floor" and ok(r)),
                key=lambda r: r["median"],
                default=None,
            )
        value = ratio(row, ref, key) if other else (row[key] if ok(row, key) else None)
        # how far the floor gets, where it is not the row compared with (ref None: no ratio)
        reach = ratio(match(rows, "floor", row), ref, key) if other != "floor" else None
        if value is None:
            verdict = "n/a"
        elif meets(value, key, bar):
            verdict = "met"
        else:
            verdict = "not met" if reach is None or meets(reach, key, bar) else "out of reach"
        against = f"{other} ({ref['client']})" if other == "best client" and ref else other
        goals.append(
            {
                "row": row["id"],
                "label": row["label"],
                "key": key,
                "bar": bar,
                "against": against,
                "value": value,
                "reach": reach,
                "verdict": verdict,
            }
        )
    return goals


def analyse(rows: list[dict]) -> list[dict]:
    for r in rows:
        stats(r)
    for r in rows:
        floor = match(rows, "floor", r)
        r.update(x_floor=ratio(r, floor), cpu_x_floor=ratio(r, floor, "cpu"))
    return evaluate(rows)


def num(v) -> str:
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) >= 1 else f"{v:.3f}".rstrip("0").rstrip(".")


def cells(r: dict, versions: dict) -> list[str]:
    """One line of a workload's table (of a row that failed: its status and reason)."""
    w, client = r["workload"], r["client"]
    if client == "floor":
        client = "interpreter start-up" if w == "W6" else "raw-socket floor"
    line = [
        f"**dugong {versions.get('dugong')}**" if client == "dugong" else client,
        f"`{r['label']}`" if w == "W6" else r["label"],
    ]
    if r["status"] != "ok":
        reason = (r.get("reason") or "").strip().split("\n")[0][:160].replace("|", "/")
        return [*line, f"{r['status']}: {reason}"]
    if w == "W6":
        return [*line, f"{r['best']:.1f}", f"{r['median']:.1f}", f"{r['cpu']:.1f}"]
    if w == "W7" and "idle" in r:
        return [*line, f"{r['idle'] / KiB:.1f} KiB per connection", "—"]
    if w == "W7":
        return [*line, f"peak {r['peak'] / KiB:.1f} KiB above the start", num(r["median"])]
    busy = "—" if r["server_busy"] is None else f"{r['server_busy']:.0%}"
    x_floor = ["—" if v is None else f"{v:.2f}{X}" for v in (r["x_floor"], r["cpu_x_floor"])]
    return [
        *line,
        num(r["median"]),
        f"{num(r['min'])}\u2013{num(r['max'])}",
        num(r["cpu"]),
        busy,
        *x_floor,
    ]


def goal_cells(g: dict) -> list[str]:
    met = g["verdict"] == "met"
    rel = (">=" if met else "<") if g["key"] == "median" else ("<=" if met else ">")
    if g["value"] is None:
        value = "—"
    elif g["against"] is None:
        value = f"{g['value'] / KiB:.1f} {rel} {g['bar'] / KiB:.0f} KiB"
    else:
        value = f"{g['value']:.2f}{X} {rel} {g['bar']:.2f}{X}"
    if g["verdict"] == "out of reach":
        value += f" (the floor: {g['reach']:.2f}{X})"
    goal = MEASURES[g["key"]] + (f" vs {g['against']}" if g["against"] else "")
    verdict = g["verdict"] if g["verdict"] in ("met", "n/a") else f"**{g['verdict']}**"
    return [g["row"][:2], g["label"], goal, value, verdict]


def table(header: list[str], lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(line) + " |" for line in [header, ["---"] * len(header), *lines]]


def markdown(rows: list[dict], goals: list[dict], meta: dict) -> str:
    cfg = meta["config"]
    out = [
        f"# dugong benchmark ({meta['mode']} mode)",
        "",
        f"Python {meta['python']} on {meta['platform']}, {meta['cpus']} CPUs; server: "
        f"{meta['server']}; {cfg['reps']} repetitions per row"
        + "".join(f", {n} in {w}" for w, n in cfg["reps_by"].items())
        + ", interleaved; everything on 127.0.0.1.",
        "Clients: "
        + ", ".join(f"{k} {v}" for k, v in sorted(meta["versions"].items()) if k != "floor")
        + ".",
    ]
    for w in dict.fromkeys(r["workload"] for r in rows):
        rate, cpu, _ = UNITS[unit(w)]
        header = {
            "W6": ["client", "command", "best ms", "median ms", "CPU ms"],
            "W7": ["client", "measure", "traced memory", "MiB/s (under tracemalloc)"],
        }.get(
            w,
            [
                "client",
                "variant",
                f"{rate} (median)",
                "range",
                cpu,
                "server CPU",
                f"{X} floor",
                f"CPU {X} floor",
            ],
        )
        out += [
            "",
            f"## {w}: {TITLES[w].format(**cfg)}",
            "",
            *table(header, [cells(r, meta["versions"]) for r in rows if r["workload"] == w]),
        ]
    if goals:
        met, far = (sum(g["verdict"] == v for g in goals) for v in ("met", "out of reach"))
        out += [
            "",
            f"## Goals: {met} of {len(goals)} met, {far} out of reach",
            "",
            *table(
                ["workload", "dugong row", "goal", "measured", "verdict"], map(goal_cells, goals)
            ),
        ]
    return "\n".join(out) + "\n"


def chart(results_path: str, out_path: str) -> None:
    """One panel per workload, a bar per row: the median rate and its range (W6: the
    best time; W7: traced KiB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(results_path) as fh:
        data = json.load(fh)
    meta, panels = data["meta"], {}
    for r in data["rows"]:
        if r["status"] == "ok":
            panels.setdefault(r["workload"], []).append(r)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.6 * len(panels)), squeeze=False)
    colours = {"dugong": "#1f77b4", "dugong-3.8.2": "#9ecae1", "floor": "#7f7f7f"}
    for ax, (w, rs) in zip(axes[:, 0], panels.items(), strict=True):
        err = None
        if w == "W6":
            values, xlabel = [r["best"] for r in rs], "best ms (lower is better)"
        elif w == "W7":
            values = [r.get("peak", r.get("idle")) / KiB for r in rs]
            xlabel = "traced KiB: peak while streaming / idle connection (lower is better)"
        else:
            values, xlabel = [r["median"] for r in rs], f"{UNITS[unit(w)][0]}, median and range"
            err = [[r["median"] - r["min"] for r in rs], [r["max"] - r["median"] for r in rs]]
        ax.barh(
            range(len(rs)),
            values,
            xerr=err,
            capsize=2,
            color=[colours.get(r["client"], "#bcbd22") for r in rs],
        )
        ax.set_yticks(range(len(rs)), [f"{r['client']}: {r['label']}" for r in rs], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(f"{w}: {TITLES[w].format(**meta['config'])}", fontsize=9)
    fig.suptitle(
        f"dugong benchmark ({meta['mode']} mode), Python {meta['python']}, "
        f"{meta['cpus']} CPUs, {meta['date']}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(out_path, dpi=80)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: bench_report.py RESULTS.json OUT.png")
    chart(sys.argv[1], sys.argv[2])
