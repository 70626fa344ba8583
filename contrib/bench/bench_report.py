"""Medians, goals, markdown tables and the chart of a benchmark run; the chart by
``python bench_report.py RESULTS.json OUT.png`` with the benchmark venv (matplotlib)."""

import json
import statistics
import sys

from bench_workloads import WORKLOADS

KiB, MiB, X = 1 << 10, 1 << 20, "\u00d7"
TITLES = {name: workload.TITLE for name, workload in WORKLOADS.items()}
#: each workload's rate and CPU columns, counted in requests or in MiB, and the CPU scale
REQ, MIB = ("req/s", "CPU µs/req", 1e6), ("MiB/s", "CPU ms/MiB", 1e3)
UNITS = {w: MIB if w in ("W3", "W4", "W7") else REQ for w in TITLES}

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
MEASURES = dict(median="rate", cpu="CPU", best="import time", peak="peak memory", idle="memory")


def stats(row: dict) -> None:
    """The medians and ranges of a row's samples, put into the row."""
    s, median = row.get("samples") or [], statistics.median
    if row["status"] == "ok" and not s:
        row.update(status="error", reason="no sample")
    if not s:
        return
    if row["workload"] == "W6":
        walls = [x["wall"] for x in s]
        row.update(best=min(walls) * 1e3, median=median(walls) * 1e3)
        row["cpu"] = median(x["cpu"] for x in s) * 1e3
        return
    if "idle" in s[0]:
        row["idle"] = median(x["idle"] for x in s)
        return
    unit = UNITS[row["workload"]]
    per = [x["ops"] if unit is REQ else x["bytes"] / MiB for x in s]
    rates = [k / x["wall"] for k, x in zip(per, s, strict=True)]
    cpus = [x["cpu"] / k * unit[2] for k, x in zip(per, s, strict=True)]
    busy = [x["server_cpu"] / x["wall"] for x in s if "server_cpu" in x]  # share of a core
    row.update(median=median(rates), min=min(rates), max=max(rates), cpu=median(cpus))
    row["server_busy"] = median(busy) if len(busy) == len(s) else None
    if "peak" in s[0]:
        row["peak"] = max(x["peak"] for x in s)


def ok(row: dict | None, key: str = "median") -> bool:
    return row is not None and row["status"] == "ok" and row.get(key) is not None


def match(rows: list[dict], client: str, like: dict) -> dict | None:
    """*client*'s row to compare *like* with, in the same workload: the same variant,
    else the same last part of it (``-p16`` in W8), else the client's only row."""
    cands = [r for r in rows if r["client"] == client and r["workload"] == like["workload"]]
    same = [r for r in cands if r["variant"] == like["variant"]]
    last = [r for r in cands if r["variant"].rsplit("-")[-1] == like["variant"].rsplit("-")[-1]]
    return next((found[0] for found in (same, last, cands) if len(found) == 1), None)


def ratio(a: dict | None, b: dict | None, key: str = "median") -> float | None:
    return a[key] / b[key] if ok(a, key) and ok(b, key) and b[key] else None


def meets(value: float, key: str, bar: float) -> bool:
    return value >= bar if key == "median" else value <= bar


def evaluate(rows: list[dict]) -> list[dict]:
    """Each goal's verdict: met, not met, n/a (no data), or out of reach: not met, and
    the raw-socket floor of the same pattern does not reach the bar either."""
    goals, dugong = [], {(r["workload"], r["variant"]): r for r in rows if r["client"] == "dugong"}
    for w, variant, key, other, bar in GOALS:
        if (row := dugong.get((w, variant))) is None:
            continue
        ref = match(rows, other, row) if other else None
        if other == "best client":
            clients = [r for r in rows if r["workload"] == w and r["client"] != "floor" and ok(r)]
            ref = max(clients, key=lambda r: r["median"], default=None)
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
        goal = {"row": row["id"], "label": row["label"], "key": key, "bar": bar}
        goals.append(dict(goal, against=against, value=value, reach=reach, verdict=verdict))
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
    name = f"**dugong {versions.get('dugong')}**" if client == "dugong" else client
    line = [name, f"`{r['label']}`" if w == "W6" else r["label"]]
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
    spread = f"{num(r['min'])}\u2013{num(r['max'])}"
    return [*line, num(r["median"]), spread, num(r["cpu"]), busy, *x_floor]


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
    reps = "".join(f", {n} in {w}" for w, n in cfg["reps_by"].items())
    clients = ", ".join(f"{k} {v}" for k, v in sorted(meta["versions"].items()) if k != "floor")
    out = [
        f"# dugong benchmark ({meta['mode']} mode)",
        "",
        f"Python {meta['python']} on {meta['platform']}, {meta['cpus']} CPUs; server: "
        f"{meta['server']}; {cfg['reps']} repetitions per row{reps}, interleaved; "
        f"everything on 127.0.0.1; {meta.get('placement', 'placement left to the system')}.",
        f"Clients: {clients}.",
    ]
    for w in dict.fromkeys(r["workload"] for r in rows):
        rate, cpu, _ = UNITS[w]
        header = {
            "W6": "client|command|best ms|median ms|CPU ms",
            "W7": "client|measure|traced memory|MiB/s (under tracemalloc)",
        }.get(w, f"client|variant|{rate} (median)|range|{cpu}|server CPU|{X} floor|CPU {X} floor")
        lines = [cells(r, meta["versions"]) for r in rows if r["workload"] == w]
        out += ["", f"## {w}: {TITLES[w].format(**cfg)}", "", *table(header.split("|"), lines)]
    if goals:
        met, far = (sum(g["verdict"] == v for g in goals) for v in ("met", "out of reach"))
        header = ["workload", "dugong row", "goal", "measured", "verdict"]
        out += ["", f"## Goals: {met} of {len(goals)} met, {far} out of reach", ""]
        out += table(header, [goal_cells(g) for g in goals])
    return "\n".join(out) + "\n"


def chart(results_path: str, out_path: str) -> None:
    """A panel per workload, a bar per row: its median rate and range, W6's best, W7's KiB."""
    import matplotlib.pyplot as plt

    plt.switch_backend("Agg")
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
            values, xlabel = [r["median"] for r in rs], f"{UNITS[w][0]}, median and range"
            err = [[r["median"] - r["min"] for r in rs], [r["max"] - r["median"] for r in rs]]
        colour = [colours.get(r["client"], "#bcbd22") for r in rs]
        ax.barh(range(len(rs)), values, xerr=err, capsize=2, color=colour)
        ax.set_yticks(range(len(rs)), [f"{r['client']}: {r['label']}" for r in rs], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(f"{w}: {TITLES[w].format(**meta['config'])}", fontsize=9)
    title = f"dugong benchmark ({meta['mode']} mode), Python {meta['python']}, {meta['cpus']} CPUs"
    fig.suptitle(f"{title}, {meta['date']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_path, dpi=80)


if __name__ == "__main__":
    chart(*sys.argv[1:])
