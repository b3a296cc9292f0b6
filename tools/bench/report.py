#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""kvstash-bench report: draws the JSON lines of one or more kvstash-bench
runs (files, or - for stdin) into one PNG.

  report.py [-o OUT.png] [--title T] RUN.jsonl [RUN.jsonl ...]

Panels: every figure that has a limit, beside that limit (one panel per
unit; with several runs a bar is the median and its whisker the range);
and, if the runs hold replay figures, the hit ratio against capacity of
the engine's adaptive default, the best fixed setting, exact LRU and
Belady's bound.
Lines that are not JSON objects with a "figure" are skipped, so the text
a benchmark prints around its JSON lines does no harm. Exit 1 if no
figure was found, 2 on bad usage. Needs python3-matplotlib (Debian).
"""
import argparse
import json
import re
import statistics
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPLAY = re.compile(r"^replay-(hit-ratio|best-fixed|belady)-(\d+)$")


def load(paths):
    """figure -> list of the JSON objects read for it, in order."""
    figs = {}
    for path in paths:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
        with f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and "figure" in obj and \
                        isinstance(obj.get("value"), (int, float)):
                    figs.setdefault(obj["figure"], []).append(obj)
    return figs


def spread(values):
    """(median, lower error, upper error) for an error bar."""
    m = statistics.median(values)
    return m, m - min(values), max(values) - m


def draw_limits(ax, unit, items):
    names = [n for n, _ in items]
    ours = [spread([o["value"] for o in objs]) for _, objs in items]
    lims = [spread([o["limit"] for o in objs]) for _, objs in items]
    ys = range(len(items))
    h = 0.38
    ax.barh([y - h / 2 for y in ys], [o[0] for o in ours], h,
            xerr=[[o[1] for o in ours], [o[2] for o in ours]],
            label="kvstash", color="#1f77b4")
    ax.barh([y + h / 2 for y in ys], [lim[0] for lim in lims], h,
            xerr=[[lim[1] for lim in lims], [lim[2] for lim in lims]],
            label="limit", color="#bbbbbb")
    for y, o, lim in zip(ys, ours, lims):
        if lim[0] > 0:
            ax.text(max(o[0], lim[0]), y, f"  {o[0] / lim[0]:.2f}x",
                    va="center", fontsize=8)
    ax.set_yticks(list(ys))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(f"figures beside their limits ({unit})", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")


def draw_replay(ax, figs):
    # The first trace of a run only: figures of further traces carry the
    # trace's name as a suffix and do not match REPLAY.
    series = {"hit-ratio": {}, "best-fixed": {}, "belady": {}, "lru": {}}
    for name, objs in figs.items():
        m = REPLAY.match(name)
        if not m:
            continue
        kind, cap = m.group(1), int(m.group(2))
        series[kind][cap] = statistics.median(o["value"] for o in objs)
        if kind == "hit-ratio":
            lru = [o["limit"] for o in objs if o.get("limit") is not None]
            if lru:
                series["lru"][cap] = statistics.median(lru)
    style = {"hit-ratio": ("kvstash (adaptive)", "o-"),
             "best-fixed": ("best fixed setting", "s-"),
             "lru": ("exact LRU", "x--"), "belady": ("Belady's bound", "^:")}
    for kind, (label, fmt) in style.items():
        pts = sorted(series[kind].items())
        if pts:
            ax.plot([c for c, _ in pts], [v for _, v in pts], fmt, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("capacity (blocks)")
    ax.set_ylabel("block hit ratio")
    ax.set_ylim(bottom=0)
    ax.set_title("replay: hit ratio against capacity", fontsize=10)
    ax.legend(fontsize=8)


def main():
    ap = argparse.ArgumentParser(prog="kvstash-bench report",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="JSON lines files, - for stdin")
    ap.add_argument("-o", "--out", default="kvstash-bench.png")
    ap.add_argument("--title", default="kvstash-bench")
    a = ap.parse_args()
    try:
        figs = load(a.runs)
    except OSError as e:
        print(f"kvstash-bench report: {e}", file=sys.stderr)
        return 1
    if not figs:
        print("kvstash-bench report: no figures in " + " ".join(a.runs) +
              " (run kvstash-bench MODE --json)", file=sys.stderr)
        return 1
    by_unit = {}
    for name, objs in figs.items():
        # Hit ratios are drawn against capacity, not as bars (a further
        # trace's, suffixed with its name, is left out of the picture).
        if name.startswith("replay-"):
            continue
        objs = [o for o in objs if isinstance(o.get("limit"), (int, float))
                and o["limit"] > 0]
        if objs:
            by_unit.setdefault(objs[0]["unit"], []).append((name, objs))
    has_replay = any(REPLAY.match(n) for n in figs)
    panels = [(u, items) for u, items in sorted(by_unit.items())]
    n = len(panels) + (1 if has_replay else 0)
    if n == 0:
        print("kvstash-bench report: no figure has a limit and there is no "
              "replay", file=sys.stderr)
        return 1
    heights = [max(2.0, 0.45 * len(items) + 1) for _, items in panels]
    heights += [3.5] if has_replay else []
    fig, axes = plt.subplots(n, 1, figsize=(10, sum(heights) + 0.8),
                             gridspec_kw={"height_ratios": heights},
                             squeeze=False)
    for ax, (unit, items) in zip(axes[:, 0], panels):
        draw_limits(ax, unit, items)
    if has_replay:
        draw_replay(axes[-1, 0], figs)
    runs = len(a.runs)
    fig.suptitle(f"{a.title} ({runs} run{'s' if runs > 1 else ''})")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"kvstash-bench report: wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
