"""Statistics, goals, markdown tables and the chart for contrib/bench.py.

Everything but :func:`chart` uses the standard library only, so that
bench.py can import this module under any interpreter. The chart is drawn by
running ``python bench_report.py chart RESULTS.json OUT.png`` with the python
of the benchmark venv, which has matplotlib.
"""

from __future__ import annotations

import json
import statistics
import sys

MiB = 1 << 20
X = "\u00d7"  # multiplication sign, for ratios
DASH = "\u2013"  # en dash, for ranges

TITLES = {
    "W1": "{w1_n} sequential keep-alive GETs of 1 KiB on one connection",
    "W2": "{w2_n} pipelined GETs of 1 KiB on one connection",
    "W3": "download of {w3_size_mib} MiB: read(64 KiB), readinto a reused 64 KiB buffer",
    "W4": "upload of {w4_size_mib} MiB in 64 KiB pieces",
    "W5": "{w5_conns} connections x {w5_n} GETs of 1 KiB, concurrently",
    "W6": "import in a fresh process, best of {w6_runs}",
    "W7": "memory: streaming {w7_size_mib} MiB with read(64 KiB); one idle connected connection",
}

UNITS = {
    "req": ("req/s", "CPU µs/req"),
    "MiB": ("MiB/s", "CPU ms/MiB"),
}


