#!/usr/bin/python3
"""Plots of `minidl experiment landscape` and `minidl experiment covariate-shift` runs, after
Santurkar, Tsipras, Ilyas & Madry, "How Does Batch Normalization Help Optimization?" (NeurIPS
2018), with Debian's python3-matplotlib and numpy.

Usage: /usr/bin/python3 scripts/plot_why_bn.py OUT_DIR

Which experiment OUT_DIR holds is told by the CSVs in it (when both sets are there, by the
"experiment" of OUT_DIR/config.json). Values "nan" and "inf" (a diverged run) are left out of
every plot. Variants appear as standard, bn, noisy-bn, then any others alphabetically; learning
rates in the order of their first row.

Landscape run (Figure 4 of the paper) reads
  OUT_DIR/smoothness.csv  variant,model,lr,step,epoch,loss,grad_norm,loss_min,loss_max,
                          grad_distance_min,grad_distance_max,beta_smoothness
                          (one row per probe; min and max are over the probe's step sizes eta)
  OUT_DIR/config.json     only its "eta_factors", named in a footnote (optional)
(landscape.csv and metrics.csv of the run are not used) and writes
  OUT_DIR/landscape_loss.png  band loss_min..loss_max of L(w - eta g) and the line of L(w),
                              per variant over training steps, one column per lr
  OUT_DIR/landscape_grad.png  band grad_distance_min..max of ||grad L(w - eta g) - g||, same
                              layout
  OUT_DIR/landscape_beta.png  beta_smoothness per probe (raw values, markers), same layout
A y axis is logarithmic when its values span more than two decades (also the distance row
of covariate_shift.png). Footnotes name the step sizes and count the non-finite probes. The
legends of the landscape plots, accuracy.png and covariate_shift.png sit below the panels, so
they cover no band or curve; epoch and step ticks are integers at any run length.

Covariate-shift run (Figures 2 and 5) reads
  OUT_DIR/metrics.csv          variant,model,lr,epoch,train_loss,train_accuracy,test_loss,
                               test_accuracy,seconds (accuracies are fractions 0..1)
  OUT_DIR/activations.csv      variant,model,lr,step,epoch,p5,p25,p50,p75,p95,mean,std (one
                               layer's pre-activations, one row per probe)
  OUT_DIR/covariate_shift.csv  variant,model,lr,step,epoch,layer,name,grad_norm,distance,cosine
                               (layer is 1-based; one row per probe and layer)
  OUT_DIR/config.json          only its "layer", named in the activations title (optional)
and writes
  OUT_DIR/accuracy.png          training and test accuracy (%) per epoch, one line per
                                (variant, lr)
  OUT_DIR/activations.png       one panel per variant (a row per lr): bands p5..p95 and
                                p25..p75 and the median over training steps
  OUT_DIR/covariate_shift.png   l2 distance ||G - G'|| (top) and cosine (bottom) per training
                                step for a few layers (all if at most 4, else layers 2, middle,
                                second-to-last and last), first lr only

Prints nothing on success. Exits with status 1 and a one-line message on stderr if OUT_DIR is
not a directory, holds neither set of CSVs, or a CSV lacks a column.
"""
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from matplotlib.ticker import MaxNLocator  # noqa: E402

from plot_experiment import DPI, GRID_ALPHA, integer_epoch_axis, read_csv  # noqa: E402

PROG = "plot_why_bn"
VARIANT_ORDER = ["standard", "bn", "noisy-bn"]
VARIANT_COLOR = {"standard": "tab:blue", "bn": "tab:red", "noisy-bn": "tab:green"}
VARIANT_LABEL = {"standard": "Standard", "bn": "Standard + BatchNorm",
                 "noisy-bn": 'Standard + "Noisy" BatchNorm'}
