#!/usr/bin/env python3
"""Every airbench94 run recorded under docs/airbench94 (each folder's seed*/results.json), one
row per run, then the mean and sample standard deviation per folder and over all runs, and what
they say about a three-run mean.

Usage: /usr/bin/python3 scripts/airbench_summary.py [DIR]   (DIR defaults to docs/airbench94)

A folder is one machine and build (docs/airbench94/README.md says which); the top folder's own
seed*/ runs are listed as "(top)". Accuracies are test accuracy in percent on the 10,000 test
images, without TTA and with TTA level 2; the wall time is results.json's total_seconds.
The last lines give the standard deviation of a mean of three runs (sd / sqrt(3)) and, for a
normal distribution with the pooled mean and sd, the chance that a three-run mean reaches 94.0%.
"""
import glob
import json
import math
import os
import statistics
import sys


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else "docs/airbench94"
    runs = []
    for path in sorted(glob.glob(os.path.join(root, "**", "results.json"), recursive=True)):
        r = json.load(open(path))
        folder = os.path.relpath(os.path.dirname(os.path.dirname(path)), root)
        runs.append((folder if folder != "." else "(top)", r))
    if not runs:
        sys.exit(f"airbench_summary: no seed*/results.json under {root}")
    print("| folder | seed | test accuracy | with TTA 2 | wall time |")
    print("|---|---:|---:|---:|---:|")
    for folder, r in runs:
        print(f"| {folder} | {r['seed']} | {100 * r['test_accuracy']:.2f}% | "
              f"{100 * r['test_accuracy_tta']:.2f}% | {r['total_seconds'] / 60:.1f} min |")
    print()
    print("| folder | runs | mean with TTA 2 | sd | mean without TTA |")
    print("|---|---:|---:|---:|---:|")
    groups = {}
    for folder, r in runs:
        groups.setdefault(folder, []).append(r)
    groups["all"] = [r for _, r in runs]
    for folder, rs in groups.items():
        tta = [100 * r["test_accuracy_tta"] for r in rs]
        plain = [100 * r["test_accuracy"] for r in rs]
        sd = f"{statistics.stdev(tta):.2f}" if len(tta) > 1 else "-"
        print(f"| {folder} | {len(rs)} | {statistics.mean(tta):.2f}% | {sd} | "
              f"{statistics.mean(plain):.2f}% |")
    tta = [100 * r["test_accuracy_tta"] for r in groups["all"]]
    if len(tta) > 1:
        mean, sd = statistics.mean(tta), statistics.stdev(tta)
        sd3 = sd / math.sqrt(3)
        p = 0.5 * math.erfc((94.0 - mean) / (sd3 * math.sqrt(2)))
        print()
        print(f"all {len(tta)} runs: mean {mean:.3f}%, sd {sd:.3f}; a three-run mean has sd "
              f"{sd3:.3f} and reaches 94.0% with probability {p:.2f} (normal approximation)")


if __name__ == "__main__":
    main()
