#!/usr/bin/python3
"""Time ResNet-20 or airbench94 training steps or inference in PyTorch on the CPU: the baseline
for minidl bench.

Rerun with Debian's interpreter (the one that has python3-torch):

    /usr/bin/python3 scripts/bench_pytorch.py [--model resnet20|airbench94] [--mode train|eval]
        [--train-only all|bn] [--channels-last] [--batch-size 128] [--threads 2] [--steps 20]
        [--warmup 3]

Input: a fixed random batch of --batch-size images [N, 3, 32, 32] (standard normal) with random
labels in [0, 10); output: logits [N, 10].

--model resnet20 (default): the CIFAR-10 ResNet of He et al. 2016 (section 4.2) as named by
open_lth (cifar_resnet_20_16): a 3x3 conv with 16 filters + BN + ReLU, then three segments of
three basic blocks with 16, 32 and 64 filters (the first block of segments 2 and 3 downsamples
with stride 2 and has a 1x1-conv + BN projection shortcut), global average pooling and a 10-way
linear layer; Kaiming-normal conv/linear weights and uniform(0, 1) BN weights.

--model airbench94: the network of Keller Jordan's airbench94 (KellerJordan/cifar10-airbench,
legacy/airbench94.py; arXiv 2404.00498), as minidl's layers/models/airbench.{hpp,cpp}, with the
same names (whiten, block1..3.{conv1,norm1,conv2,norm2}, head) and 1,972,792 parameters:
    whiten  Conv2d(3 -> 24, kernel 2, no padding, bias), GELU    -> [N, 24, 31, 31]
    block1  ConvGroup(24 -> 64)                                  -> [N, 64, 15, 15]
    block2  ConvGroup(64 -> 256)                                 -> [N, 256, 7, 7]
    block3  ConvGroup(256 -> 256)                                -> [N, 256, 3, 3]
    MaxPool2d(3), flatten                                        -> [N, 256]
    head    Linear(256 -> 10, no bias), logits * 1/9             -> [N, 10]
  ConvGroup(in -> out): conv1 3x3 (padding 1, no bias) -> MaxPool2d(2) -> norm1 -> GELU ->
  conv2 3x3 (padding 1, no bias) -> norm2 -> GELU; BatchNorm2d(eps 1e-12, momentum 0.4 in
  PyTorch's convention); GELU exact (erf). Init as airbench's and minidl's: PyTorch's default
  conv/linear init, then Dirac kernels on the first in_channels filters of every conv, whiten
  bias 0, BN weight 1 and bias 0 (values differ from minidl's: other random generator).
  As built, the model freezes (requires_grad False) what minidl's Airbench94 freezes: the
  whitening weight and every BN weight (gamma); the whitening bias, every conv weight, every BN
  bias and the head learn (1,971,352 parameters). --train-only then sets requires_grad exactly
  as minidl's apply_train_only (optim/freeze.cpp), which minidl bench also applies, so the
  trained parameter set matches minidl bench's: all = every parameter learns, gamma and the
  whitening weight included (1,972,792); bn = every BN weight and bias and nothing else (2,304).

--mode train (default): one step = forward, mean cross-entropy (no label smoothing), backward,
torch.optim.SGD step, in train mode (BN uses batch statistics). The optimizer:
  resnet20:   lr 0.1, momentum 0.9, weight decay 1e-4 (open_lth's defaults), no Nesterov;
  airbench94: lr 0.01, momentum 0.9, weight decay 5e-4, Nesterov: minidl bench's step
              (apps/cmd_bench.cpp, the same for every model), not the airbench94 recipe's
              (label smoothing 0.2, Nesterov momentum 0.85, 64x lr for BN biases, lookahead,
              frozen gamma and whitening weight).
SGD gets the trainable parameters only; minidl's SGD gets every parameter and skips those
without a gradient, which is the same update.
--train-only bn sets requires_grad=False on every parameter that is not a BatchNorm weight or
bias (every conv and the final Linear are frozen), and SGD gets only the BN parameters.
--mode eval: one step = one forward pass in model.eval() under torch.no_grad() (BN uses its
running statistics); --train-only is then irrelevant.
--channels-last converts the model and the input to torch.channels_last.

torch.set_num_threads(--threads); oneDNN (mkldnn) is left as the build ships it. The allocator
and OpenMP binding come from the environment (LD_PRELOAD, OMP_PROC_BIND); the JSON says whether
tcmalloc is mapped into the process and what OMP_PROC_BIND was. --steps is used as given (for
batch 1 the caller should pass more steps; scripts/bench_compare.sh passes 20x).
After --warmup untimed steps, --steps steps are timed one by one; seconds_per_step is their mean.
Prints ONE JSON line on stdout (framework, model, mode, train_only, channels_last, batch_size,
threads, steps, warmup, images_per_second, seconds_per_step, peak_rss_mib (getrusage ru_maxrss of
this process, including the interpreter and torch), trainable_parameters, tcmalloc,
omp_proc_bind, torch_version, mkldnn); the BLAS / mkldnn part of torch.__config__.show(), the
parameter counts and the min / median / max step time go to stderr.
"""