# Colours for variants not in VARIANT_ORDER, none of them used above.
SPARE_COLORS = ["tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
LR_STYLES = ["-", "--", ":", "-."]
# A y axis turns logarithmic when max / min of its positive values exceeds this (two decades).
LOG_SPAN = 100.0
WIDTH = 11.0  # inches

LANDSCAPE_FILES = ["smoothness.csv"]
SHIFT_FILES = ["metrics.csv", "activations.csv", "covariate_shift.csv"]
SMOOTHNESS_COLUMNS = ["variant", "lr", "step", "loss", "loss_min", "loss_max",
                      "grad_distance_min", "grad_distance_max", "beta_smoothness"]
METRICS_COLUMNS = ["variant", "lr", "epoch", "train_accuracy", "test_accuracy"]
ACTIVATION_COLUMNS = ["variant", "lr", "step", "p5", "p25", "p50", "p75", "p95"]
SHIFT_COLUMNS = ["variant", "lr", "step", "layer", "name", "distance", "cosine"]


def fail(message):
    """Exit with status 1 and `message` on stderr."""
    sys.exit(f"{PROG}: {message}")


def load(out_dir, name, columns):
    """Rows of OUT_DIR/name as dicts; exits if the header lacks one of `columns`."""
    path = os.path.join(out_dir, name)
    rows = read_csv(path)
    with open(path, newline="") as f:
        header = f.readline().strip().split(",")
    missing = [c for c in columns if c not in header]
    if missing:
        fail(f"{path} lacks the column(s) {', '.join(missing)}")
    return rows


def read_config(out_dir):
    """OUT_DIR/config.json as a dict ({} if absent or unreadable)."""
    try:
        with open(os.path.join(out_dir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def number(text):
    """float of a CSV field; nan for an empty or unparsable one."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def variant_sort_key(variant):
    """The known variants in VARIANT_ORDER, then any others alphabetically."""
    if variant in VARIANT_ORDER:
        return (0, VARIANT_ORDER.index(variant), "")
    return (1, 0, variant)


def variants_of(rows):
    """The distinct variants of `rows`, in plotting order."""
    return sorted({r["variant"] for r in rows}, key=variant_sort_key)


def lrs_of(rows):
    """The distinct lr strings of `rows`, in the order of their first row."""
    return list(dict.fromkeys(r["lr"] for r in rows))


def variant_color(variant):
    """A fixed colour per variant, the same in every figure."""
    if variant in VARIANT_COLOR:
        return VARIANT_COLOR[variant]
    return SPARE_COLORS[sum(map(ord, variant)) % len(SPARE_COLORS)]


def variant_label(variant):
    """The legend name of a variant (the paper's wording for the known ones)."""
    return VARIANT_LABEL.get(variant, variant)


def series(rows, variant, lr, x_key, y_keys):
    """(x, [y per key]) as numpy arrays for the rows of (variant, lr), sorted by x, keeping only
    the rows where x and every y are finite."""
    picked = []
    for r in rows:
        if r["variant"] != variant or r["lr"] != lr:
            continue
        values = [number(r[x_key])] + [number(r[k]) for k in y_keys]
        if all(math.isfinite(v) for v in values):
            picked.append(values)
    picked.sort(key=lambda v: v[0])
    table = np.array(picked, dtype=float).reshape(len(picked), 1 + len(y_keys))
    return table[:, 0], [table[:, i + 1] for i in range(len(y_keys))]


def maybe_log(axes, values):
    """Logarithmic y on every axis in `axes` if the positive `values` span over two decades."""
    positive = np.asarray(values, dtype=float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if positive.size and positive.max() / positive.min() > LOG_SPAN:
        for ax in axes:
            ax.set_yscale("log")


def no_data(ax):
    """Marks an axis that has nothing to draw."""
    ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center",
            color="dimgray")


def footnote(fig, lines):
    """Grey footnote lines at the bottom of the figure; returns the height fraction they use."""
    if not lines:
        return 0.0
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=8, color="dimgray", va="bottom")
    return min(0.25, (0.03 * len(lines) + 0.01) * 4.5 / fig.get_figheight())


def figure_legend(fig, bottom):
    """One legend for the whole figure, centred below the panels and above the footnotes
    (which take the height fraction `bottom`), of the distinct labels of its axes, at most
    three a row; returns the height fraction it uses (0 if there is nothing to label)."""
    labels = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(label, handle)
    if not labels:
        return 0.0
    ncol = min(3, len(labels))
    rows = -(-len(labels) // ncol)
    fig.legend(list(labels.values()), list(labels), loc="lower center", ncol=ncol, fontsize=9,
               frameon=False, bbox_to_anchor=(0.5, bottom))
    return (0.1 + 0.22 * rows) / fig.get_figheight()


def save(fig, out_path, notes=(), shared_legend=False):
    """Footnotes (and a figure legend above them if shared_legend: outside every panel, so it
    covers no curve or band), tight_layout leaving room for them, write at DPI, close."""
    bottom = footnote(fig, list(notes))
    if shared_legend:
        bottom += figure_legend(fig, bottom)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)


# ---------------------------------------------------------------- landscape (Figure 4)

def lr_columns(lrs, height=4.6):
    """A figure with one subplot column per lr (at least one), as (fig, list of axes)."""
    n = max(1, len(lrs))
    fig, axes = plt.subplots(1, n, figsize=(WIDTH if n < 3 else 12.0, height), squeeze=False)
    return fig, list(axes[0])


def landscape_notes(rows, config):
    """Footnotes: the probe's step sizes (config.json's eta_factors) and how many probes have
    a non-finite value (left out)."""
    notes = []
    factors = config.get("eta_factors")
    if isinstance(factors, list) and factors:
        notes.append("step sizes of each probe: eta = lr x {"
                     + ", ".join(f"{number(f):g}" for f in factors) + "}")
    bad = sum(1 for r in rows
              if not all(math.isfinite(number(r[k])) for k in SMOOTHNESS_COLUMNS[2:]))
    if bad:
        notes.append(f"{bad} of {len(rows)} probes have a nan or inf value (a diverged run); "
                     "those values are left out")
    return notes


def plot_bands(rows, lo_key, hi_key, line_key, ylabel, title, notes, out_path):
    """Per lr column, a band lo..hi per variant over steps (and a thin line of line_key)."""
    lrs = lrs_of(rows)
    fig, axes = lr_columns(lrs)
    for ax, lr in zip(axes, lrs or [None]):
        drawn = []
        for v in variants_of(rows):
            keys = [lo_key, hi_key] + ([line_key] if line_key else [])
            steps, ys = series(rows, v, lr, "step", keys)
            if not steps.size:
                continue
            color = variant_color(v)
            ax.fill_between(steps, ys[0], ys[1], color=color, alpha=0.3, lw=0,
                            label=variant_label(v))
            ax.plot(steps, ys[0], color=color, lw=0.6, alpha=0.6)
            ax.plot(steps, ys[1], color=color, lw=0.6, alpha=0.6)
            if line_key:
                ax.plot(steps, ys[2], color=color, lw=0.9, label=f"{variant_label(v)}: L(w)")
            drawn.extend(np.concatenate(ys))
        finish_landscape_axis(ax, lr, ylabel, drawn)
    maybe_log(axes, [y for ax in axes for line in ax.get_lines() for y in line.get_ydata()])
    fig.suptitle(title)
    save(fig, out_path, notes, shared_legend=True)


def finish_landscape_axis(ax, lr, ylabel, drawn):
    """Labels, title and grid of one landscape panel (its legend is the figure's, below the
    panels, where it covers no band)."""
    if not drawn:
        no_data(ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if lr is not None:
        ax.set_title(f"lr {lr}")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=GRID_ALPHA)


def plot_beta(rows, notes, out_path):
    """Per lr column, the raw beta_smoothness of every probe per variant over steps."""
    lrs = lrs_of(rows)
    fig, axes = lr_columns(lrs)
    for ax, lr in zip(axes, lrs or [None]):
        drawn = []
        for v in variants_of(rows):
            steps, (beta,) = series(rows, v, lr, "step", ["beta_smoothness"])
            if steps.size:
                ax.plot(steps, beta, color=variant_color(v), marker="o", ms=3, lw=1,
                        label=variant_label(v))
                drawn.extend(beta)
        finish_landscape_axis(ax, lr, "effective beta-smoothness", drawn)
    maybe_log(axes, [y for ax in axes for line in ax.get_lines() for y in line.get_ydata()])
    fig.suptitle("Effective beta-smoothness: max over the probe's step sizes of "
                 "||grad L(w - eta g) - g|| / ||eta g||")
    save(fig, out_path, notes, shared_legend=True)


def plot_landscape(out_dir):
    """landscape_loss.png, landscape_grad.png and landscape_beta.png of a landscape run."""
    rows = load(out_dir, "smoothness.csv", SMOOTHNESS_COLUMNS)
    notes = landscape_notes(rows, read_config(out_dir))
    plot_bands(rows, "loss_min", "loss_max", "loss", "loss along the gradient",
               "Loss landscape: range of L(w - eta g) over the probe's step sizes "
               "(band), L(w) (line)", notes, os.path.join(out_dir, "landscape_loss.png"))
    plot_bands(rows, "grad_distance_min", "grad_distance_max", None,
               "l2 change of the gradient",
               "Gradient predictiveness: range of ||grad L(w - eta g) - g|| over the probe's "
               "step sizes", notes, os.path.join(out_dir, "landscape_grad.png"))
    plot_beta(rows, notes, os.path.join(out_dir, "landscape_beta.png"))


# ------------------------------------------------------- covariate shift (Figures 2, 5)

def lr_style(lr, lrs):
    """Line style of an lr: solid when there is a single lr, else one style per lr."""
    return "-" if len(lrs) < 2 else LR_STYLES[lrs.index(lr) % len(LR_STYLES)]


def plot_accuracy(rows, out_path):
    """Training (left) and test (right) accuracy in % per epoch, one line per (variant, lr)."""
    lrs = lrs_of(rows)
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 4.6), sharey=True)
    all_epochs = [int(e) for e in (number(r["epoch"]) for r in rows) if math.isfinite(e)]
    for ax, key, name in zip(axes, ["train_accuracy", "test_accuracy"], ["training", "test"]):
        for lr in lrs:
            for v in variants_of(rows):
                epochs, (acc,) = series(rows, v, lr, "epoch", [key])
                if not epochs.size:
                    continue
                label = variant_label(v) + (f", lr {lr}" if len(lrs) > 1 else "")
                ax.plot(epochs, 100 * acc, color=variant_color(v), ls=lr_style(lr, lrs),
                        marker="o", ms=3, label=label)
        if not ax.get_lines():
            no_data(ax)
        integer_epoch_axis(ax, all_epochs)
        ax.set_title(f"{name} accuracy")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} accuracy (%)")
        ax.grid(alpha=GRID_ALPHA)
    fig.suptitle("Accuracy with and without BatchNorm, and with BatchNorm plus noise after it")
    save(fig, out_path, shared_legend=True)