def title(w: str, cfg: dict) -> str:
    c = dict(cfg)
    for key in ("w3_size", "w4_size", "w7_size"):
        c.setdefault(key + "_mib", cfg.get(key, 0) // MiB)
    return TITLES[w].format(**c)


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------


def row_stats(row: dict) -> None:
    s = row.get("samples") or []
    if row.get("status") == "ok" and not s:
        row["status"] = "error"
        row.setdefault("reason", "no sample")
    if not s:
        return
    unit = row["unit"]
    if unit == "req":
        rates = [x["ops"] / x["wall"] for x in s]
        cpus = [x["cpu"] / x["ops"] * 1e6 for x in s]
    elif unit == "MiB":
        rates = [x["bytes"] / MiB / x["wall"] for x in s]
        cpus = [x["cpu"] * 1e3 / (x["bytes"] / MiB) for x in s]
    elif unit == "ms":  # W6: lower is better; best of the runs
        walls = [x["wall"] * 1e3 for x in s]
        row["best"] = min(walls)
        row["median"] = statistics.median(walls)
        row["min"], row["max"] = min(walls), max(walls)
        row["cpu"] = statistics.median(x["cpu"] * 1e3 for x in s)
        return
    elif unit == "idle":
        row["idle"] = statistics.median(x["idle"] for x in s)
        row["limit"] = s[0].get("limit")
        return
    row["median"] = statistics.median(rates)
    row["min"], row["max"] = min(rates), max(rates)
    # the server's CPU time over the wall time of each run: the share of one core it used
    busy = [x["server_cpu"] / x["wall"] for x in s if "server_cpu" in x]
    row["server_busy"] = statistics.median(busy) if len(busy) == len(s) else None
    row["cpu"] = statistics.median(cpus)
    peaks = [x["peak"] for x in s if "peak" in x]
    if peaks:
        row["peak"] = max(peaks)


def find(rows: list[dict], client: str, like: dict) -> dict | None:
    """The row of ``client`` to compare ``like`` with: same variant, else same
    depth, else the client's only row in the workload."""
    cands = [r for r in rows if r["client"] == client and r["workload"] == like["workload"]]
    for r in cands:
        if r["variant"] == like["variant"]:
            return r
    if "depth" in like:
        for r in cands:
            if r.get("depth") == like["depth"]:
                return r
    return cands[0] if len(cands) == 1 else None


def ok(row: dict | None, key: str = "median") -> bool:
    return row is not None and row.get("status") == "ok" and row.get(key) is not None


def ratio(a: dict, b: dict | None, key: str = "median") -> float | None:
    if not ok(a, key) or not ok(b, key) or not b[key]:
        return None
    return a[key] / b[key]


# --------------------------------------------------------------------------
# goals (from the performance issue); they are reported, never enforced
# --------------------------------------------------------------------------


def _goal(goals, row, text, value, limit, higher_is_better, fmt="{:.2f}" + X):
    if value is None:
        verdict = "n/a"
        detail = f"{text}: no data to compare"
    else:
        met = value >= limit if higher_is_better else value <= limit
        verdict = "met" if met else "not met"
        rel = (">=" if met else "<") if higher_is_better else ("<=" if met else ">")
        detail = f"{text}: {fmt.format(value)} {rel} {fmt.format(limit)}"
    g = {
        "row": row["id"],
        "goal": text,
        "value": value,
        "limit": limit,
        "verdict": verdict,
        "detail": detail,
    }
    goals.append(g)
    row.setdefault("goals", []).append(g)


def _server_limit(goal: dict, row: dict, w1: dict | None, floors: list[dict],
                  factor: float) -> None:
    """Say so when a missed pipelining goal needs more than any client could get.

    The raw-socket floors' pipelined rates (pre-built requests, almost no
    client work, in each of the floor's traffic patterns) show what the
    server gives. Only a goal above every floor of the same depth
    is out of reach in this run: the floors' medians are noisy too, so the
    best of them is the bar, never the worst.
    """
    if goal["verdict"] != "not met" or not ok(w1):
        return
    best = max((f for f in floors if ok(f)), key=lambda f: f["median"], default=None)
    need = factor * w1["median"]
    if best is not None and need > best["median"]:
        goal["verdict"] = "out of reach"
        goal["detail"] += (
            f"; {factor:g}{X} own W1 = {need:,.0f} req/s is above what the server "
            f"gives every raw-socket floor (best: {best['variant']}, "
            f"{best['median']:,.0f} req/s, median{_busy_note(best)}); dugong reached "
            f"{row['median'] / best['median']:.2f}{X} that floor"
        )


def _busy_note(row: dict) -> str:
    busy = row.get("server_busy")
    return "" if busy is None else f", server CPU {busy:.0%} of a core"


def floor_pipelining(rows: list[dict]) -> str | None:
    """How many times its own sequential (W1) rate the raw-socket floor reaches by
    pipelining, at each depth: the most any client can get from this server."""
    w1 = next((r for r in rows if r["workload"] == "W1" and r["client"] == "floor" and ok(r)),
              None)
    floors = [r for r in rows if r["workload"] == "W2" and r["client"] == "floor" and ok(r)]
    if w1 is None or not floors:
        return None
    parts = []
    for depth in sorted({r.get("depth") for r in floors}, key=lambda d: d or 0):
        best = max((r for r in floors if r.get("depth") == depth), key=lambda r: r["median"])
        parts.append(f"{best['median'] / w1['median']:.2f}{X} that at depth {depth} "
                     f"({best['label']}{_busy_note(best)})")
    return (f"The raw-socket floor's own W1 rate is {w1['median']:,.0f} req/s"
            f"{_busy_note(w1)}; its best pipelined rate is {' and '.join(parts)}.")


def evaluate_goals(rows: list[dict]) -> list[dict]:
    goals: list[dict] = []
    by_w: dict[str, list] = {}
    for r in rows:
        by_w.setdefault(r["workload"], []).append(r)

    def ours(w):
        return [r for r in by_w.get(w, []) if r["client"] == "dugong"]

    for r in ours("W1"):
        hc = find(rows, "http.client", r)
        _goal(goals, r, "req/s vs http.client", ratio(r, hc), 1.2, True)
        _goal(goals, r, "CPU/req vs http.client", ratio(r, hc, "cpu"), 0.7, False)
    w1 = next(iter(ours("W1")), None)
    for r in ours("W2"):
        _goal(goals, r, "vs dugong 3.8.2", ratio(r, find(rows, "dugong-3.8.2", r)), 5.0, True)
        _goal(goals, r, "vs own W1 rate", ratio(r, w1), 4.0, True)
        floors = [x for x in by_w["W2"]
                  if x["client"] == "floor" and x.get("depth") == r.get("depth")]
        _server_limit(goals[-1], r, w1, floors, 4.0)
    w3 = by_w.get("W3", [])
    best = max(
        (x for x in w3 if x["client"] != "floor" and ok(x)),
        key=lambda x: x["median"],
        default=None,
    )
    for r in ours("W3"):
        _goal(
            goals,
            r,
            "CPU/MiB vs http.client",
            ratio(r, find(rows, "http.client", r), "cpu"),
            1.1,
            False,
        )
        _goal(
            goals,
            r,
            f"MiB/s vs best client ({best['client'] if best else '-'})",
            ratio(r, best),
            0.9,
            True,
        )
    for r in ours("W4"):
        _goal(goals, r, "MiB/s vs floor", ratio(r, find(rows, "floor", r)), 0.9, True)
    aio = next((x for x in by_w.get("W5", []) if x["client"] == "aiohttp"), None)
    for r in ours("W5"):
        _goal(
            goals,
            r,
            "req/s vs aiohttp",
            ratio(r, aio),
            1.5 if r["variant"] == "poll" else 1.0,
            True,
        )
    for r in ours("W6"):
        hc = find(rows, "http.client", r)
        _goal(goals, r, "import time vs http.client", ratio(r, hc, "best"), 1.0, False)
    for r in ours("W7"):
        if r["variant"] == "stream":
            peak = r.get("peak") if r.get("status") == "ok" else None
            _goal(
                goals,
                r,
                "peak traced memory",
                peak / 1024 if peak is not None else None,
                1024,
                False,
                "{:.0f} KiB",
            )
        else:
            val = r.get("idle") if r.get("status") == "ok" else None
            lim = r.get("limit") or (64 + 8) * 1024
            _goal(
                goals,
                r,
                "idle connection",
                val / 1024 if val is not None else None,
                lim / 1024,
                False,
                "{:.1f} KiB",
            )
    return goals


def analyse(rows: list[dict], cfg: dict) -> dict:
    for r in rows:
        row_stats(r)
    goals = evaluate_goals(rows)
    for r in rows:
        if r["workload"] in ("W6",):
            r["x_http_client"] = ratio(r, find(rows, "http.client", r), "best")
        elif r["unit"] in ("req", "MiB"):
            r["x_http_client"] = ratio(r, find(rows, "http.client", r))
            r["cpu_x_http_client"] = ratio(r, find(rows, "http.client", r), "cpu")
            r["x_floor"] = ratio(r, find(rows, "floor", r))
    return {"rows": rows, "goals": goals}


# --------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------


def fnum(v, digits=3) -> str:
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}".rstrip("0").rstrip(".")


