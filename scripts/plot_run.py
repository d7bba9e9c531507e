#!/usr/bin/python3
"""Curves of one training run (`minidl train --out RUN_DIR`; Debian's python3-matplotlib).

Usage: /usr/bin/python3 scripts/plot_run.py RUN_DIR      (or: minidl plot RUN_DIR)

Reads
  RUN_DIR/metrics.csv  epoch,train_loss,train_accuracy,test_loss,test_accuracy,... one row per
                       epoch (accuracies are fractions 0..1; a test column is empty for an epoch
                       that was not evaluated, e.g. airbench94's all but the last)
  RUN_DIR/config.json  only its "model" and "recipe", named in the titles (optional)
Writes
  RUN_DIR/accuracy.png  train and test accuracy (%) per epoch, the best test epoch marked
  RUN_DIR/loss.png      train and test loss per epoch
Epoch ticks are integers at any run length; legends sit outside the curves. Prints the two
paths. Exits with status 1 and a one-line message on stderr if metrics.csv is missing, has no
rows, or lacks the epoch, train_loss or train_accuracy column.
"""
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from plot_experiment import DPI, GRID_ALPHA, integer_epoch_axis, read_csv  # noqa: E402

PROG = "plot_run"
REQUIRED = ("epoch", "train_loss", "train_accuracy")


def fail(message):
    """Exit with status 1 and `message` on stderr."""
    sys.exit(f"{PROG}: {message}")


def number(text):
    """float of a CSV field; nan for an empty or unparsable one."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def column(rows, key, scale=1.0):
    """(epochs, values * scale) of the rows whose `key` is a finite number."""
    pairs = [(int(number(r["epoch"])), scale * number(r.get(key))) for r in rows]
    pairs = [(e, v) for e, v in pairs if math.isfinite(v)]
    return [e for e, _ in pairs], [v for _, v in pairs]


def run_title(run_dir):
    """"<folder>: <model>, recipe <recipe>" from config.json (the folder name alone without)."""
    name = os.path.basename(os.path.normpath(run_dir))
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return name
    if not isinstance(config, dict):
        return name
    parts = [str(config[k]) if k == "model" else f"{k} {config[k]}"
             for k in ("model", "recipe") if isinstance(config.get(k), str)]
    return f"{name}: {', '.join(parts)}" if parts else name


def plot_curves(rows, keys, scale, ylabel, title, out_path, mark_best=None, unit=""):
    """One line per (key, label) of `keys` against epoch; `mark_best` = "max"/"min" marks the
    extreme of the last key. Legend to the right of the axes."""
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for key, label, color in keys:
        epochs, values = column(rows, key, scale)
        if epochs:
            ax.plot(epochs, values, marker="o", ms=3, color=color, label=label)
    if mark_best:
        epochs, values = column(rows, keys[-1][0], scale)
        if epochs:
            pick = max if mark_best == "max" else min
            best = pick(range(len(values)), key=lambda i: values[i])
            label = f"best test: {values[best]:.2f}{unit} (epoch {epochs[best]})"
            ax.plot([epochs[best]], [values[best]], marker="*", ms=12, color=keys[-1][2],
                    ls="none", label=label)
    integer_epoch_axis(ax, [int(number(r["epoch"])) for r in rows])
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=GRID_ALPHA)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)  # outside the curves
    fig.tight_layout()
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)


def main(run_dir):
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.isfile(path):
        fail(f"{path} not found (is {run_dir} a folder written by minidl train?)")
    rows = read_csv(path)
    if not rows:
        fail(f"{path} has no rows")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        fail(f"{path} lacks the column(s) {', '.join(missing)}")
    title = run_title(run_dir)
    accuracy = os.path.join(run_dir, "accuracy.png")
    loss = os.path.join(run_dir, "loss.png")
    plot_curves(rows, [("train_accuracy", "train", "C0"),
                       ("test_accuracy", "test (eval mode)", "C1")], 100.0, "accuracy (%)",
                f"Accuracy per epoch, {title}", accuracy, mark_best="max", unit="%")
    plot_curves(rows, [("train_loss", "train", "C0"), ("test_loss", "test", "C1")], 1.0,
                "cross-entropy loss", f"Loss per epoch, {title}", loss)
    print(f"{PROG}: wrote {accuracy}, {loss}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