def plot_activations(rows, config, out_path):
    """One panel per variant (a row per lr, shared y): percentile bands over steps."""
    variants, lrs = variants_of(rows), lrs_of(rows)
    ncols, nrows = max(1, len(variants)), max(1, len(lrs))
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH, 1.0 + 3.4 * nrows), sharey=True,
                             sharex=True, squeeze=False)
    for i, lr in enumerate(lrs or [None]):
        for j, v in enumerate(variants or [None]):
            ax = axes[i, j]
            steps, (p5, p25, p50, p75, p95) = series(rows, v, lr, "step",
                                                     ["p5", "p25", "p50", "p75", "p95"])
            if steps.size:
                color = variant_color(v)
                ax.fill_between(steps, p5, p95, color=color, alpha=0.18, lw=0, label="p5-p95")
                ax.fill_between(steps, p25, p75, color=color, alpha=0.45, lw=0, label="p25-p75")
                ax.plot(steps, p50, color=color, lw=1.3, label="median")
                ax.legend(fontsize=8, loc="upper right")
            else:
                no_data(ax)
            title = variant_label(v) if v is not None else ""
            ax.set_title(title + (f", lr {lr}" if len(lrs) > 1 else ""), fontsize=10)
            if i == nrows - 1:
                ax.set_xlabel("training step")
            ax.grid(alpha=GRID_ALPHA)
        axes[i, 0].set_ylabel("pre-activation value")
    block = config.get("layer")
    where = f"conv block {block}" if block is not None else "one layer"
    fig.suptitle(f"Distribution of the pre-activations of {where} over training "
                 "(percentiles over the probe batch)")
    save(fig, out_path)


