#!/usr/bin/python3
"""Plots of a `minidl experiment bn-only` run (Debian's python3-matplotlib).

Usage: /usr/bin/python3 scripts/plot_experiment.py RUN_DIR
Reads RUN_DIR/<variant>/metrics.csv and RUN_DIR/<variant>/gammas.csv; writes
RUN_DIR/accuracy.png (test accuracy per epoch, one line per variant) and RUN_DIR/gammas.png
(histogram of the learned BatchNorm gammas per variant).
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(run_dir):
    variants = [d for d in sorted(os.listdir(run_dir))
                if os.path.isfile(os.path.join(run_dir, d, "metrics.csv"))]
    if not variants:
        sys.exit(f"plot_experiment: no <variant>/metrics.csv under {run_dir}")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in variants:
        rows = read_csv(os.path.join(run_dir, v, "metrics.csv"))
        ax.plot([int(r["epoch"]) for r in rows], [100 * float(r["test_accuracy"]) for r in rows],
                marker="o", ms=3, label=v)
    ax.axhline(10, color="gray", ls=":", lw=1, label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%), eval mode")
    ax.set_title("What learns: CIFAR-10 test accuracy per epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "accuracy.png"), dpi=120)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in variants:
        path = os.path.join(run_dir, v, "gammas.csv")
        if not os.path.isfile(path):
            continue
        gammas = [float(r["gamma"]) for r in read_csv(path)]
        ax.hist(gammas, bins=60, alpha=0.5, label=v)
    ax.axvspan(-0.05, 0.05, color="red", alpha=0.1, label="|gamma| < 0.05")
    ax.set_xlabel("BatchNorm gamma (weight)")
    ax.set_ylabel("features")
    ax.set_title("Learned BatchNorm gammas")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "gammas.png"), dpi=120)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
