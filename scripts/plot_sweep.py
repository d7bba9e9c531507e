#!/usr/bin/python3
"""BN-only accuracy against depth and width, like Figure 2 of Frankle, Schwab & Morcos,
"Training BatchNorm and Only BatchNorm" (ICLR 2021), from a sweep of `minidl experiment bn-only`
runs (Debian's python3-matplotlib and numpy).

Usage: /usr/bin/python3 scripts/plot_sweep.py SWEEP_DIR

Reads SWEEP_DIR/results.csv, one row per (model, variant) run, with the columns
  model,depth,width,variant,trained_parameters,bn_parameters,epochs,train_accuracy,
  test_accuracy,wall_seconds,images_per_second,gamma_below_0.05
(accuracies are fractions 0..1; width is the channel count of the first stage: 16 for
resnet<D>, 32 for resnet14_32, 64 for resnet14_64).

Writes SWEEP_DIR/sweep.png: two panels, test accuracy against depth for the width-16 models
(left) and against width for the depth-14 models (right), one line per variant; rows measured
more than once (several seeds) are averaged. The paper's 160-epoch values (PAPER_FIGURE_2 below)
are drawn as hollow markers at the depths and widths that the sweep measured, for the variants
it measured.

Prints to stdout a markdown table: model, variant, measured test accuracy, paper value.
Exits non-zero if results.csv is missing, has no rows, or lacks a column.
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from plot_experiment import (DPI, GRID_ALPHA, read_csv, variant_color,  # noqa: E402
                             variant_sort_key)

# Frankle, Schwab & Morcos, "Training BatchNorm and Only BatchNorm", ICLR 2021, Figure 2:
# CIFAR-10 test accuracy (%) after their 160-epoch recipe, mean of 5 runs, read from the figure.
# Keys are (depth, width): ResNet-D has width 16; WRN-14-2 and WRN-14-4 are (14, 32) and (14, 64).
# The paper has no values for fc, bn+fc or random-per-channel in this figure.
PAPER_FIGURE_2 = {
    "all": {(14, 16): 90.4, (32, 16): 92.2, (56, 16): 92.9, (110, 16): 93.3, (866, 16): 92.7,
            (14, 32): 92.9, (14, 64): 94.0},
    "bn": {(14, 16): 47.7, (32, 16): 57.5, (56, 16): 62.8, (110, 16): 69.6,
           (866, 16): 82.0,  # approximate
           (14, 32): 53.3, (14, 64): 59.5},
}
PAPER_EPOCHS = 160
REQUIRED_COLUMNS = ("model", "depth", "width", "variant", "epochs", "test_accuracy")
# The two panels: (x column, fixed column, fixed value, title, x axis label).
PANELS = (
    ("depth", "width", 16, "Depth: width-16 models (ResNet-D)", "depth (layers)"),
    ("width", "depth", 14, "Width: depth-14 models (WRN-14-k has width 16k)",
     "width (channels of the first stage)"),
)


def load_results(path):
    """Rows of results.csv with depth, width and epochs as int and test accuracy in %."""
    if not os.path.isfile(path):
        sys.exit(f"plot_sweep: {path} not found")
    rows = read_csv(path)
    if not rows:
        sys.exit(f"plot_sweep: {path} has no result rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    if missing:
        sys.exit(f"plot_sweep: {path} lacks the column(s) {', '.join(missing)}")
    for r in rows:
        for key in ("depth", "width", "epochs"):
            r[key] = int(r[key])
        r["accuracy"] = 100 * float(r["test_accuracy"])
    return rows


def paper_value(variant, depth, width):
    """The paper's Figure 2 accuracy (%) for this variant and shape, or None."""
    return PAPER_FIGURE_2.get(variant, {}).get((depth, width))


def epochs_text(rows):
    """The epochs of the sweep, e.g. "15", or "15/30" if the rows differ."""
    return "/".join(str(e) for e in sorted({r["epochs"] for r in rows}))


def mean_by_x(rows, x_key):
    """(sorted x values, mean accuracy at each): averages repeated runs of one shape."""
    groups = {}
    for r in rows:
        groups.setdefault(r[x_key], []).append(r["accuracy"])
    xs = sorted(groups)
    return xs, [sum(groups[x]) / len(groups[x]) for x in xs]


