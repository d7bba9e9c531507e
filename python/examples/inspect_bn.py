#!/usr/bin/python3
"""Inspect the BatchNorm layers of a minidl checkpoint, notebook style (each "# %%" is a cell;
paste them into Jupyter, or run the file). numpy and matplotlib only (Debian's python3-numpy,
python3-matplotlib); no torch, no safetensors package.

Usage: /usr/bin/python3 python/examples/inspect_bn.py CHECKPOINT [--out bn.png]

Prints one line per BatchNorm layer (channels, mean gamma, mean |beta|, the fraction of
|gamma| < 0.05, mean running_mean and running_var), one line for all gammas of the network
(the share with |gamma| < 0.05, the share negative, the median |gamma|) and draws a figure
(default: bn.png next to the checkpoint) of four panels, one box per BN layer in network order:
gamma (weight), beta (bias), running_mean and running_var (log scale).
"""
# %% Setup: make `import minidl` work from anywhere (the package is the folder above this one).
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minidl.bn  # noqa: E402
import minidl.safetensors  # noqa: E402

parser = argparse.ArgumentParser(description="BatchNorm of a minidl checkpoint")
parser.add_argument("checkpoint")
parser.add_argument("--out", help="the figure (default: bn.png beside the checkpoint)")
args = parser.parse_args()

# %% Read the checkpoint: tensors as numpy arrays, metadata as strings.
ck = minidl.safetensors.load(args.checkpoint)
print(f"{args.checkpoint}: model {ck.metadata.get('model', '?')}, epoch "
      f"{ck.metadata.get('epoch', '?')}, {len(ck.tensors)} tensors")
layers = minidl.bn.bn_layers(ck.tensors)
if not layers:
    sys.exit("no BatchNorm layer in this checkpoint (a GroupNorm/LayerNorm/no-norm model?)")

# %% One line per layer.
print(f"{'layer':<24} {'C':>4} {'gamma':>7} {'|beta|':>7} {'|g|<.05':>8} {'r_mean':>8} "
      f"{'r_var':>8}")
for layer in layers:
    g = layer.weight if layer.weight is not None else np.ones_like(layer.running_mean)
    b = layer.bias if layer.bias is not None else np.zeros_like(layer.running_mean)
    print(f"{layer.name:<24} {g.size:>4} {g.mean():7.3f} {np.abs(b).mean():7.3f} "
          f"{np.mean(np.abs(g) < 0.05):8.1%} {layer.running_mean.mean():8.3f} "
          f"{layer.running_var.mean():8.3f}")

# %% The whole network: how many features did training switch off (|gamma| < 0.05) or flip
# (gamma < 0)? The numbers docs/bn-speedrun/README.md reports per seed.
weights = [layer.weight.ravel() for layer in layers if layer.weight is not None]
if weights:  # none when every BatchNorm is affine=False
    gammas = np.concatenate(weights)
    print(f"all {len(layers)} layers, {gammas.size} gamma: {np.mean(np.abs(gammas) < 0.05):.1%} "
          f"with |gamma| < 0.05, {np.mean(gammas < 0):.1%} negative, median |gamma| "
          f"{np.median(np.abs(gammas)):.2f}")

# %% The figure: a box per layer for each of the four tensors.
import matplotlib  # noqa: E402

matplotlib.use("Agg")  # in a notebook, drop this line to see the figure inline
import matplotlib.pyplot as plt  # noqa: E402

panels = [("weight", "gamma (weight)"), ("bias", "beta (bias)"),
          ("running_mean", "running_mean"), ("running_var", "running_var (log scale)")]
names = [layer.name for layer in layers]
x = np.arange(len(layers))
fig, axes = plt.subplots(4, 1, sharex=True, figsize=(min(16, max(7, 2 + 0.3 * len(layers))), 11))
for ax, (field, title) in zip(axes, panels):
    values = [getattr(layer, field) for layer in layers]
    if any(v is None for v in values):
        ax.text(0.5, 0.5, f"no {field} (BatchNorm without affine)", transform=ax.transAxes,
                ha="center", va="center", color="dimgray")
    else:
        ax.boxplot(values, positions=x, widths=0.6, flierprops={"markersize": 2, "alpha": 0.5},
                   medianprops={"color": "C1"})
        if field == "running_var":
            ax.set_yscale("log")
    ax.set_ylabel(title)
    ax.grid(alpha=0.3, axis="y")
step = max(1, int(np.ceil(len(names) / 60)))  # at most about 60 layer labels
axes[-1].set_xticks(x[::step])
axes[-1].set_xticklabels(names[::step], rotation=90, fontsize=8)
axes[-1].set_xlim(-0.6, len(names) - 0.4)
axes[-1].set_xlabel("BatchNorm layer (network order)")
fig.suptitle(f"BatchNorm of {os.path.basename(args.checkpoint)} "
             f"({ck.metadata.get('model', '?')}): one box per layer over its channels")
fig.tight_layout()
out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "bn.png")
fig.savefig(out, dpi=120)
print(f"wrote {out}")

# %% In PyTorch (needs python3-torch): the same checkpoint as a torch.nn model, in eval mode.
# from minidl.models import load_model
# model, ck = load_model(args.checkpoint)
# print(model.bn.weight[:4], model.bn.running_var[:4])   # resnet names: bn, blocks.0.bn1, ...
