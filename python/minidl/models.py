"""The torch.nn twins of minidl's models (layers/models/*.hpp), with minidl's state names, so a
minidl checkpoint loads into them unchanged (needs torch; Debian's python3-torch).

    build_model(name, norm="bn", gn_groups=32, num_classes=10) -> torch.nn.Module
    load_model(path) -> (model in eval mode, minidl.safetensors.Checkpoint)
    load_state(model, tensors)  copies a checkpoint's tensors into a twin, names and shapes checked

The models, as minidl defines them ([N, 3, 32, 32] -> logits [N, num_classes]):
- resnet<D>[_<W>] (D = 6k + 2, W default 16): conv3x3(3 -> W) - norm - ReLU, three stages of k
  BasicBlocks (W, 2W, 4W channels; the first block of stages 2 and 3 has stride 2 and a
  shortcut of conv1x1 + norm), global average pool, fc. Names conv, bn, blocks.<i>.{conv1, bn1,
  conv2, bn2, shortcut.0, shortcut.1}, fc (open_lth's cifar_resnet_D_W). `norm`: bn
  (BatchNorm2d), gn (GroupNorm of min(gn_groups, C) groups), ln (GroupNorm of 1 group), none.
- vgg11[_bn|_noisybn][_w<k>]: VGG-A (torchvision's make_layers(cfgs["A"])) with widths / k, then
  flatten and one Linear(512 / k -> classes) named classifier; _bn: convs without bias, each
  followed by BatchNorm2d; _noisybn: also minidl's ActivationNoise after each BN, the identity in
  eval mode (this twin adds no noise: it refuses train mode).
- cnn: a Sequential [conv3x3 - BN - ReLU] x2 (32), maxpool, x2 (64), maxpool, conv (128) - BN -
  ReLU, maxpool, global average pool (one module), Linear(128 -> classes); names "0.weight", ...
- airbench94: Keller Jordan's airbench94 network: whiten (conv 2x2, 3 -> 24, bias) - GELU,
  block1..3 (ConvGroup 24 -> 64 -> 256 -> 256: conv1 - maxpool 2 - norm1 - GELU - conv2 - norm2 -
  GELU; BN eps 1e-12), maxpool 3, flatten, head (Linear 256 -> classes, no bias), logits / 9.
GELU is exact (erf). BatchNorm's eps is minidl's (1e-5, airbench94 1e-12); torch's
num_batches_tracked buffers are not in minidl's checkpoints and are left as built.
"""
import json
import re

import torch
import torch.nn.functional as F
from torch import nn

from . import safetensors


def norm_layer(norm, channels, gn_groups):
    """The ResNets' normalization layer of `channels` channels (see the module docstring)."""
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm in ("gn", "ln"):
        groups = 1 if norm == "ln" else min(gn_groups, channels)
        if channels % groups:
            raise ValueError(f"gn_groups {gn_groups}: {groups} groups do not divide {channels} "
                             "channels")
        return nn.GroupNorm(groups, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be bn, gn, ln or none, got {norm!r}")


class BasicBlock(nn.Module):
    """relu(bn1(conv1 x)), then relu(bn2(conv2 h) + shortcut(x)); the shortcut (conv1x1 with the
    block's stride + norm) only where the shape changes."""

    def __init__(self, c_in, c_out, downsample, norm, gn_groups):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(norm, c_out, gn_groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = norm_layer(norm, c_out, gn_groups)
        self.shortcut = None
        if downsample or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          norm_layer(norm, c_out, gn_groups))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + (self.shortcut(x) if self.shortcut else x))


class CifarResNet(nn.Module):
    """minidl's resnet<depth>_<width> (layers/models/resnet.hpp)."""

    def __init__(self, depth, width=16, num_classes=10, norm="bn", gn_groups=32):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 or width < 1:
            raise ValueError(f"resnet depth must be 6k + 2 >= 8 and width >= 1, got {depth}, "
                             f"{width}")
        per_stage = (depth - 2) // 6
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = norm_layer(norm, width, gn_groups)
        blocks, c = [], width
        for stage in range(3):
            for b in range(per_stage):
                blocks.append(BasicBlock(c, width << stage, stage > 0 and b == 0, norm,
                                         gn_groups))
                c = width << stage
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        h = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(h.mean(dim=(2, 3)))


class ActivationNoise(nn.Module):
    """minidl's ActivationNoise (the "noisy BN" of Santurkar et al. 2018) in eval mode: the
    identity. It holds no state; this twin does not draw minidl's noise, so train mode raises."""

    def forward(self, x):
        if self.training:
            raise NotImplementedError("the twin of minidl's ActivationNoise has no noise: use it "
                                      "in eval mode (model.eval())")
        return x