import argparse
import contextlib
import json
import os
import re
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, c_in, c_out, downsample):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if downsample or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False),
                                          nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """cifar_resnet_<depth>_<width>: depth = 6 * blocks_per_segment + 2."""

    def __init__(self, depth=20, width=16, num_classes=10):
        super().__init__()
        assert (depth - 2) % 6 == 0
        n = (depth - 2) // 6
        plan = [(width, n), (2 * width, n), (4 * width, n)]
        self.conv = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, c = [], width
        for segment, (filters, count) in enumerate(plan):
            for i in range(count):
                blocks.append(BasicBlock(c, filters, downsample=(segment > 0 and i == 0)))
                c = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight)

    def forward(self, x):
        out = F.relu(self.bn(self.conv(x)))
        out = self.blocks(out)
        out = F.avg_pool2d(out, out.size(3))
        return self.fc(out.flatten(1))


def airbench_conv(c_in, c_out, kernel_size, padding, bias):
    """airbench's Conv: torch's default init, then Dirac kernels on the first c_in filters and
    the bias (if any) 0 (minidl: make_conv in layers/models/airbench.cpp)."""
    conv = nn.Conv2d(c_in, c_out, kernel_size, padding=padding, bias=bias)
    with torch.no_grad():
        if conv.bias is not None:
            conv.bias.zero_()
        nn.init.dirac_(conv.weight[:c_in])
    return conv


def airbench_norm(channels):
    """airbench's BatchNorm: eps 1e-12, momentum 0.4 (PyTorch's convention), weight frozen."""
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