def fratio(v) -> str:
    return "—" if v is None else f"{v:.2f}{X}"


def client_name(r: dict, versions: dict) -> str:
    name = r["client"]
    if name == "dugong":
        return (
            f"**dugong {versions.get('dugong', '')}**".replace(" **", "**")
            if versions.get("dugong")
            else "**dugong**"
        )
    if name == "floor":
        return "interpreter start-up" if r["workload"] == "W6" else "raw-socket floor"
    return name


def goal_cell(r: dict) -> str:
    gs = r.get("goals")
    if not gs:
        return ""
    parts = []
    for g in gs:
        mark = {"met": "met", "not met": "**not met**", "n/a": "n/a",
                "out of reach": "**out of reach**"}[g["verdict"]]
        parts.append(f"{mark} ({g['detail']})")
    return "; ".join(parts)


def status_cell(r: dict) -> str:
    reason = (r.get("reason") or "").splitlines()[0] if r.get("reason") else ""
    return f"{r.get('status', '?')}: {reason[:160]}".replace("|", "/")


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def markdown(report: dict, meta: dict, cfg: dict) -> str:
    rows = report["rows"]
    versions = meta.get("versions", {})
    out = [f"# dugong benchmark ({meta.get('mode', '?')} mode)", ""]
    out.append(
        f"Python {meta.get('python')} on {meta.get('platform')}, {meta.get('cpus')} CPUs; "
        f"server: {meta.get('server')}; {cfg['reps']} repetitions per row"
        + "".join(f", {n} in {w}" for w, n in cfg.get("reps_by_workload", {}).items())
        + ", interleaved; "
        "everything on 127.0.0.1."
    )
    vers = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if k not in ("floor",))
    if vers:
        out.append(f"Clients: {vers}.")
    if meta.get("unavailable"):
        out.append(
            "Unavailable: "
            + "; ".join(f"{k}: {v.splitlines()[0][:120]}" for k, v in meta["unavailable"].items())
            + "."
        )
    out.append("")
    workloads = []
    for r in rows:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    for w in workloads:
        wrows = [r for r in rows if r["workload"] == w]
        out.append(f"## {w}: {title(w, cfg)}")
        out.append("")
        if w == "W6":
            header = [
                "command",
                "client",
                "best ms",
                "net ms",
                "median ms",
                "CPU ms",
                X + " http.client",
                "goal",
            ]
            floor = next((r for r in wrows if r["client"] == "floor" and ok(r, "best")), None)
            lines = []
            for r in wrows:
                if not ok(r, "best"):
                    lines.append(
                        [
                            f"`{r['label']}`",
                            client_name(r, versions),
                            status_cell(r),
                            "",
                            "",
                            "",
                            "",
                            "",
                        ]
                    )
                    continue
                net = r["best"] - floor["best"] if floor else None
                lines.append(
                    [
                        f"`{r['label']}`",
                        client_name(r, versions),
                        f"{r['best']:.1f}",
                        "—" if net is None else f"{net:.1f}",
                        f"{r['median']:.1f}",
                        f"{r['cpu']:.1f}",
                        fratio(r.get("x_http_client")),
                        goal_cell(r),
                    ]
                )
            out += _table(header, lines)
            out.append("")
            out.append(
                "*net*: best time minus the best time of `python -c 'pass'` "
                "(interpreter start-up)."
            )
            out.append("")
            continue
        if w == "W7":
            header = ["client", "measure", "traced memory", "MiB/s (under tracemalloc)", "goal"]
            lines = []
            for r in wrows:
                if r.get("status") != "ok":
                    lines.append([client_name(r, versions), r["label"], status_cell(r), "", ""])
                    continue
                if r["variant"] == "idle":
                    mem = f"{r['idle'] / 1024:.1f} KiB per connection"
                    speed = "—"
                else:
                    mem = f"peak {r['peak'] / 1024:.1f} KiB above start"
                    speed = fnum(r.get("median"))
                lines.append([client_name(r, versions), r["label"], mem, speed, goal_cell(r)])
            out += _table(header, lines)
            out.append("")
            out.append(
                "Memory is what tracemalloc sees: Python allocations, not kernel socket buffers "
                "or memory that C libraries (libcurl) allocate themselves."
            )
            out.append("")
            continue
        unit = wrows[0]["unit"]
        rate_name, cpu_name = UNITS[unit]
        header = [
            "client",
            "variant",
            f"{rate_name} (median)",
            "range",
            cpu_name,
            "server CPU",
            X + " http.client",
            "CPU " + X + " http.client",
            X + " floor",
            "goal",
        ]
        lines = []
        for r in wrows:
            if not ok(r):
                lines.append(
                    [client_name(r, versions), r["label"], status_cell(r)] + [""] * 7
                )
                continue
            lines.append(
                [
                    client_name(r, versions),
                    r["label"],
                    fnum(r["median"]),
                    f"{fnum(r['min'])}{DASH}{fnum(r['max'])}",
                    fnum(r["cpu"]),
                    "—" if r.get("server_busy") is None else f"{r['server_busy']:.0%}",
                    fratio(r.get("x_http_client")),
                    fratio(r.get("cpu_x_http_client")),
                    fratio(r.get("x_floor")),
                    goal_cell(r),
                ]
            )
        out += _table(header, lines)
        out.append("")
        if w == "W2" and (line := floor_pipelining(rows)):
            out += [line, ""]
    goals = report["goals"]
    if goals:
        met = sum(g["verdict"] == "met" for g in goals)
        na = sum(g["verdict"] == "n/a" for g in goals)
        far = sum(g["verdict"] == "out of reach" for g in goals)
        out.append(f"## Goals: {met} of {len(goals)} met ({na} without data, "
                   f"{far} beyond what the server can do in this run)")
        out.append("")
        out += _table(
            ["row", "goal", "verdict"], [[g["row"], g["detail"], g["verdict"]] for g in goals]
        )
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------
# chart (needs matplotlib: run with the benchmark venv's python)
# --------------------------------------------------------------------------


