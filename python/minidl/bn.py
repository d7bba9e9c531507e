"""The BatchNorm layers of a minidl checkpoint, from its tensors alone (numpy only).

A BatchNorm layer is a name prefix P with P.running_mean and P.running_var (and, when affine,
P.weight = gamma and P.bias = beta), each of shape [C]: torch.nn.BatchNorm2d's names, which
minidl keeps. GroupNorm and LayerNorm layers (no running statistics) are not listed.
"""
from collections import namedtuple

import numpy as np

BnLayer = namedtuple("BnLayer", ["name", "weight", "bias", "running_mean", "running_var"])
BnLayer.__doc__ = """One BatchNorm: name (e.g. "blocks.0.bn1"), weight (gamma), bias (beta),
running_mean, running_var, each a float numpy array [C] (weight and bias None if not affine)."""


def bn_layers(tensors):
    """The BatchNorm layers in `tensors` (dict name -> array), in the order their running_mean
    appears (network order for minidl's checkpoints)."""
    layers = []
    for key in tensors:
        if not key.endswith(".running_mean") and key != "running_mean":
            continue
        prefix = key[: -len("running_mean")]
        name = prefix.rstrip(".")
        layers.append(BnLayer(name, tensors.get(prefix + "weight"), tensors.get(prefix + "bias"),
                              tensors[key], tensors.get(prefix + "running_var")))
    return layers


def summary(values):
    """{"mean", "std", "min", "max"} of an array (population std, in float64), as minidl
    bn-stats prints them."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max())}
