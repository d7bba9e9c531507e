#!/usr/bin/python3
"""Plots of a `minidl experiment bn-only` run (Debian's python3-matplotlib and numpy).

Usage: /usr/bin/python3 scripts/plot_experiment.py RUN_DIR

Reads, for each variant folder RUN_DIR/<variant>/ that holds a metrics.csv:
  RUN_DIR/<variant>/metrics.csv  epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,
                                 seconds,images_per_second (accuracies are fractions 0..1)
  RUN_DIR/<variant>/gammas.csv   layer,channel,gamma: one row per BatchNorm channel, in network
                                 order (optional; variants without it get no gamma plots)
  RUN_DIR/<variant>/config.json  only its "bn_init", to name the initial gamma (optional)

Writes:
  RUN_DIR/accuracy.png         test accuracy per epoch, one line per variant, chance at 10%
  RUN_DIR/gammas.png           one histogram panel per variant that trains gamma (a shared x
                               axis spanning the gammas themselves, so that gammas near 1 after a
                               short run spread over the bins; the part of |gamma| < 0.05 inside
                               it shaded, that fraction in each panel title); the variants that
                               freeze gamma are named in a footnote
  RUN_DIR/gammas_per_layer.png the gammas of each BN layer, in network order, as box plots (y
                               axis scaled to the data), for the variant of gammas_by_layer.png
  RUN_DIR/gammas_by_layer.png  fraction of features with |gamma| < 0.05 per BN layer, in
                               network order, for `bn` (else the first variant that trains gamma)
  RUN_DIR/gammas_by_layer.csv  the same numbers: layer,features,below_0.05,fraction

Variants appear in the order all, bn, fc, bn+fc, random-per-channel, then any others
alphabetically. Epoch ticks are integers and legends sit outside the axes at any run length. Exits non-zero if RUN_DIR has no <variant>/metrics.csv.
"""
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

# The variants of `minidl experiment bn-only`, in the order the plots and tables use.
VARIANT_ORDER = ["all", "bn", "fc", "bn+fc", "random-per-channel"]
# Variants whose BatchNorm gamma never moves from its initial value.
FROZEN_GAMMA = {"fc", "random-per-channel"}
# A feature counts as switched off when |gamma| is below this (results.csv: gamma_below_0.05).
GAMMA_OFF = 0.05
DPI = 120
GRID_ALPHA = 0.3


def read_csv(path):
    """Rows of a CSV file with a header line, as a list of dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def variant_sort_key(variant):
    """Sort key: the known variants in VARIANT_ORDER, then any others alphabetically."""
    if variant in VARIANT_ORDER:
        return (0, VARIANT_ORDER.index(variant), "")
    return (1, 0, variant)


def variant_color(variant, others=()):
    """A fixed colour per variant, the same in every figure; `others` lists unknown variants."""
    if variant in VARIANT_ORDER:
        return f"C{VARIANT_ORDER.index(variant)}"
    return f"C{(len(VARIANT_ORDER) + list(others).index(variant)) % 10}"


def find_variants(run_dir):
    """Names of the subfolders of run_dir that hold a metrics.csv, in variant order."""
    found = [d for d in os.listdir(run_dir)
             if os.path.isfile(os.path.join(run_dir, d, "metrics.csv"))]
    return sorted(found, key=variant_sort_key)


def read_gammas(run_dir, variant):
    """(layer names per row, gammas as a numpy array) of <variant>/gammas.csv, or None."""
    path = os.path.join(run_dir, variant, "gammas.csv")
    if not os.path.isfile(path):
        return None
    rows = read_csv(path)
    return [r["layer"] for r in rows], np.array([float(r["gamma"]) for r in rows])


def trains_gamma(variant, run_dir):
    """True if the variant learns gamma and left a gammas.csv to show it."""
    return variant not in FROZEN_GAMMA and os.path.isfile(
        os.path.join(run_dir, variant, "gammas.csv"))


def initial_gamma(run_dir, variant):
    """How gamma was initialized ("1" or "U[0, 1]"), from config.json; None if unknown."""
    try:
        with open(os.path.join(run_dir, variant, "config.json")) as f:
            init = json.load(f).get("bn_init")
    except (OSError, ValueError):
        return None
    return {"fixed": "1", "uniform": "U[0, 1]"}.get(init)


def fraction_off(gammas):
    """Fraction of the gammas with |gamma| < GAMMA_OFF (0 for an empty array)."""
    return float(np.mean(np.abs(gammas) < GAMMA_OFF)) if gammas.size else 0.0


def integer_epoch_axis(ax, epochs):
    """Integer ticks on the x (epoch) axis at any run length (no 0.5 epochs on a 2-epoch run),
    with half an epoch of margin on each side so that a single epoch is not on the frame."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if epochs:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)