class ConvGroup(nn.Module):
    """airbench94's ConvGroup: conv1 -> pool 2 -> norm1 -> GELU -> conv2 -> norm2 -> GELU."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = airbench_conv(c_in, c_out, 3, padding=1, bias=False)
        self.norm1 = airbench_norm(c_out)
        self.conv2 = airbench_conv(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = airbench_norm(c_out)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class Airbench94(nn.Module):
    """airbench94's network with minidl's names (see the module docstring); the whitening weight
    and every BN weight are frozen as built, as in minidl's Airbench94."""

    LOGIT_SCALE = 1.0 / 9.0

    def __init__(self, num_classes=10):
        super().__init__()
        self.whiten = airbench_conv(3, 24, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.block1 = ConvGroup(24, 64)
        self.block2 = ConvGroup(64, 256)
        self.block3 = ConvGroup(256, 256)
        self.head = nn.Linear(256, num_classes, bias=False)

    def forward(self, x):
        x = F.gelu(self.whiten(x))                    # [N, 24, 31, 31]
        x = self.block3(self.block2(self.block1(x)))  # [N, 256, 3, 3]
        x = F.max_pool2d(x, 3).flatten(1)             # [N, 256]
        return self.head(x) * self.LOGIT_SCALE        # [N, classes]


def config_info():
    """The BLAS / mkldnn / OpenMP lines of torch.__config__.show()."""
    keys = ("blas", "lapack", "mkl", "dnnl", "openmp", "cpu capability", "torch_version",
            "avx")
    lines = []
    for line in torch.__config__.show().splitlines():
        stripped = line.strip().lstrip("- ")
        if stripped.startswith("Build settings:"):
            settings = stripped[len("Build settings:"):].split(", ")
            lines += ["build: " + s.strip() for s in settings
                      if any(k in s.lower() for k in keys) and "FLAGS" not in s]
        elif any(k in stripped.lower() for k in keys):
            lines.append(stripped)
    return "\n".join(lines)


def tcmalloc_loaded():
    """True if a tcmalloc library is mapped into this process (e.g. through LD_PRELOAD)."""
    try:
        with open("/proc/self/maps") as f:
            return "libtcmalloc" in f.read()
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description="PyTorch ResNet-20 / airbench94 CPU benchmark "
                                             "(training step or inference)")
    ap.add_argument("--model", default="resnet20",
                    help="resnet<D>[_<W>]: open_lth's cifar_resnet_<D>_<W> (W 16 when left out; "
                         "resnet20 is cifar_resnet_20_16); airbench94: minidl's airbench94")
    ap.add_argument("--mode", choices=("train", "eval"), default="train",
                    help="train: forward+backward+SGD step; eval: forward under no_grad")
    ap.add_argument("--train-only", choices=("all", "bn"), default="all",
                    help="bn: only BatchNorm weight and bias have requires_grad (train mode)")
    ap.add_argument("--channels-last", action="store_true",
                    help="model and input in torch.channels_last")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    if args.threads < 1 or args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        ap.error("need --threads >= 1, --steps >= 1, --warmup >= 0, --batch-size >= 1")
    resnet = re.fullmatch(r"resnet(\d+)(?:_(\d+))?", args.model)
    if args.model != "airbench94" and not (resnet and (int(resnet[1]) - 2) % 6 == 0
                                           and int(resnet[1]) >= 8):
        ap.error(f"--model must be airbench94 or resnet<D>[_<W>] with D = 6n + 2, got {args.model}")
    if args.mode == "train" and args.batch_size < 2:
        ap.error("--mode train needs --batch-size >= 2 (BatchNorm in train mode)")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("torch " + torch.__version__ + ", mkldnn available: "
          + str(torch.backends.mkldnn.is_available()) + ", threads: "
          + str(torch.get_num_threads()), file=sys.stderr)
    print(config_info(), file=sys.stderr)

    model = (Airbench94(10) if args.model == "airbench94"
             else CifarResNet(int(resnet[1]), int(resnet[2] or 16), 10))
    built_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # As minidl's apply_train_only: "all" unfreezes every parameter (a no-op for resnet20),
    # "bn" leaves exactly the BatchNorm weights and biases.
    if args.train_only == "all":
        for p in model.parameters():
            p.requires_grad_(True)
    elif args.train_only == "bn":
        for m in model.modules():
            for p in m.parameters(recurse=False):
                p.requires_grad_(isinstance(m, nn.BatchNorm2d))
    trainable = [p for p in model.parameters() if p.requires_grad]
    print(f"{args.model}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"{built_trainable} trainable as built, {sum(p.numel() for p in trainable)} trainable "
          f"with --train-only {args.train_only}", file=sys.stderr)
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    if args.mode == "train":
        model.train()
        if args.model != "airbench94":
            opt = torch.optim.SGD(trainable, lr=0.1, momentum=0.9, weight_decay=1e-4)
        else:  # minidl bench's optimizer (apps/cmd_bench.cpp)
            opt = torch.optim.SGD(trainable, lr=0.01, momentum=0.9, weight_decay=5e-4,
                                  nesterov=True)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return float(loss)  # the step's result is materialized before the clock stops
    else:
        model.eval()

        def step():
            return float(model(x)[0, 0])

    times = []
    with torch.no_grad() if args.mode == "eval" else contextlib.nullcontext():
        for _ in range(args.warmup):
            step()
        for _ in range(args.steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    seconds = sum(times) / len(times)
    ordered = sorted(times)
    print(f"step seconds: mean {seconds:.5f}, min {ordered[0]:.5f}, "
          f"median {ordered[len(ordered) // 2]:.5f}, max {ordered[-1]:.5f} "
          f"(stdout reports the mean; a noisy machine shows as max >> min)", file=sys.stderr)

    print(json.dumps({
        "framework": "pytorch",
        "model": args.model,
        "mode": args.mode,
        "train_only": args.train_only,
        "channels_last": args.channels_last,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "steps": args.steps,
        "warmup": args.warmup,
        "images_per_second": round(args.batch_size / seconds, 2),
        "seconds_per_step": round(seconds, 6),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "tcmalloc": tcmalloc_loaded(),
        "omp_proc_bind": os.environ.get("OMP_PROC_BIND"),
        "torch_version": torch.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
    }))

if __name__ == "__main__":
    main()
