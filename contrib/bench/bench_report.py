"""Medians, the goals, the markdown tables and the chart of a benchmark run.

Standard library only, except `chart`, which bench.py runs with the benchmark venv's
python (``python bench_report.py chart RESULTS.json OUT.png``) for its matplotlib.
"""

from __future__ import annotations

import json
import statistics
import sys

MiB = 1 << 20
KiB = 1 << 10
X = "\u00d7"

TITLES = {
    "W1": "{w1_n} sequential keep-alive GETs of 1 KiB on one connection",
    "W2": "{w2_n} pipelined GETs of 1 KiB on one connection",
    "W3": "download of {w3_mib} MiB: read(64 KiB), readinto a 64 KiB buffer",
    "W4": "upload of {w4_mib} MiB in 64 KiB pieces",
    "W5": "{w5_conns} connections x {w5_n} GETs of 1 KiB, concurrently",
    "W6": "import in a fresh process, best of {w6_runs}",
    "W7": "memory: streaming {w7_mib} MiB with read(64 KiB); one idle connection",
    "W8": "{w8_tasks} tasks x {w8_n} GETs of 1 KiB through at most {w8_conns} connections",
}
#: rate and CPU columns of the workloads measured in requests or in MiB
UNITS = {"req": ("req/s", "CPU µs/req", 1e6), "MiB": ("MiB/s", "CPU ms/MiB", 1e3)}

#: dugong's goals, as ratios of medians in the same run: (workload, dugong's variant,
#: measure, compared with, bar). "rate" is better higher; "cpu" (per request or MiB),
#: "best" (W6's best time), "peak" and "idle" (W7's traced bytes) are better lower.
#: Compared with a client's row of the same pattern (see `match`), with "best client"
#: (the fastest row of the workload but the floor's), or None: an absolute bar.
GOALS = [
    ("W1", "seq", "rate", "floor", 0.95),
    ("W1", "seq", "rate", "http.client", 3.0),
    ("W1", "seq", "cpu", "http.client", 0.3),
    ("W2", "co-d16", "rate", "floor", 0.9),
    ("W2", "batch-d16", "rate", "floor", 0.9),
    ("W2", "co-d64", "rate", "floor", 0.95),
    ("W2", "batch-d64", "rate", "floor", 0.95),
    ("W3", "read", "cpu", "http.client", 1.1),
    ("W3", "read", "rate", "best client", 0.9),
    ("W3", "readinto", "cpu", "floor", 1.1),
    ("W4", "plain", "rate", "floor", 0.9),
    ("W4", "expect100", "rate", "floor", 0.9),
    ("W4", "chunked", "rate", "floor", 0.9),
    ("W5", "loop", "rate", "floor", 0.8),
    ("W5", "aio", "rate", "aiohttp", 3.0),
    ("W5", "anyio-asyncio", "rate", "aiohttp", 2.0),
    ("W6", "import", "best", "http.client", 1.0),
    ("W7", "stream", "peak", None, 1024 * KiB),
    ("W7", "idle", "idle", None, 72 * KiB),  # BUFFER_SIZE + 8 KiB
    ("W8", "loop-p1", "rate", "aiohttp", 2.0),
    ("W8", "loop-p16", "rate", "aiohttp", 5.0),
    ("W8", "loop-p16", "rate", "floor", 0.6),
    ("W8", "threads-p1", "rate", "urllib3", 1.5),
]
MEASURES = {"rate": "rate", "cpu": "CPU", "best": "import time", "peak": "peak memory",
            "idle": "memory"}


