#!/usr/bin/python3
"""Make tests/fixtures/vgg11_bn_features.json, the state_dict names and shapes of torchvision's
VGG-A `features`, which tests/test_vgg.cpp compares minidl's vgg11_bn and vgg11 against.

Rerun with Debian's interpreter (the one that has python3-torch):

    /usr/bin/python3 scripts/make_vgg_fixture.py [--out tests/fixtures/vgg11_bn_features.json]

torchvision is not installed (and is not needed): `make_layers` below reproduces, in plain
torch.nn, torchvision/models/vgg.py's `make_layers(cfgs["A"], batch_norm=...)`, which builds
`vgg11_bn().features` and `vgg11().features`: a Sequential of, per number v of the
configuration, Conv2d(in, v, kernel_size=3, padding=1) (with a bias), [BatchNorm2d(v)],
ReLU(inplace=True), and MaxPool2d(kernel_size=2, stride=2) per "M".

The file holds, for "vgg11_bn" and "vgg11", the list of [name, shape] of every entry of
`features.state_dict()` in order, with the names as keys of the whole model's state_dict
("features.0.weight", ...). Only names and shapes: no values, so no seed is involved and the
file is deterministic.

No forward-pass fixture: vgg11_bn_w4 (every width / 4) has 579,098 parameters and 1,376 BN
buffer values, 2.3 MB as float32 (about 7 MB as JSON text), far over the 300 KB a fixture may
take. minidl's test checks the forward pass by shapes, batch independence and a training step
instead.
"""

import argparse
import json
import os

import torch
import torch.nn as nn

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                           "vgg11_bn_features.json")

# torchvision's cfgs["A"] (Simonyan & Zisserman 2015, Table 1, configuration A).
CFG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def make_layers(cfg, batch_norm):
    """torchvision.models.vgg.make_layers, line for line."""
    layers = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


def names_and_shapes(features):
    return [["features." + name, list(t.shape)] for name, t in features.state_dict().items()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    doc = {
        "meta": {
            "source": "torchvision/models/vgg.py make_layers(cfgs['A'], batch_norm), reproduced "
                      "in torch.nn by scripts/make_vgg_fixture.py",
            "torch": torch.__version__.split("+")[0],
        },
        "vgg11_bn": names_and_shapes(make_layers(CFG_A, batch_norm=True)),
        "vgg11": names_and_shapes(make_layers(CFG_A, batch_norm=False)),
    }
    # One [name, shape] per line, so a change reads well in a diff.
    lines = ["{", '  "meta": ' + json.dumps(doc["meta"]) + ","]
    for i, key in enumerate(["vgg11_bn", "vgg11"]):
        lines.append('  "%s": [' % key)
        entries = [json.dumps(e) for e in doc[key]]
        lines += ["    " + e + ("," if j + 1 < len(entries) else "") for j, e in enumerate(entries)]
        lines.append("  ]" + ("," if i == 0 else ""))
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # well-formed
    with open(args.out, "w") as f:
        f.write(text)
    print("wrote %s (%d bytes; vgg11_bn: %d entries, vgg11: %d)"
          % (os.path.normpath(args.out), len(text), len(doc["vgg11_bn"]), len(doc["vgg11"])))


if __name__ == "__main__":
    main()