def pick_layers(layers):
    """All layers if at most 4, else layer 2, the middle one, the second-to-last and the last."""
    if len(layers) <= 4:
        return list(layers)
    chosen = [layers[1], layers[len(layers) // 2], layers[-2], layers[-1]]
    return list(dict.fromkeys(chosen))


def layer_names(rows):
    """{layer number: its weight's name} from the rows."""
    return {int(r["layer"]): r["name"] for r in rows if math.isfinite(number(r["layer"]))}


def plot_covariate_shift(rows, out_path):
    """Rows: l2 distance and cosine of G and G'; one column per chosen layer; the first lr."""
    lrs = lrs_of(rows)
    first = [r for r in rows if r["lr"] == lrs[0]] if lrs else []
    names = layer_names(first)
    layers = sorted(names)
    shown = pick_layers(layers)
    ncols = max(1, len(shown))
    fig, axes = plt.subplots(2, ncols, figsize=(WIDTH if ncols < 4 else 12.0, 7.0),
                             sharex=True, squeeze=False)
    for j, layer in enumerate(shown or [None]):
        in_layer = [r for r in first if layer is not None and number(r["layer"]) == layer]
        for i, (key, ylabel) in enumerate([("distance", "l2 distance ||G - G'||"),
                                           ("cosine", "cosine of G and G'")]):
            ax = axes[i, j]
            for v in variants_of(in_layer):
                steps, (y,) = series(in_layer, v, lrs[0], "step", [key])
                if steps.size:
                    ax.plot(steps, y, color=variant_color(v), marker="o", ms=3, lw=1,
                            label=variant_label(v))
            if not ax.get_lines():
                no_data(ax)
            if i == 0:
                ax.set_title(f"layer {layer}: {names[layer]}" if layer is not None else "",
                             fontsize=10)
            else:
                ax.set_xlabel("training step")
            if j == 0:
                ax.set_ylabel(ylabel)
            ax.grid(alpha=GRID_ALPHA)
    maybe_log(axes[0], [y for ax in axes[0] for line in ax.get_lines() for y in line.get_ydata()])
    fig.suptitle("Internal covariate shift: gradient G of a layer's weight before and G' after "
                 "the earlier layers' update")
    save(fig, out_path, shift_notes(layers, shown, lrs), shared_legend=True)


def shift_notes(layers, shown, lrs):
    """Footnotes of covariate_shift.png: which layers and which lr are drawn."""
    notes = []
    if 1 in shown:
        notes.append("layer 1 has no earlier layer, so its distance is 0 (cosine 1) by "
                     "definition")
    elif layers:
        notes.append(f"{len(shown)} of {len(layers)} layers shown; layer 1 is left out: no "
                     "earlier layer moves, so its distance is 0 by definition")
    if len(lrs) > 1:
        notes.append(f"only lr {lrs[0]} drawn; the run also has lr {', '.join(lrs[1:])}")
    return notes


def plot_shift_run(out_dir):
    """accuracy.png, activations.png and covariate_shift.png of a covariate-shift run."""
    metrics = load(out_dir, "metrics.csv", METRICS_COLUMNS)
    activations = load(out_dir, "activations.csv", ACTIVATION_COLUMNS)
    shift = load(out_dir, "covariate_shift.csv", SHIFT_COLUMNS)
    plot_accuracy(metrics, os.path.join(out_dir, "accuracy.png"))
    plot_activations(activations, read_config(out_dir), os.path.join(out_dir, "activations.png"))
    plot_covariate_shift(shift, os.path.join(out_dir, "covariate_shift.png"))


# ---------------------------------------------------------------------------------- main

def has_all(out_dir, names):
    """True if every file in `names` is in out_dir."""
    return all(os.path.isfile(os.path.join(out_dir, n)) for n in names)


def choose(out_dir):
    """The experiments to plot, ["landscape"], ["covariate-shift"] or both; exits if none."""
    found = [e for e, names in [("landscape", LANDSCAPE_FILES), ("covariate-shift", SHIFT_FILES)]
             if has_all(out_dir, names)]
    told = read_config(out_dir).get("experiment")
    if len(found) == 2 and told in found:
        return [told]
    if found:
        return found
    expected = {"landscape": LANDSCAPE_FILES, "covariate-shift": SHIFT_FILES}
    if told in expected:
        missing = [n for n in expected[told] if not os.path.isfile(os.path.join(out_dir, n))]
        fail(f"{out_dir} ({told} run per config.json) lacks {', '.join(missing)}")
    fail(f"{out_dir} has neither the landscape file {', '.join(LANDSCAPE_FILES)} nor the "
         f"covariate-shift files {', '.join(SHIFT_FILES)}")


def main(out_dir):
    if not os.path.isdir(out_dir):
        fail(f"{out_dir} is not a directory")
    for experiment in choose(out_dir):
        if experiment == "landscape":
            plot_landscape(out_dir)
        else:
            plot_shift_run(out_dir)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