def title(w: str, cfg: dict) -> str:
    sizes = {f"w{i}_mib": cfg.get(f"w{i}_size", 0) // MiB for i in (3, 4, 7)}
    return TITLES[w].format(**cfg, **sizes)


def unit(w: str) -> str:
    return "MiB" if w in ("W3", "W4", "W7") else "req"


def stats(row: dict) -> None:
    """Medians and ranges of a row's samples, put into the row."""
    s = row.get("samples") or []
    if row["status"] == "ok" and not s:
        row.update(status="error", reason="no sample")
    if not s:
        return
    if row["workload"] == "W6":
        walls = [x["wall"] * 1e3 for x in s]
        row.update(best=min(walls), median=statistics.median(walls),
                   cpu=statistics.median(x["cpu"] * 1e3 for x in s))
        return
    if row["variant"] == "idle":
        row["idle"] = statistics.median(x["idle"] for x in s)
        return
    per = [x["ops"] if unit(row["workload"]) == "req" else x["bytes"] / MiB for x in s]
    rates = [k / x["wall"] for k, x in zip(per, s, strict=True)]
    row.update(median=statistics.median(rates), min=min(rates), max=max(rates),
               cpu=statistics.median(x["cpu"] / k * UNITS[unit(row["workload"])][2]
                                     for k, x in zip(per, s, strict=True)))
    # the server's CPU time over the run's wall time: its share of one core
    busy = [x["server_cpu"] / x["wall"] for x in s if "server_cpu" in x]
    row["server_busy"] = statistics.median(busy) if len(busy) == len(s) else None
    if "peak" in s[0]:
        row["peak"] = max(x["peak"] for x in s)


def ok(row: dict | None, key: str = "median") -> bool:
    return row is not None and row["status"] == "ok" and row.get(key) is not None


def match(rows: list[dict], client: str, like: dict) -> dict | None:
    """*client*'s row to compare *like* with, in the same workload: the same variant,
    else the same last part of it (W8's ``-p16``), else the client's only row."""
    cands = [r for r in rows if r["client"] == client and r["workload"] == like["workload"]]
    suffix = like["variant"].rsplit("-", 1)[-1]
    for found in ([r for r in cands if r["variant"] == like["variant"]],
                  [r for r in cands if r["variant"].rsplit("-", 1)[-1] == suffix], cands):
        if len(found) == 1:
            return found[0]
    return None


def ratio(a: dict | None, b: dict | None, key: str = "median") -> float | None:
    return a[key] / b[key] if ok(a, key) and ok(b, key) and b[key] else None


def evaluate(rows: list[dict]) -> list[dict]:
    """Every goal with its verdict: met, not met, out of reach (not met, and the
    raw-socket floor of the same pattern does not reach the bar either), or n/a."""
    goals = []
    for w, variant, measure, other, bar in GOALS:
        row = next((r for r in rows if r["workload"] == w and r["client"] == "dugong"
                    and r["variant"] == variant), None)
        if row is None:
            continue
        higher, key = measure == "rate", "median" if measure == "rate" else measure
        floor = match(rows, "floor", row)
        if other is None:
            ref, value = None, row[key] if ok(row, key) else None
        elif other == "best client":
            ref = max((r for r in rows if r["workload"] == w and r["client"] != "floor"
                       and ok(r)), key=lambda r: r["median"], default=None)
        else:
            ref = match(rows, other, row)
        if other is not None:
            value = ratio(row, ref, key)
        reach = ratio(floor, ref, key) if other not in (None, "floor") else None
        if value is None:
            verdict = "n/a"
        elif value >= bar if higher else value <= bar:
            verdict = "met"
        elif reach is not None and not (reach >= bar if higher else reach <= bar):
            verdict = "out of reach"
        else:
            verdict = "not met"
        against = {None: "", "floor": "the floor", "best client": "the best client"}.get(
            other, other)
        goals.append({"row": row["id"], "label": row["label"], "measure": measure,
                      "against": against, "bar": bar, "higher": higher, "value": value,
                      "reach": reach, "verdict": verdict,
                      "best": ref["client"] if other == "best client" and ref else None})
    return goals


def analyse(rows: list[dict]) -> list[dict]:
    for r in rows:
        stats(r)
    for r in rows:
        r["x_floor"] = ratio(r, match(rows, "floor", r))
        r["cpu_x_floor"] = ratio(r, match(rows, "floor", r), "cpu")
    return evaluate(rows)


# ---------------------------------------------------------------- markdown


def num(v) -> str:
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) >= 1 else f"{v:.3f}".rstrip("0").rstrip(".")


def times(v) -> str:
    return "—" if v is None else f"{v:.2f}{X}"


def who(r: dict, versions: dict) -> str:
    if r["client"] == "dugong":
        return f"**dugong {versions.get('dugong', '')}**"
    if r["client"] == "floor":
        return "interpreter start-up" if r["workload"] == "W6" else "raw-socket floor"
    return r["client"]


def table(header: list[str], lines: list[list[str]]) -> list[str]:
    rows = [header, ["---"] * len(header), *lines]
    return ["| " + " | ".join(cells) + " |" for cells in rows] + [""]


def row_cells(r: dict, versions: dict) -> list[str]:
    """The cells of one row of a workload's table (a failed row: its status)."""
    w = r["workload"]
    head = [who(r, versions), f"`{r['label']}`" if w == "W6" else r["label"]]
    if r["status"] != "ok":
        reason = (r.get("reason") or "").splitlines()[:1]
        return [*head, f"{r['status']}: {''.join(reason)[:160]}".replace("|", "/")]
    if w == "W6":
        return [*head, f"{r['best']:.1f}", f"{r['median']:.1f}", f"{r['cpu']:.1f}"]
    if w == "W7":
        if r["variant"] == "idle":
            return [*head, f"{r['idle'] / KiB:.1f} KiB per connection", "—"]
        return [*head, f"peak {r['peak'] / KiB:.1f} KiB above the start", num(r["median"])]
    busy = r.get("server_busy")
    return [*head, num(r["median"]), f"{num(r['min'])}\u2013{num(r['max'])}", num(r["cpu"]),
            "—" if busy is None else f"{busy:.0%}", times(r["x_floor"]),
            times(r["cpu_x_floor"])]


