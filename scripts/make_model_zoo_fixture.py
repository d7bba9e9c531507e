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
  conv, bn, blocks.<i>.{conv1,bn1,conv2,bn2,shortcut.0,shortcut.1}, fc.
- vgg11[_bn][_w<k>]: torchvision's make_layers(cfgs["A"]) with widths divided by k and the
  single Linear(512 / k -> 10) head named "classifier"; in the _bn version the convs have no
  bias (BN follows each).
- airbench94: airbench94.py's make_net() (Keller Jordan, KellerJordan/cifar10-airbench,
  legacy/airbench94.py) with minidl's names: whiten (Conv 3 -> 24, kernel 2, bias), block1..3
  ({conv1, norm1, conv2, norm2}: ConvGroup 24 -> 64 -> 256 -> 256, convs without bias), head
  (Linear 256 -> 10, no bias); airbench's nn.Sequential numbers them 0, 2, 3, 4 and 7.
The networks are the twins of python/minidl/models.py (build_model), which the python/ package
also uses to load minidl's checkpoints into PyTorch.
BN entries are weight, bias, running_mean, running_var (num_batches_tracked is left out:
minidl does not keep it). Only names, shapes and counts: no values, no seed, deterministic.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
# The torch.nn twins of minidl's models with minidl's names (python/minidl/models.py).
from minidl.models import build_model  # noqa: E402

MODELS = ["cnn", "resnet8", "resnet14", "resnet20", "resnet32", "resnet56", "resnet14_32",
          "resnet20_64", "vgg11", "vgg11_bn", "vgg11_w4", "vgg11_bn_w4", "airbench94"]


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
           "models": {name: describe(build_model(name)) for name in MODELS}}
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