def plot_paper_reference(ax, variant, xs, x_key, fixed_key, fixed_value, color):
    """The paper's values for `variant` at the measured x values, as hollow markers."""
    shape = {fixed_key: fixed_value}
    points = []
    for x in xs:
        shape[x_key] = x
        value = paper_value(variant, shape["depth"], shape["width"])
        if value is not None:
            points.append((x, value))
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], ls="--", lw=0.8, marker="o",
                ms=7, mfc="none", color=color, label=f"paper, {PAPER_EPOCHS} epochs: {variant}")


def set_log_ticks(ax, xs, base):
    """Log-scaled x axis with one labelled tick per measured value and a little margin."""
    ax.set_xscale("log", base=base)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(xs) / 1.25, max(xs) * 1.25)


def plot_panel(ax, rows, panel, variants):
    """One panel: measured accuracy per variant against x, the paper's values, chance."""
    x_key, fixed_key, fixed_value, title, xlabel = panel
    rows = [r for r in rows if r[fixed_key] == fixed_value]
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.axhline(10, color="gray", ls=":", lw=1, label="chance (10%)")
    ax.grid(alpha=GRID_ALPHA)
    if not rows:
        ax.text(0.5, 0.5, f"no {fixed_key}-{fixed_value} models in results.csv",
                transform=ax.transAxes, ha="center", va="center", color="dimgray")
        ax.set_xticks([])
        return
    xs = sorted({r[x_key] for r in rows})
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        if not mine:
            continue
        color = variant_color(v, variants)
        ax.plot(*mean_by_x(mine, x_key), marker="o", ms=5, color=color, label=f"minidl: {v}")
        plot_paper_reference(ax, v, xs, x_key, fixed_key, fixed_value, color)
    set_log_ticks(ax, xs, base=10 if x_key == "depth" else 2)


def shared_legend(fig, axes):
    """One legend below both panels, each label once, measured lines first."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    labels = sorted(entries, key=lambda s: (s.startswith("chance"), s.startswith("paper")))
    fig.legend([entries[s] for s in labels], labels, loc="upper center", fontsize=9,
               bbox_to_anchor=(0.5, 0.02), ncol=min(4, len(labels)), frameon=False)


def plot_sweep(rows, out_path):
    """sweep.png: accuracy against depth (left) and width (right)."""
    variants = sorted({r["variant"] for r in rows}, key=variant_sort_key)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, panel in zip(axes, PANELS):
        plot_panel(ax, rows, panel, variants)
    axes[0].set_ylabel("test accuracy (%), eval mode")
    axes[0].set_ylim(0, 100)
    fig.suptitle(f"BN-only accuracy against depth and width (minidl, {epochs_text(rows)} epochs)")
    fig.tight_layout()
    shared_legend(fig, axes)
    fig.savefig(out_path, dpi=DPI, bbox_inches="tight")  # "tight" keeps the legend below
    plt.close(fig)


def markdown_table(rows):
    """Markdown table: model, variant, measured test accuracy, paper value or a dash."""
    lines = [f"| model | variant | test accuracy (minidl, {epochs_text(rows)} epochs) "
             f"| paper, {PAPER_EPOCHS} epochs |", "|---|---|---:|---:|"]
    key = lambda r: (r["width"], r["depth"], variant_sort_key(r["variant"]))  # noqa: E731
    for r in sorted(rows, key=key):
        paper = paper_value(r["variant"], r["depth"], r["width"])
        paper_text = f"{paper:.1f}%" if paper is not None else "—"
        lines.append(f"| {r['model']} | {r['variant']} | {r['accuracy']:.2f}% | {paper_text} |")
    return "\n".join(lines)


def main(sweep_dir):
    rows = load_results(os.path.join(sweep_dir, "results.csv"))
    out_path = os.path.join(sweep_dir, "sweep.png")
    plot_sweep(rows, out_path)
    print(markdown_table(rows))
    print(f"\nwritten: {out_path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