def plot_accuracy(run_dir, variants, out_path):
    """Test accuracy (%) per epoch, one line per variant, with the 10% chance line."""
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    epochs = []
    for v in variants:
        rows = [r for r in read_csv(os.path.join(run_dir, v, "metrics.csv"))
                if r.get("test_accuracy")]  # an epoch that was not evaluated has it empty
        epochs += [int(r["epoch"]) for r in rows]
        ax.plot([int(r["epoch"]) for r in rows], [100 * float(r["test_accuracy"]) for r in rows],
                marker="o", ms=3, label=v, color=variant_color(v, variants))
    ax.axhline(10, color="gray", ls=":", lw=1, label="chance (10%)")
    integer_epoch_axis(ax, epochs)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%), eval mode")
    ax.set_title("What learns: CIFAR-10 test accuracy per epoch")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: the curves fill the axes
    ax.grid(alpha=GRID_ALPHA)
    fig.tight_layout()
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)


def data_range(arrays):
    """(lo, hi) of the values in `arrays` with 4% margin; a span of at least 0.02 around a
    single value, so that gammas that barely moved still get a readable axis."""
    values = np.concatenate(arrays)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 0.02:
        mid = (lo + hi) / 2
        lo, hi = mid - 0.01, mid + 0.01
    pad = 0.04 * (hi - lo)
    return lo - pad, hi + pad


def common_bins(arrays, max_bins=60):
    """Histogram bin edges shared by all panels, spanning the data (data_range), not a fixed
    interval: about sqrt(count) bins, from 10 to max_bins."""
    lo, hi = data_range(arrays)
    count = sum(a.size for a in arrays) / max(1, len(arrays))
    bins = int(min(max_bins, max(10, np.sqrt(count))))
    return np.linspace(lo, hi, bins + 1)


def shade_switched_off(ax, lo, hi, vertical=True):
    """Shades the part of |gamma| < GAMMA_OFF that lies inside [lo, hi] (nothing if none does),
    without widening the axis to include it."""
    a, b = max(-GAMMA_OFF, lo), min(GAMMA_OFF, hi)
    if a < b:
        span = ax.axvspan if vertical else ax.axhspan
        span(a, b, color="red", alpha=0.15, lw=0)


def frozen_note(run_dir, frozen):
    """Footnote naming the variants whose gamma stays at its initial value."""
    inits = {initial_gamma(run_dir, v) for v in frozen}
    init = f" ({inits.pop()})" if len(inits) == 1 and None not in inits else ""
    return f"{', '.join(frozen)}: gamma frozen at its initial value{init}, not drawn"


def plot_gamma_histograms(run_dir, trained, frozen, out_path):
    """One histogram panel per variant in `trained`, stacked with a shared x axis that spans the
    gammas (common_bins)."""
    gammas = {v: read_gammas(run_dir, v)[1] for v in trained}
    bins = common_bins(list(gammas.values()))
    fig, axes = plt.subplots(len(trained), 1, sharex=True, squeeze=False,
                             figsize=(7, 1.2 + 2.0 * len(trained)))
    for ax, v in zip(axes[:, 0], trained):
        g = gammas[v]
        ax.hist(g, bins=bins, color=variant_color(v, trained))
        shade_switched_off(ax, bins[0], bins[-1])
        ax.set_title(f"{v}: {100 * fraction_off(g):.1f}% of {g.size:,} features with "
                     f"|gamma| < {GAMMA_OFF}; gamma from {g.min():.3g} to {g.max():.3g}",
                     fontsize=10)
        ax.set_ylabel("features")
        ax.grid(alpha=GRID_ALPHA)
    axes[-1, 0].set_xlim(bins[0], bins[-1])
    shaded = bins[0] < GAMMA_OFF and bins[-1] > -GAMMA_OFF
    axes[-1, 0].set_xlabel("learned BatchNorm gamma (weight)"
                           + (f"; shaded: |gamma| < {GAMMA_OFF}" if shaded else ""))
    fig.suptitle("Learned BatchNorm gammas, variants that train gamma")
    if frozen:
        fig.text(0.01, 0.01, frozen_note(run_dir, frozen), fontsize=8, color="dimgray")
    fig.tight_layout(rect=(0, 0.03 if frozen else 0, 1, 1))
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)


def layer_tick_step(count):
    """Label every step-th layer so that at most about 60 labels show."""
    return max(1, int(np.ceil(count / 60)))


