#!/usr/bin/python3
"""Make tests/fixtures/model_zoo.json: for each model of minidl's zoo, the names and shapes of
its state_dict and its parameter count, computed from the same architecture written in plain
torch.nn. tests/test_models.cpp builds every model minidl registers and compares.

Rerun with Debian's interpreter (the one that has python3-torch):

    /usr/bin/python3 scripts/make_model_zoo_fixture.py [--out tests/fixtures/model_zoo.json]

The architectures, as minidl defines them (layers/models/*.hpp):
- cnn: [conv3x3 (no bias) - BN - ReLU] x2 (32), maxpool 2, [conv - BN - ReLU] x2 (64),
  maxpool 2, conv (128) - BN - ReLU, maxpool 2, global average pool ([N, C, H, W] -> [N, C],
  one module), Linear(128 -> 10);
  a Sequential, so names are "0.weight", "1.weight", ...
- resnet<D>[_<W>]: open_lth's cifar_resnet_D_W (models/cifar_resnet.py), with minidl's names:
  conv, bn, blocks.<i>.{conv1,bn1,conv2,bn2,shortcut.0,shortcut.1}, fc: the CifarResNet of
  scripts/bench_pytorch.py (the PyTorch side of the benchmarks).
- vgg11[_bn][_w<k>]: torchvision's make_layers(cfgs["A"]) with widths divided by k and the
  single Linear(512 / k -> 10) head named "classifier"; in the _bn version the convs have no
  bias (BN follows each).
- airbench94: airbench94.py's make_net() (Keller Jordan, KellerJordan/cifar10-airbench,
  legacy/airbench94.py) with minidl's names: whiten (Conv 3 -> 24, kernel 2, bias), block1..3
  ({conv1, norm1, conv2, norm2}: ConvGroup 24 -> 64 -> 256 -> 256, convs without bias), head
  (Linear 256 -> 10, no bias); airbench's nn.Sequential numbers them 0, 2, 3, 4 and 7: the
  Airbench94 of scripts/bench_pytorch.py.
BN entries are weight, bias, running_mean, running_var (num_batches_tracked is left out:
minidl does not keep it). Only names, shapes and counts: no values, no seed, deterministic.
"""

import argparse
import json
import os

import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# open_lth's cifar_resnet and airbench94's network, minidl's names (the PyTorch benchmark's models)
from bench_pytorch import Airbench94, CifarResNet  # noqa: E402


class GlobalAvgPool(nn.Module):
    """[N, C, H, W] -> [N, C]: the mean over H, W (minidl's GlobalAvgPool2d, one module)."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def cnn():
    layers = []
    def conv_bn_relu(i, o):
        layers.extend([nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()])
    conv_bn_relu(3, 32)
    conv_bn_relu(32, 32)
    layers.append(nn.MaxPool2d(2))
    conv_bn_relu(32, 64)
    conv_bn_relu(64, 64)
    layers.append(nn.MaxPool2d(2))
    conv_bn_relu(64, 128)
    layers.extend([nn.MaxPool2d(2), GlobalAvgPool(), nn.Linear(128, 10)])
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, k, batch_norm):
        super().__init__()
        layers, i = [], 3
        for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            o = v // k
            layers.append(nn.Conv2d(i, o, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(o))
            layers.append(nn.ReLU())
            i = o
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(i, 10)


MODELS = {
    "cnn": cnn,
    "resnet8": lambda: CifarResNet(8, 16),
    "resnet14": lambda: CifarResNet(14, 16),
    "resnet20": lambda: CifarResNet(20, 16),
    "resnet32": lambda: CifarResNet(32, 16),
    "resnet56": lambda: CifarResNet(56, 16),
    "resnet14_32": lambda: CifarResNet(14, 32),
    "resnet20_64": lambda: CifarResNet(20, 64),
    "vgg11": lambda: VGG(1, False),
    "vgg11_bn": lambda: VGG(1, True),
    "vgg11_w4": lambda: VGG(4, False),
    "vgg11_bn_w4": lambda: VGG(4, True),
    "airbench94": Airbench94,
}


def describe(model):
    entries = [[name, list(t.shape)] for name, t in model.state_dict().items()
               if not name.endswith("num_batches_tracked")]
    return {"parameters": sum(p.numel() for p in model.parameters()), "state": entries}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "model_zoo.json"))
    args = p.parse_args()
    out = {"torch_version": torch.__version__,
           "models": {name: describe(make()) for name, make in MODELS.items()}}
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
