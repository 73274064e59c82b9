"""Plots for mint-bench's CSV files: bench/plot.py TARGET_BENCH_DIR (run by bench/run).

latency.png  every timed scenario: the distribution of each series (box: quartiles; whiskers: p5-p95)
helper.png   the helper's latency distribution, dynamic and static beside git credential-cache: alone and
             through `git credential fill`
burst.png    the cold burst: one line per git command from start to end, and the moment mintd minted
steady.png   the steady load: each request's latency over time, and mintd's RSS
"""
import csv
import sys
from collections import OrderedDict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = Path(sys.argv[1])


def latency():
    scenarios = OrderedDict()
    with open(out / "samples.csv") as f:
        for row in csv.DictReader(f):
            scenarios.setdefault(row["scenario"], OrderedDict()).setdefault(row["series"], []).append(float(row["ms"]))
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(10, 2.2 * len(scenarios) + 0.5))
    for ax, (title, series) in zip(axes if len(scenarios) > 1 else [axes], scenarios.items()):
        names = list(series)[::-1]
        ax.boxplot([series[n] for n in names], orientation="horizontal", whis=(5, 95), showfliers=False, tick_labels=names)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("ms")
        ax.set_xlim(left=0)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)


def helper():
    """Histograms of the helper alone and of the warm fill: static, dynamic and credential-cache overlaid."""
    panels = OrderedDict()
    with open(out / "samples.csv") as f:
        for row in csv.DictReader(f):
            title = row["scenario"]
            if not (title.startswith("helper process alone") or title.startswith("warm `git credential fill` (")):
                continue
            name = row["series"]
            if "static" in name or "dynamic" in name or "credential-cache" in name:
                panels.setdefault(title.split(" (")[0], OrderedDict()).setdefault(name, []).append(float(row["ms"]))
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)))
    for ax, (title, series) in zip(axes if len(panels) > 1 else [axes], panels.items()):
        everything = sorted(v for vs in series.values() for v in vs)
        hi = everything[int(len(everything) * 0.99)]
        lo = everything[0]
        bins = [lo + (hi - lo) * i / 60 for i in range(61)]
        for name, values in series.items():
            values = sorted(values)
            median = values[len(values) // 2]
            ax.hist(values, bins=bins, histtype="step", lw=1.5, label=f"{name} (median {median:.2f} ms)")
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("ms (up to the p99 of all series)")
        ax.set_ylabel("runs")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "helper.png", dpi=110)


def burst():
    with open(out / "burst.csv") as f:
        minted = float(f.readline().split("=")[1])
        rows = sorted(csv.DictReader(f), key=lambda r: float(r["start_ms"]))
    fig, ax = plt.subplots(figsize=(10, 5))
    colors = {"fill": "tab:blue", "ls-remote": "tab:orange"}
    for i, r in enumerate(rows):
        ax.plot([float(r["start_ms"]), float(r["end_ms"])], [i, i], color=colors[r["kind"]], lw=0.8,
                alpha=1.0 if r["ok"] == "true" else 0.3)
    ax.axvline(minted, color="black", ls="--", lw=1)
    ax.text(minted, len(rows) * 1.01, " mintd minted the token", fontsize=8, va="bottom")
    for kind, color in colors.items():
        ax.plot([], [], color=color, label=f"git {'credential fill' if kind == 'fill' else kind}")
    ax.set_xlabel("ms since the burst started")
    ax.set_ylabel("command (by start)")
    ax.set_title("cold burst: 200 fills + 32 ls-remote, fakehub minting after 0.5 s", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "burst.png", dpi=110)


def steady():
    with open(out / "steady.csv") as f:
        rows = list(csv.DictReader(f))
    with open(out / "steady-rss.csv") as f:
        rss = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.scatter([float(r["due_s"]) for r in rows], [float(r["latency_ms"]) for r in rows], s=2, alpha=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("s")
    ax.set_ylabel("latency, ms (log)")
    rss_ax = ax.twinx()
    rss_ax.plot([float(r["t_s"]) for r in rss], [int(r["rss_kib"]) / 1024 for r in rss], color="tab:red")
    rss_ax.set_ylabel("mintd RSS, MiB", color="tab:red")
    rss_ax.set_ylim(0, max(int(r["rss_kib"]) for r in rss) / 1024 * 1.5)
    ax.set_title("steady load on the socket: each request's latency, and mintd's RSS", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "steady.png", dpi=110)


for plot, needs in ((latency, "samples.csv"), (helper, "samples.csv"), (burst, "burst.csv"), (steady, "steady.csv")):
    if (out / needs).exists():
        plot()
print(f"plots written to {out}: latency.png, burst.png, steady.png")