def chart(results_path: str, out_path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(results_path) as fh:
        data = json.load(fh)
    rows = data["rows"]
    meta = data["meta"]
    cfg = dict(meta["config"])
    panels = []
    for w in ("W1", "W2", "W3", "W4", "W5", "W6", "W7"):
        wrows = [r for r in rows if r["workload"] == w]
        if w == "W6":
            wrows = [r for r in wrows if ok(r, "best")]
        elif w == "W7":
            wrows = [r for r in wrows if r.get("status") == "ok"]
        else:
            wrows = [r for r in wrows if ok(r)]
        if wrows:
            panels.append((w, wrows))
    if not panels:
        raise SystemExit("nothing to draw")
    ncols = 2
    nrows = (len(panels) + 1) // 2
    # each grid row as tall as its longer panel needs
    heights = [
        max(len(p[1]) for p in panels[i * ncols : (i + 1) * ncols]) * 0.22 + 1.3
        for i in range(nrows)
    ]
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(16, sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    colours = {
        "dugong": "#1f77b4",
        "dugong-3.8.2": "#9ecae1",
        "floor": "#7f7f7f",
        "http.client": "#ff7f0e",
    }
    for ax, (w, wrows) in zip(axes.flat, panels, strict=False):
        labels, values, lo, hi, cols = [], [], [], [], []
        for r in wrows:
            name = "floor" if r["client"] == "floor" else r["client"]
            labels.append(f"{name}: {r['label']}")
            cols.append(colours.get(r["client"], "#bcbd22"))
            if w == "W6":
                v = r["best"]
                lo.append(0)
                hi.append(0)
            elif w == "W7":
                v = (r["idle"] if r["variant"] == "idle" else r["peak"]) / 1024
                lo.append(0)
                hi.append(0)
            else:
                v = r["median"]
                lo.append(v - r["min"])
                hi.append(r["max"] - v)
            values.append(v)
        ypos = list(range(len(values)))
        if w in ("W6", "W7"):
            ax.barh(ypos, values, color=cols)
        else:
            ax.barh(ypos, values, xerr=[lo, hi], color=cols, capsize=2)
        ax.set_yticks(ypos)
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        if w == "W6":
            xl = "best wall time, ms (lower is better)"
        elif w == "W7":
            xl = "traced KiB: stream peak / idle connection (lower is better)"
        else:
            xl = UNITS[wrows[0]["unit"]][0] + " (median, bars: range)"
        ax.set_xlabel(xl, fontsize=8)
        ax.set_title(f"{w}: {title(w, cfg)}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        f"dugong benchmark ({meta.get('mode')}), Python {meta.get('python')}, "
        f"{meta.get('cpus')} CPUs, loopback, server: {meta.get('server')}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out_path, dpi=90)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "chart":
        chart(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: bench_report.py chart RESULTS.json OUT.png")
