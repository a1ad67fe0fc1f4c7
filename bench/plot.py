#!/usr/bin/python3
"""plot.py - PNG plots from gradflow's JSON lines (Debian's python3-matplotlib).

Two kinds of input, one JSON object per line (other lines are skipped):

  training logs (default): the --log-json FILE of examples/fashion_mnist and
      examples/linear_regression, one object per epoch. Plots the loss per
      epoch and, where the log has them, train and test accuracy per epoch;
      one line per file.

        ./build/fashion_mnist --epochs 3 --log-json /tmp/fm.jsonl
        /usr/bin/python3 bench/plot.py /tmp/fm.jsonl -o docs/img/fashion_mnist_loss.png

  scaling runs (--scaling): benchmark lines (bench/run_scaling.sh,
      bench/run_sched.sh, bench_train, bench_serve ...). Plots the lines of
      one benchmark (--bench, default "train") as --y (default samples_per_s)
      against --x (default threads), one series per combination of the
      lines' text fields (impl, model, optim, intraop, ...) and of the
      --group fields; with several runs of a point the best is drawn. For
      rates (a y field ending in _per_s, or gflops) a dotted line shows
      perfect scaling from each series' first point.

        bench/run_scaling.sh build-bench > /tmp/scaling.jsonl
        /usr/bin/python3 bench/plot.py --scaling /tmp/scaling.jsonl -o /tmp/train.png
        /usr/bin/python3 bench/plot.py --scaling --y ms_per_step /tmp/scaling.jsonl -o /tmp/ms.png
        /usr/bin/python3 bench/plot.py --scaling --bench serve --x request_threads \\
            --y requests_per_s --group batch serve.jsonl -o /tmp/serve.png
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402 (after the backend choice)
import matplotlib.ticker  # noqa: E402


def read_lines(path):
    """The JSON objects of a file (or stdin for "-"), in order."""
    f = sys.stdin if path == "-" else open(path)
    rows = []
    with f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                sys.exit(f"plot.py: {path}:{n}: not JSON: {e}")
    return rows


def plot_training(files, out, title):
    runs = [(os.path.basename(p), [r for r in read_lines(p) if "epoch" in r]) for p in files]
    runs = [(name, rows) for name, rows in runs if rows]
    if not runs:
        sys.exit("plot.py: no lines with an \"epoch\" field (a --log-json file?)")
    has_acc = any("train_accuracy" in r or "test_accuracy" in r for _, rows in runs for r in rows)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(9 if has_acc else 5.5, 3.4),
                             squeeze=False)
    ax_loss = axes[0][0]
    for i, (name, rows) in enumerate(runs):
        # One colour per run; markers while the points stay apart.
        style = {"color": f"C{i}", "marker": "o" if len(rows) <= 30 else None}
        ax_loss.plot([r["epoch"] for r in rows], [r["loss"] for r in rows],
                     label=name if len(runs) > 1 else None, **style)
        if has_acc:
            for j, (key, dash) in enumerate((("train_accuracy", "--"), ("test_accuracy", "-"))):
                pts = [(r["epoch"], 100 * r[key]) for r in rows if key in r]
                if not pts:
                    continue
                tag = key.split("_")[0]
                if len(runs) == 1:  # one run: train and test get colours of their own
                    style["color"] = f"C{j + 1}"
                axes[0][1].plot(*zip(*pts), dash, label=f"{name}: {tag}" if len(runs) > 1
                                else tag, **style)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("loss")
    if len(runs) > 1:
        ax_loss.legend(fontsize="small")
    if has_acc:
        ax = axes[0][1]
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("accuracy")
        ax.legend(fontsize="small")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    finish(fig, out, title)


def higher_is_better(field):
    return field.endswith("_per_s") or "gflops" in field or field.startswith("speedup")


def plot_scaling(files, out, title, bench, x, y, group):
    rows = [r for p in files for r in read_lines(p) if r.get("bench") == bench]
    rows = [r for r in rows if isinstance(r.get(x), (int, float)) and
            isinstance(r.get(y), (int, float))]
    if not rows:
        sys.exit(f"plot.py: no \"{bench}\" lines with numeric \"{x}\" and \"{y}\" fields")
    text = sorted({k for r in rows for k, v in r.items()
                   if isinstance(v, (str, bool)) and k not in ("bench", x, y)})
    keys = text + [g for g in group if g not in text]
    better = max if higher_is_better(y) else min
    series = {}
    for r in rows:
        k = tuple((f, r.get(f)) for f in keys)
        pts = series.setdefault(k, {})
        pts[r[x]] = better(pts[r[x]], r[y]) if r[x] in pts else r[y]
    # A field with one value across all series says nothing in the legend.
    shared = {f for f in keys if len({dict(k).get(f) for k in series}) == 1}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, pts in sorted(series.items(), key=lambda kv: str(kv[0])):
        xs = sorted(pts)
        label = ", ".join(f"{v}" if isinstance(v, str) else f"{f}={v}"
                          for f, v in k if f not in shared) or None
        line, = ax.plot(xs, [pts[v] for v in xs], marker="o", label=label)
        if higher_is_better(y) and len(xs) > 1:
            ideal = [pts[xs[0]] * v / xs[0] for v in xs]
            ax.plot(xs, ideal, ":", color=line.get_color(), alpha=0.6)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    # Log-log: perfect scaling is a straight line, every thread count as wide.
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted({v for pts in series.values() for v in pts}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3)
    if any(ax.get_legend_handles_labels()[1]):
        ax.legend(fontsize="small")
    common = ", ".join(f"{f}={dict(next(iter(series))).get(f)}" for f in sorted(shared))
    finish(fig, out, title or f"{bench}: {y} vs {x}" + (f"\n{common}" if common else ""))


def finish(fig, out, title):
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(f"plot.py: wrote {out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].split(" - ", 1)[1],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", metavar="FILE", help="JSON lines (- for stdin)")
    ap.add_argument("-o", "--output", required=True, metavar="PNG", help="the plot to write")
    ap.add_argument("--title", help="a title over the plot")
    ap.add_argument("--scaling", action="store_true",
                    help="benchmark lines: --y against --x (default: training logs)")
    ap.add_argument("--bench", default="train", help="scaling: the \"bench\" value to plot "
                    "(default train)")
    ap.add_argument("--x", default="threads", help="scaling: x field (default threads)")
    ap.add_argument("--y", default="samples_per_s",
                    help="scaling: y field (default samples_per_s; e.g. ms_per_step)")
    ap.add_argument("--group", default="", metavar="F1,F2",
                    help="scaling: numeric fields that also split series (e.g. batch)")
    a = ap.parse_args()
    if a.scaling:
        plot_scaling(a.files, a.output, a.title, a.bench, a.x, a.y,
                     [g for g in a.group.split(",") if g])
    else:
        plot_training(a.files, a.output, a.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
