#!/usr/bin/env python3
"""Every airbench94 run recorded under docs/airbench94 (each folder's seed*/results.json), one
row per run, then the mean and sample standard deviation per folder and over all runs, and what
they say about a three-run mean.

Usage: /usr/bin/python3 scripts/airbench_summary.py [DIR]   (DIR defaults to docs/airbench94)

A folder is one machine and build (docs/airbench94/README.md says which); the top folder's own
seed*/ runs are listed as "(top)". Accuracies are test accuracy in percent on the 10,000 test
images, without TTA and with TTA level 2; the wall time is results.json's total_seconds.
The last lines give the standard deviation of a mean of three runs (sd / sqrt(3)) and, for a
normal distribution with the pooled mean and sd, the chance that a three-run mean reaches 94.0%;
then the runs split by convolution algorithm (the folders in DIRECT_CONV were built with
-DMINIDL_WINOGRAD=OFF, every other with the default Winograd F(4x4)), each set's one-sample
t-test against airbench94's 94.01% (1,000 runs), and the two sets against each other (Welch's
t-test and the Mann-Whitney U test, scipy: python3-scipy); last, each direct run beside the
Winograd run of the same seed on the same machine (MACHINE: the folders' machines), which drew
the same initial weights and batches, and the paired t-test and Wilcoxon signed-rank test of
the differences.
"""
import glob
import json
import math
import os
import statistics
import sys

# Folders whose runs used im2col + GEMM for every convolution (docs/airbench94/README.md).
DIRECT_CONV = {"xeon_direct_conv", "epyc_zen5_direct_conv"}
# The machine each folder's runs ran on (docs/airbench94/README.md), for the paired comparison.
MACHINE = {"xeon": "Xeon", "xeon_more": "Xeon", "xeon_direct_conv": "Xeon",
           "epyc_zen5": "Zen 5 EPYC", "epyc_zen5_more": "Zen 5 EPYC",
           "epyc_zen5_direct_conv": "Zen 5 EPYC", "(top)": "Zen 3 EPYC"}
AIRBENCH94_MEAN = 94.01  # legacy/airbench94.py's header: mean of 1,000 runs, with TTA level 2


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
    wino = [100 * r["test_accuracy_tta"] for f, r in runs if f not in DIRECT_CONV]
    direct = [100 * r["test_accuracy_tta"] for f, r in runs if f in DIRECT_CONV]
    try:
        from scipy import stats
    except ImportError:
        print("\n(scipy missing: scripts/install_deps.sh --with-python installs python3-scipy; "
              "the tests by convolution algorithm are left out)")
        return
    print()
    print(f"| convolutions | runs | mean with TTA 2 | sd | t-test against {AIRBENCH94_MEAN}% |")
    print("|---|---:|---:|---:|---:|")
    for algo, xs in (("Winograd F(4x4)", wino), ("direct (im2col + GEMM)", direct),
                     ("all", wino + direct)):
        if len(xs) < 2:
            continue
        t = stats.ttest_1samp(xs, AIRBENCH94_MEAN)
        print(f"| {algo} | {len(xs)} | {statistics.mean(xs):.3f}% | {statistics.stdev(xs):.3f} | "
              f"t = {t.statistic:.2f}, p = {t.pvalue:.3f} |")
    w, d = wino, direct
    if len(w) > 1 and len(d) > 1:
        welch = stats.ttest_ind(d, w, equal_var=False)
        mw = stats.mannwhitneyu(d, w, alternative="two-sided")
        print()
        print(f"direct - Winograd: {statistics.mean(d) - statistics.mean(w):+.3f} points; Welch's "
              f"t = {welch.statistic:.2f}, p = {welch.pvalue:.3f}; Mann-Whitney U = "
              f"{mw.statistic:.0f}, p = {mw.pvalue:.3f} (two-sided)")
    machine = lambda folder: MACHINE.get(folder, folder)
    winograd_of = {(machine(f), r["seed"]): r for f, r in runs if f not in DIRECT_CONV}
    pairs = []  # (machine, seed, Winograd accuracy, direct accuracy), with TTA 2, in percent
    for f, r in runs:
        twin = winograd_of.get((machine(f), r["seed"]))
        if f in DIRECT_CONV and twin is not None:
            pairs.append((machine(f), r["seed"], 100 * twin["test_accuracy_tta"],
                          100 * r["test_accuracy_tta"]))
    if len(pairs) > 1:
        print()
        print("| machine | seed | Winograd, with TTA 2 | direct, with TTA 2 | direct - Winograd |")
        print("|---|---:|---:|---:|---:|")
        for name, seed, w_acc, d_acc in pairs:
            print(f"| {name} | {seed} | {w_acc:.2f}% | {d_acc:.2f}% | {d_acc - w_acc:+.2f} |")
        diffs = [d_acc - w_acc for _, _, w_acc, d_acc in pairs]
        paired = stats.ttest_1samp(diffs, 0.0)  # the paired t-test: the differences against 0
        wil = stats.wilcoxon(diffs)
        print()
        print(f"{len(pairs)} pairs: mean difference {statistics.mean(diffs):+.3f} points (sd "
              f"{statistics.stdev(diffs):.3f}); paired t = {paired.statistic:.2f}, "
              f"p = {paired.pvalue:.3f}; Wilcoxon W = {wil.statistic:.0f}, p = {wil.pvalue:.3f} "
              f"(two-sided)")


if __name__ == "__main__":
    main()