def goal_cells(g: dict) -> list[str]:
    rel = (">=" if g["higher"] else "<=") if g["verdict"] == "met" else (
        "<" if g["higher"] else ">")
    if g["against"]:
        value = "—" if g["value"] is None else f"{g['value']:.2f}{X} {rel} {g['bar']:.2f}{X}"
        if g["verdict"] == "out of reach":
            value += f" (the floor: {g['reach']:.2f}{X})"
        best = f" ({g['best']})" if g["best"] else ""
        goal = f"{MEASURES[g['measure']]} vs {g['against']}{best}"
    else:
        value = "—" if g["value"] is None else (
            f"{g['value'] / KiB:.1f} {rel} {g['bar'] / KiB:.0f} KiB")
        goal = MEASURES[g["measure"]]
    mark = g["verdict"] if g["verdict"] in ("met", "n/a") else f"**{g['verdict']}**"
    return [g["row"].split("/")[0], g["label"], goal, value, mark]


def markdown(rows: list[dict], goals: list[dict], meta: dict, cfg: dict) -> str:
    versions = meta["versions"]
    out = [f"# dugong benchmark ({meta['mode']} mode)", "",
           f"Python {meta['python']} on {meta['platform']}, {meta['cpus']} CPUs; server: "
           f"{meta['server']}; {cfg['reps']} repetitions per row"
           + "".join(f", {n} in {w}" for w, n in cfg["reps_by"].items())
           + ", interleaved; everything on 127.0.0.1.",
           "Clients: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())
                                   if k != "floor") + ".",
           *[f"Unavailable: {k}: {v.splitlines()[0][:200]}."
             for k, v in meta["unavailable"].items()],
           ""]
    for w in dict.fromkeys(r["workload"] for r in rows):
        out += [f"## {w}: {title(w, cfg)}", ""]
        if w == "W6":
            header = ["client", "command", "best ms", "median ms", "CPU ms"]
        elif w == "W7":
            header = ["client", "measure", "traced memory", "MiB/s (under tracemalloc)"]
        else:
            rate, cpu, _ = UNITS[unit(w)]
            header = ["client", "variant", f"{rate} (median)", "range", cpu, "server CPU",
                      f"{X} floor", f"CPU {X} floor"]
        out += table(header, [row_cells(r, versions) for r in rows if r["workload"] == w])
    if goals:
        counts = {v: sum(g["verdict"] == v for g in goals) for v in ("met", "out of reach")}
        out += [f"## Goals: {counts['met']} of {len(goals)} met, "
                f"{counts['out of reach']} out of reach", ""]
        out += table(["workload", "dugong row", "goal", "measured", "verdict"],
                     [goal_cells(g) for g in goals])
    return "\n".join(out)


# ---------------------------------------------------------------- chart


def chart(results_path: str, out_path: str) -> None:
    """One panel per workload, one bar per row (median and range; W6: best ms; W7: KiB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(results_path) as fh:
        data = json.load(fh)
    panels = {}
    for r in data["rows"]:
        if r["status"] == "ok":
            panels.setdefault(r["workload"], []).append(r)
    heights = [0.2 * len(rs) + 1.2 for rs in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    colours = {"dugong": "#1f77b4", "dugong-3.8.2": "#9ecae1", "floor": "#7f7f7f"}
    for ax, (w, rs) in zip(axes[:, 0], panels.items(), strict=True):
        if w == "W6":
            values, err, xlabel = [r["best"] for r in rs], None, "best ms (lower is better)"
        elif w == "W7":
            values = [r.get("peak", r.get("idle", 0)) / KiB for r in rs]
            err, xlabel = None, "traced KiB: stream peak / idle connection (lower is better)"
        else:
            values = [r["median"] for r in rs]
            err = [[r["median"] - r["min"] for r in rs], [r["max"] - r["median"] for r in rs]]
            xlabel = f"{UNITS[unit(w)][0]}: median, bars the range"
        ypos = range(len(rs))
        ax.barh(ypos, values, xerr=err, capsize=2,
                color=[colours.get(r["client"], "#bcbd22") for r in rs])
        ax.set_yticks(ypos, [f"{r['client']}: {r['label']}" for r in rs], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(f"{w}: {title(w, data['meta']['config'])}", fontsize=9)
    fig.suptitle(f"dugong benchmark ({data['meta']['mode']}), Python {data['meta']['python']},"
                 f" {data['meta']['cpus']} CPUs, loopback", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path, dpi=80)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "chart":
        sys.exit("usage: bench_report.py chart RESULTS.json OUT.png")
    chart(sys.argv[2], sys.argv[3])
