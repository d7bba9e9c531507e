#!/usr/bin/python3
"""Normalization against the number of images that share statistics, like Figure 1 of Wu & He,
"Group Normalization" (ECCV 2018), from `minidl experiment batch-size` (Debian's
python3-matplotlib).

Usage: /usr/bin/python3 scripts/plot_batch_size.py OUT_DIR

Reads OUT_DIR/results.csv, one row per cell, with the columns
  cell,norm,group,train_accuracy,test_accuracy_eval_mode,test_accuracy_train_mode,
  gap_train_minus_eval,wall_seconds
(accuracies are fractions 0..1; group is empty for gn and ln, which do not depend on it).

Writes OUT_DIR/batch_size.png: left, test error (eval mode) against the images sharing
statistics (log2 axis), one line each for bn and renorm and flat lines for gn and ln; right, the
train-mode minus eval-mode test accuracy, in points. Exits non-zero if results.csv is missing,
has no rows, or lacks a column.
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ["cell", "norm", "group", "test_accuracy_eval_mode", "gap_train_minus_eval"]
STYLE = {"bn": ("C0", "BatchNorm (ghost groups of G)"),
         "renorm": ("C1", "Batch Renorm (groups of G)"),
         "gn": ("C2", "GroupNorm"), "ln": ("C3", "LayerNorm")}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: plot_batch_size.py OUT_DIR")
    path = os.path.join(sys.argv[1], "results.csv")
    if not os.path.isfile(path):
        sys.exit(f"{path}: no such file")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{path}: no rows")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        sys.exit(f"{path}: missing column(s) {', '.join(missing)}")
    groups = sorted({int(r["group"]) for r in rows if r["group"]})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for norm, (color, label) in STYLE.items():
        mine = [r for r in rows if r["norm"] == norm]
        if not mine:
            continue
        if mine[0]["group"]:  # depends on G: a line
            mine.sort(key=lambda r: int(r["group"]))
            xs = [int(r["group"]) for r in mine]
            left.plot(xs, [100 * (1 - float(r["test_accuracy_eval_mode"])) for r in mine], "o-",
                      color=color, label=label)
            right.plot(xs, [100 * float(r["gap_train_minus_eval"]) for r in mine], "o-",
                       color=color, label=label)
        else:  # one run: a flat line across the G axis
            err = 100 * (1 - float(mine[0]["test_accuracy_eval_mode"]))
            left.axhline(err, color=color, linestyle="--", label=label)
            right.axhline(100 * float(mine[0]["gap_train_minus_eval"]), color=color,
                          linestyle="--", label=label)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(groups)
        ax.set_xticklabels([str(g) for g in groups])
        ax.set_xlabel("images sharing statistics in training (G)")
        ax.grid(alpha=0.3)
    left.set_ylabel("test error, eval mode (%)")
    left.set_title("error against G (global batch fixed)")
    right.set_ylabel("train-mode minus eval-mode test accuracy (points)")
    right.set_title("train/eval gap")
    right.axhline(0, color="black", linewidth=0.6)
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(sys.argv[1], "batch_size.png"), dpi=120)


if __name__ == "__main__":
    main()