def plot_gammas_per_layer(variant, layers, gammas, out_path):
    """Box plot of the gammas of each BN layer in network order (y scaled to the data)."""
    names = list(dict.fromkeys(layers))
    groups = [gammas[[n == name for n in layers]] for name in names]
    fig, ax = plt.subplots(figsize=(min(16, max(7, 2 + 0.3 * len(names))), 5))
    x = np.arange(len(names))
    ax.boxplot(groups, positions=x, widths=0.6, showfliers=True,
               flierprops={"markersize": 2, "alpha": 0.5}, medianprops={"color": "C1"})
    lo, hi = data_range(groups)
    shade_switched_off(ax, lo, hi, vertical=False)
    ax.set_ylim(lo, hi)
    step = layer_tick_step(len(names))
    ax.set_xticks(x[::step])
    ax.set_xticklabels(names[::step], rotation=90, fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xlabel("BatchNorm layer (network order)")
    shaded = lo < GAMMA_OFF and hi > -GAMMA_OFF
    ax.set_ylabel("gamma" + (f" (shaded: |gamma| < {GAMMA_OFF})" if shaded else ""))
    ax.set_title(f"Learned gammas per BN layer, variant {variant} (box: quartiles, whiskers: "
                 "1.5 IQR)", fontsize=10)
    ax.grid(alpha=GRID_ALPHA, axis="y")
    fig.tight_layout()
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)


def per_layer_counts(layers, gammas):
    """[(layer, features, features with |gamma| < GAMMA_OFF)] in first-appearance order."""
    counts = {}
    for name, g in zip(layers, gammas):
        total, off = counts.get(name, (0, 0))
        counts[name] = (total + 1, off + int(abs(g) < GAMMA_OFF))
    return [(name, total, off) for name, (total, off) in counts.items()]


def write_layer_csv(counts, out_path):
    """gammas_by_layer.csv: layer,features,below_0.05,fraction."""
    with open(out_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "features", f"below_{GAMMA_OFF}", "fraction"])
        for name, total, off in counts:
            w.writerow([name, total, off, f"{off / total:.4f}"])


def layer_kind(name):
    """The BN's role, for colouring bars: "stem" for a top-level layer (the ResNet's "bn"),
    else the last name part that is not an index ("bn1", "bn2", "shortcut")."""
    parts = name.split(".")
    if len(parts) == 1:
        return "stem"
    return parts[-2] if parts[-1].isdigit() else parts[-1]


def plot_layer_fractions(variant, counts, out_path):
    """Bar chart: fraction of features with |gamma| < GAMMA_OFF per BN layer, network order."""
    names = [c[0] for c in counts]
    fractions = np.array([100 * off / total for _, total, off in counts])
    overall = 100 * sum(c[2] for c in counts) / sum(c[1] for c in counts)
    kinds = sorted({layer_kind(n) for n in names})
    colors = {k: plt.get_cmap("Dark2")(i % 8) for i, k in enumerate(kinds)}  # not variant colours
    fig, ax = plt.subplots(figsize=(min(16, max(7, 2 + 0.3 * len(names))), 5))
    x = np.arange(len(names))
    ax.bar(x, fractions, color=[colors[layer_kind(n)] for n in names], width=0.8)
    line = ax.axhline(overall, color="black", ls="--", lw=1, label=f"all layers: {overall:.1f}%")
    handles = [line] + [Patch(color=colors[k], label=k) for k in kinds]
    step = layer_tick_step(len(names))
    ax.set_xticks(x[::step])
    ax.set_xticklabels(names[::step], rotation=90, fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(0, max(5.0, 1.15 * max(fractions.max(), overall)))
    ax.set_xlabel("BatchNorm layer (network order)")
    ax.set_ylabel(f"features with |gamma| < {GAMMA_OFF} (%)")
    ax.set_title(f"Features switched off per BN layer, variant {variant}\n"
                 "Frankle et al. (ICLR 2021) find BN-only training disables about a third "
                 "of the features", fontsize=10)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=GRID_ALPHA, axis="y")
    fig.tight_layout()
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)


def main(run_dir):
    if not os.path.isdir(run_dir):
        sys.exit(f"plot_experiment: {run_dir} is not a directory")
    variants = find_variants(run_dir)
    if not variants:
        sys.exit(f"plot_experiment: no <variant>/metrics.csv under {run_dir}")
    plot_accuracy(run_dir, variants, os.path.join(run_dir, "accuracy.png"))
    written = ["accuracy.png"]

    trained = [v for v in variants if trains_gamma(v, run_dir)]
    frozen = [v for v in variants if v in FROZEN_GAMMA]
    if trained:
        plot_gamma_histograms(run_dir, trained, frozen, os.path.join(run_dir, "gammas.png"))
        variant = "bn" if "bn" in trained else trained[0]
        layers, gammas = read_gammas(run_dir, variant)
        counts = per_layer_counts(layers, gammas)
        write_layer_csv(counts, os.path.join(run_dir, "gammas_by_layer.csv"))
        plot_layer_fractions(variant, counts, os.path.join(run_dir, "gammas_by_layer.png"))
        plot_gammas_per_layer(variant, layers, gammas,
                              os.path.join(run_dir, "gammas_per_layer.png"))
        written += ["gammas.png", "gammas_by_layer.png", "gammas_by_layer.csv",
                    "gammas_per_layer.png"]
    else:
        print("plot_experiment: no variant that trains gamma has a gammas.csv; "
              "gammas.png and gammas_by_layer.png not made")
    print(f"plot_experiment: wrote {', '.join(os.path.join(run_dir, w) for w in written)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