class VGG(nn.Module):
    """minidl's vgg11[_bn|_noisybn][_w<k>] (layers/models/vgg.hpp)."""

    CONFIG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]

    def __init__(self, k=1, batch_norm=False, noisy_bn=False, num_classes=10):
        super().__init__()
        if 64 % k:
            raise ValueError(f"the width divisor must divide 64, got {k}")
        layers, c = [], 3
        for v in self.CONFIG_A:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(c, v // k, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v // k))
            if noisy_bn:
                layers.append(ActivationNoise())
            layers.append(nn.ReLU())
            c = v // k
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class GlobalAvgPool(nn.Module):
    """[N, C, H, W] -> [N, C]: the mean over H and W (minidl's GlobalAvgPool2d, one module)."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def cnn(num_classes=10):
    """minidl's "cnn" (layers/models/cnn.cpp), a Sequential."""
    layers = []
    for c_in, c_out, pool in [(3, 32, False), (32, 32, True), (32, 64, False), (64, 64, True),
                              (64, 128, True)]:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, GlobalAvgPool(), nn.Linear(128, num_classes))


class ConvGroup(nn.Module):
    """airbench94's ConvGroup: conv1 - maxpool 2 - norm1 - GELU - conv2 - norm2 - GELU."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(c_out, eps=1e-12, momentum=0.4)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out, eps=1e-12, momentum=0.4)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class Airbench94(nn.Module):
    """minidl's airbench94 (layers/models/airbench.hpp)."""

    LOGIT_SCALE = 1.0 / 9.0

    def __init__(self, num_classes=10):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, bias=True)
        self.block1 = ConvGroup(24, 64)
        self.block2 = ConvGroup(64, 256)
        self.block3 = ConvGroup(256, 256)
        self.head = nn.Linear(256, num_classes, bias=False)

    def forward(self, x):
        x = F.gelu(self.whiten(x))                    # [N, 24, 31, 31]
        x = self.block3(self.block2(self.block1(x)))  # [N, 256, 3, 3]
        x = torch.flatten(F.max_pool2d(x, 3), 1)      # [N, 256]
        return self.head(x) * self.LOGIT_SCALE


def build_model(name, norm="bn", gn_groups=32, num_classes=10):
    """The twin of minidl model `name` (resnet<D>[_<W>], vgg11[_bn|_noisybn][_w<k>], cnn,
    airbench94), freshly initialized by torch (not minidl's init). `norm` and `gn_groups` apply
    to the ResNets only (others take "bn"). Raises ValueError for an unknown name."""
    m = re.fullmatch(r"resnet([0-9]+)(?:_([0-9]+))?", name)
    if m:
        return CifarResNet(int(m[1]), int(m[2] or 16), num_classes, norm, gn_groups)
    if norm != "bn":
        raise ValueError(f"norm {norm} is available for the ResNets only, not {name}")
    m = re.fullmatch(r"vgg11(_bn|_noisybn)?(?:_w([0-9]+))?", name)
    if m:
        return VGG(int(m[2] or 1), m[1] is not None, m[1] == "_noisybn", num_classes)
    if name == "cnn":
        return cnn(num_classes)
    if name == "airbench94":
        return Airbench94(num_classes)
    raise ValueError(f"unknown model {name!r}: resnet<D>[_<W>], vgg11[_bn|_noisybn][_w<k>], "
                     "cnn or airbench94")


def state_names(model):
    """The twin's state names and shapes as minidl names them (num_batches_tracked left out)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def load_state(model, tensors):
    """Copies `tensors` (dict name -> numpy array, a minidl checkpoint's) into `model`. Raises
    ValueError naming every missing, unexpected or misshapen tensor."""
    want = state_names(model)
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    wrong = sorted(k for k in set(want) & set(tensors) if tuple(tensors[k].shape) != want[k])
    if missing or extra or wrong:
        raise ValueError("checkpoint does not fit the model: "
                         + "; ".join(f"{what}: {', '.join(keys[:5])}"
                                     + (f" (+{len(keys) - 5})" if len(keys) > 5 else "")
                                     for what, keys in [("missing", missing), ("unexpected", extra),
                                                        ("other shape", wrong)] if keys))
    state = model.state_dict()
    for k in want:
        state[k] = torch.from_numpy(tensors[k]).to(state[k].dtype)
    model.load_state_dict(state)


def load_model(path):
    """(model, checkpoint): the twin of the model named in `path`'s metadata ("model", and the
    ResNets' "norm" and "gn_groups" from its "config"), holding its tensors, in eval mode. The
    input normalization is checkpoint.metadata.get("normalization", "cifar10")
    (minidl.cifar10.normalize). Raises ValueError for a file without a "model" entry or that
    does not fit."""
    ck = safetensors.load(path)
    name = ck.metadata.get("model")
    if not name:
        raise ValueError(f"{path}: no \"model\" in its metadata (was it written by minidl?)")
    try:
        config = json.loads(ck.metadata.get("config", "{}"))
    except ValueError:
        config = {}
    config = config if isinstance(config, dict) else {}
    head = next((v for k, v in ck.tensors.items() if k in ("fc.weight", "classifier.weight",
                                                            "head.weight")), None)
    classes = head.shape[0] if head is not None else 10
    if name == "cnn":
        classes = ck.tensors[max(ck.tensors, key=lambda k: int(k.split(".")[0]))].shape[0]
    model = build_model(name, config.get("norm", "bn"), int(config.get("gn_groups", 32)),
                        classes)
    try:
        load_state(model, ck.tensors)
    except ValueError as e:
        raise ValueError(f"{path} ({name}): {e}") from None
    return model.eval(), ck
