#!/usr/bin/python3
"""Make the PyTorch reference fixtures that tests/test_reference.cpp compares minidl against.

Rerun with Debian's interpreter (the one that has python3-torch):

    /usr/bin/python3 scripts/make_reference_fixtures.py [--out tests/fixtures]

What it makes: one small JSON file per case in tests/fixtures/ (linear, conv2d in four
geometries plus a rectangular kernel, batch norm 1-d/2-d in train and eval mode, group norm and
layer norm (with and without affine, 3-d and 4-d inputs, a group with a large mean; compared
by tests/test_norm_layers.cpp, as is resnet8_4 with --norm gn, ln and none), cross-entropy
with and without label smoothing, max pooling,
global average pooling, GELU (exact), and
three steps of SGD / SGD+Nesterov / plain SGD / Adam / AdamW, and of SGD with two parameter
groups, and airbench94's patch whitening: the eigendecomposition of the 2x2-patch covariance
of a few images and the whitening conv weight made from it). Each file has the layout

    {"meta": {scalar settings, integer label lists},
     "tensors": {"name": {"shape": [...], "data": [flat row-major floats]}, ...}}

How: every case seeds torch with its own seed (so cases do not depend on each other's order),
draws float32 inputs with a nontrivial mean and scale (randn * 2 + 0.5 and the like) and a
random output gradient grad_y, then runs the forward pass and y.backward(grad_y) in float64 on
the (exactly representable) float32 inputs. Every stored value is rounded to float32 and
written as the shortest decimal that reads back as that float32, so the files are
deterministic: running the script twice gives byte-identical files.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
MAX_BYTES = 50 * 1024


def f32_list(t):
    """Flat row-major list of Python floats, each the shortest decimal of the float32 value."""
    a = t.detach().to(torch.float64).contiguous().numpy().astype(np.float32).reshape(-1)
    out = []
    for v in a:
        if not np.isfinite(v):
            raise ValueError("non-finite value in fixture")
        s = np.format_float_positional(v, unique=True, trim="-") if abs(v) >= 1e-4 or v == 0 \
            else np.format_float_scientific(v, unique=True, trim="-")
        f = float(s)
        assert np.float32(f) == v, (s, v)
        out.append(f)
    return out


def entry(t):
    return {"shape": list(t.shape), "data": f32_list(t)}


def randn32(*shape, scale=1.0, shift=0.0):
    """float32 normal draws, returned as a float64 tensor holding exactly those float32 values."""
    return (torch.randn(*shape, dtype=torch.float32) * scale + shift).to(torch.float64)


def leaf(t):
    return t.clone().requires_grad_(True)


def write(out_dir, name, meta, tensors):
    doc = {"meta": meta, "tensors": {k: entry(v) for k, v in tensors.items()}}
    text = json.dumps(doc, separators=(",", ":"), sort_keys=False) + "\n"
    if len(text.encode()) > MAX_BYTES:
        raise RuntimeError(f"{name}: fixture is {len(text)} bytes, over {MAX_BYTES}")
    path = os.path.join(out_dir, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

def case_linear(out):
    torch.manual_seed(1)
    x = randn32(4, 5, scale=2.0, shift=0.5)
    w = randn32(3, 5, scale=0.5)
    b = randn32(3, scale=0.5, shift=0.1)
    gy = randn32(4, 3)
    xl, wl, bl = leaf(x), leaf(w), leaf(b)
    y = F.linear(xl, wl, bl)
    y.backward(gy)
    write(out, "linear.json", {"op": "linear", "has_bias": True},
          {"x": x, "weight": w, "bias": b, "grad_y": gy, "y": y,
           "grad_x": xl.grad, "grad_weight": wl.grad, "grad_bias": bl.grad})


def conv_case(out, name, seed, x_shape, w_shape, stride, padding, has_bias):
    torch.manual_seed(seed)
    x = randn32(*x_shape, scale=2.0, shift=0.5)
    w = randn32(*w_shape, scale=0.3, shift=0.05)
    b = randn32(w_shape[0], scale=0.5, shift=0.1) if has_bias else None
    xl, wl = leaf(x), leaf(w)
    bl = leaf(b) if has_bias else None
    y = F.conv2d(xl, wl, bl, stride=stride, padding=padding)
    gy = randn32(*y.shape)
    y.backward(gy)
    tensors = {"x": x, "weight": w}
    if has_bias:
        tensors["bias"] = b
    tensors.update({"grad_y": gy, "y": y, "grad_x": xl.grad, "grad_weight": wl.grad})
    if has_bias:
        tensors["grad_bias"] = bl.grad
    write(out, name, {"op": "conv2d", "stride": stride, "padding": padding,
                      "has_bias": has_bias}, tensors)


def case_conv(out):
    conv_case(out, "conv2d_k3s1p1_bias.json", 11, (2, 3, 7, 7), (4, 3, 3, 3), 1, 1, True)
    conv_case(out, "conv2d_k3s2p1.json", 12, (2, 3, 8, 8), (5, 3, 3, 3), 2, 1, False)
    conv_case(out, "conv2d_k1s2p0.json", 13, (2, 4, 8, 8), (6, 4, 1, 1), 2, 0, False)
    # Square 5x5 kernel on a rectangular (6 x 9) input.
    conv_case(out, "conv2d_k5s1p2_rect.json", 14, (1, 2, 6, 9), (3, 2, 5, 5), 1, 2, True)
    # Rectangular 3x5 kernel (K_h != K_w), stride 2, on a rectangular input.
    conv_case(out, "conv2d_k3x5s2p1_rectkernel.json", 15, (2, 2, 7, 9), (3, 2, 3, 5), 2, 1,
              True)


def bn_case(out, name, seed, x_shape, training):
    momentum, eps = 0.1, 1e-5
    torch.manual_seed(seed)
    c = x_shape[1]
    x = randn32(*x_shape, scale=2.0, shift=0.5)
    w = randn32(c, scale=0.5, shift=1.0)
    b = randn32(c, scale=0.5, shift=0.1)
    rm = randn32(c, scale=0.5, shift=0.2)
    rv = (torch.rand(c, dtype=torch.float32) * 1.5 + 0.5).to(torch.float64)
    gy = randn32(*x_shape)
    xl, wl, bl = leaf(x), leaf(w), leaf(b)
    rm_run, rv_run = rm.clone(), rv.clone()
    y = F.batch_norm(xl, rm_run, rv_run, wl, bl, training=training, momentum=momentum, eps=eps)
    y.backward(gy)
    tensors = {"x": x, "weight": w, "bias": b, "running_mean": rm, "running_var": rv,
               "grad_y": gy, "y": y, "grad_x": xl.grad, "grad_weight": wl.grad,
               "grad_bias": bl.grad, "running_mean_after": rm_run, "running_var_after": rv_run}
    if not training:
        assert torch.equal(rm_run, rm) and torch.equal(rv_run, rv)
    write(out, name, {"op": "batch_norm", "momentum": momentum, "eps": eps,
                      "training": training}, tensors)


def case_bn(out):
    bn_case(out, "batch_norm2d_train.json", 21, (4, 3, 5, 5), True)
    bn_case(out, "batch_norm2d_eval.json", 22, (4, 3, 5, 5), False)
    bn_case(out, "batch_norm1d_train.json", 23, (6, 4), True)
    bn_case(out, "batch_norm1d_eval.json", 24, (6, 4), False)


def ce_case(out, name, seed, smoothing):
    torch.manual_seed(seed)
    logits = randn32(5, 4, scale=2.0, shift=0.5)
    labels = torch.randint(0, 4, (5,))
    ll = leaf(logits)
    loss = F.cross_entropy(ll, labels, reduction="mean", label_smoothing=smoothing)
    loss.backward()
    write(out, name, {"op": "cross_entropy", "label_smoothing": smoothing, "reduction": "mean",
                      "labels": [int(v) for v in labels]},
          {"logits": logits, "loss": loss, "grad_logits": ll.grad})


def case_ce(out):
    ce_case(out, "cross_entropy.json", 31, 0.0)
    ce_case(out, "cross_entropy_ls.json", 32, 0.1)


def maxpool_case(out, name, seed, x_shape, k, s, p):
    torch.manual_seed(seed)
    x = randn32(*x_shape, scale=2.0, shift=0.5)
    # No ties: every window's maximum is unique (all values distinct).
    assert torch.unique(x).numel() == x.numel()
    xl = leaf(x)
    y = F.max_pool2d(xl, kernel_size=k, stride=s, padding=p)
    gy = randn32(*y.shape)
    y.backward(gy)
    write(out, name, {"op": "max_pool2d", "kernel_size": k, "stride": s, "padding": p},
          {"x": x, "grad_y": gy, "y": y, "grad_x": xl.grad})


def case_pool(out):
    maxpool_case(out, "max_pool2d_k2s2.json", 41, (2, 3, 6, 6), 2, 2, 0)
    maxpool_case(out, "max_pool2d_k3s2p1.json", 42, (2, 2, 7, 7), 3, 2, 1)
    torch.manual_seed(43)
    x = randn32(2, 3, 4, 4, scale=2.0, shift=0.5)
    xl = leaf(x)
    y = F.adaptive_avg_pool2d(xl, 1).flatten(1)
    gy = randn32(*y.shape)
    y.backward(gy)
    write(out, "global_avg_pool.json", {"op": "global_avg_pool2d"},
          {"x": x, "grad_y": gy, "y": y, "grad_x": xl.grad})


def case_gelu(out):
    torch.manual_seed(44)
    x = randn32(3, 4, 5, scale=3.0)  # covers the tails, where Phi(x) is near 0 or 1
    xl = leaf(x)
    y = F.gelu(xl, approximate="none")
    gy = randn32(*y.shape)
    y.backward(gy)
    write(out, "gelu.json", {"op": "gelu", "approximate": "none"},
          {"x": x, "grad_y": gy, "y": y, "grad_x": xl.grad})


def gn_case(out, name, seed, x_shape, groups, affine, shift=0.5, scale=2.0):
    eps = 1e-5
    torch.manual_seed(seed)
    c = x_shape[1]
    x = randn32(*x_shape, scale=scale, shift=shift)
    w = randn32(c, scale=0.5, shift=1.0) if affine else None
    b = randn32(c, scale=0.5, shift=0.1) if affine else None
    gy = randn32(*x_shape)
    xl = leaf(x)
    wl, bl = (leaf(w), leaf(b)) if affine else (None, None)
    y = F.group_norm(xl, groups, wl, bl, eps=eps)
    y.backward(gy)
    tensors = {"x": x}
    if affine:
        tensors.update({"weight": w, "bias": b})
    tensors.update({"grad_y": gy, "y": y, "grad_x": xl.grad})
    if affine:
        tensors.update({"grad_weight": wl.grad, "grad_bias": bl.grad})
    write(out, name, {"op": "group_norm", "num_groups": groups, "eps": eps, "affine": affine},
          tensors)


def ln_case(out, name, seed, x_shape, normalized_shape, affine):
    eps = 1e-5
    torch.manual_seed(seed)
    x = randn32(*x_shape, scale=2.0, shift=0.5)
    w = randn32(*normalized_shape, scale=0.5, shift=1.0) if affine else None
    b = randn32(*normalized_shape, scale=0.5, shift=0.1) if affine else None
    gy = randn32(*x_shape)
    xl = leaf(x)
    wl, bl = (leaf(w), leaf(b)) if affine else (None, None)
    y = F.layer_norm(xl, list(normalized_shape), wl, bl, eps=eps)
    y.backward(gy)
    tensors = {"x": x}
    if affine:
        tensors.update({"weight": w, "bias": b})
    tensors.update({"grad_y": gy, "y": y, "grad_x": xl.grad})
    if affine:
        tensors.update({"grad_weight": wl.grad, "grad_bias": bl.grad})
    write(out, name, {"op": "layer_norm", "normalized_shape": list(normalized_shape), "eps": eps,
                      "elementwise_affine": affine}, tensors)


def case_group_layer_norm(out):
    """GroupNorm (3 groups of 2 channels; 1 group; a [N, C, L] input without affine; a large
    mean, |mean| / std = 1e3) and LayerNorm (over the last dimension; over [C, H, W] of a 4-d
    input; without affine), in float64 on float32 inputs as every case here."""
    gn_case(out, "group_norm.json", 61, (3, 6, 4, 5), 3, True)
    gn_case(out, "group_norm_g1.json", 62, (2, 4, 3, 3), 1, True)
    gn_case(out, "group_norm_3d_noaffine.json", 63, (4, 6, 7), 2, False)
    gn_case(out, "group_norm_offset.json", 64, (2, 4, 3, 3), 2, True, shift=1000.0, scale=1.0)
    ln_case(out, "layer_norm.json", 65, (4, 3, 10), (10,), True)
    ln_case(out, "layer_norm_4d.json", 66, (2, 3, 4, 4), (3, 4, 4), True)
    ln_case(out, "layer_norm_noaffine.json", 67, (5, 12), (12,), False)


class NormBlock(torch.nn.Module):
    """minidl's BasicBlock (layers/models/resnet.hpp) with any norm layer: relu(bn1(conv1 x)),
    then relu(bn2(conv2 h) + shortcut(x)), the shortcut a 1x1 conv + norm where the shape
    changes (torchvision keeps the attribute names bn1, bn2 whatever the norm)."""

    def __init__(self, c_in, c_out, downsample, norm):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(c_out)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm(c_out)
        self.shortcut = None
        if downsample or c_in != c_out:
            self.shortcut = torch.nn.Sequential(
                torch.nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), norm(c_out))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + (self.shortcut(x) if self.shortcut else x))


class NormResNet(torch.nn.Module):
    """minidl's CifarResNet resnet<depth>_<width> with minidl's state names (conv, bn,
    blocks.<i>.*, fc) and `norm` for every BatchNorm."""

    def __init__(self, depth, width, norm):
        super().__init__()
        n = (depth - 2) // 6
        self.conv = torch.nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = norm(width)
        blocks, c = [], width
        for stage in range(3):
            for i in range(n):
                blocks.append(NormBlock(c, width << stage, stage > 0 and i == 0, norm))
                c = width << stage
        self.blocks = torch.nn.Sequential(*blocks)
        self.fc = torch.nn.Linear(c, 10)

    def forward(self, x):
        h = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(h.mean(dim=(2, 3)))


def formula_values(name, shape):
    """The values tests/test_norm_layers.cpp writes into the tensor `name` too (no weights in
    the file): v_i = sin(0.7 i + h / 100), h = sum_j (j + 1) ord(name[j]) mod 997, scaled to
    2 / sqrt(fan_in) for a weight of 2 or more dimensions, 1 + 0.3 v for a 1-d weight (gamma),
    0.2 v for a bias; computed in float64, rounded to float32."""
    h = sum((j + 1) * ord(ch) for j, ch in enumerate(name)) % 997
    v = np.sin(0.7 * np.arange(int(np.prod(shape)), dtype=np.float64) + h / 100.0)
    if len(shape) >= 2:
        v = v * 2.0 / np.sqrt(np.prod(shape[1:]))
    elif name.endswith(".weight"):
        v = 1.0 + 0.3 * v
    else:
        v = 0.2 * v
    return torch.from_numpy(v.astype(np.float32).astype(np.float64).reshape(shape))


def resnet_norm_case(out, name, seed, norm_name, make_norm, grads):
    torch.manual_seed(seed)
    net = NormResNet(8, 4, make_norm).double()
    with torch.no_grad():
        for key, t in net.state_dict().items():
            t.copy_(formula_values(key, tuple(t.shape)))
    x = randn32(2, 3, 8, 8, scale=1.0)
    gy = randn32(2, 10)
    xl = leaf(x)
    y = net(xl)
    y.backward(gy)
    params = dict(net.named_parameters())
    tensors = {"x": x, "grad_y": gy, "y": y, "grad_x": xl.grad}
    for g in grads:
        tensors["grad." + g] = params[g].grad
    write(out, name, {"model": "resnet8_4", "norm": norm_name, "gn_groups": 2,
                      "state_names": list(net.state_dict().keys())}, tensors)


def case_resnet_norms(out):
    """resnet8_4 (an 8 x 8 input) built with --norm gn (2 groups), ln (GroupNorm with one group,
    Wu & He's conv-net LayerNorm) and none, weights from formula_values: logits, the input's
    gradient and a few parameters' gradients of sum(logits * grad_y)."""
    common = ["conv.weight", "blocks.1.shortcut.0.weight", "fc.bias"]
    affine = ["bn.weight", "bn.bias", "blocks.0.bn2.weight", "blocks.1.bn1.bias",
              "blocks.2.shortcut.1.weight", "blocks.2.bn2.bias"]
    resnet_norm_case(out, "resnet_norm_gn.json", 71, "gn",
                     lambda c: torch.nn.GroupNorm(min(2, c), c), common + affine)
    resnet_norm_case(out, "resnet_norm_ln.json", 72, "ln", lambda c: torch.nn.GroupNorm(1, c),
                     common + affine)
    resnet_norm_case(out, "resnet_norm_none.json", 73, "none", lambda c: torch.nn.Identity(),
                     common)


def optim_case(out, name, seed, make_opt, meta):
    torch.manual_seed(seed)
    p0 = randn32(7, scale=1.0, shift=0.3)
    grads = [randn32(7, scale=0.5, shift=0.1) for _ in range(3)]
    p = p0.clone().requires_grad_(True)
    opt = make_opt([p])
    tensors = {"p": p0}
    for i, g in enumerate(grads, 1):
        tensors[f"g{i}"] = g
    for i, g in enumerate(grads, 1):
        opt.zero_grad()
        p.grad = g.clone()
        opt.step()
        tensors[f"p_after_{i}"] = p.detach().clone()
    write(out, name, meta, tensors)


def case_optim(out):
    wd = 5e-4
    for name, seed, momentum, nesterov in (("sgd_momentum.json", 51, 0.9, False),
                                           ("sgd_nesterov.json", 52, 0.9, True),
                                           ("sgd_plain.json", 53, 0.0, False)):
        optim_case(out, name, seed,
                   lambda ps, m=momentum, n=nesterov: torch.optim.SGD(
                       ps, lr=0.1, momentum=m, weight_decay=wd, nesterov=n),
                   {"optimizer": "sgd", "lr": 0.1, "momentum": momentum, "weight_decay": wd,
                    "nesterov": nesterov, "steps": 3})
    for name, seed, cls in (("adam.json", 54, torch.optim.Adam),
                            ("adamw.json", 55, torch.optim.AdamW)):
        optim_case(out, name, seed,
                   lambda ps, c=cls: c(ps, lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                                       weight_decay=1e-2),
                   {"optimizer": "adamw" if cls is torch.optim.AdamW else "adam", "lr": 1e-2,
                    "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2,
                    "decoupled_weight_decay": cls is torch.optim.AdamW, "steps": 3})


def case_param_groups(out):
    """Three steps of SGD (momentum 0.9, Nesterov) with two parameter groups: p (lr 0.1,
    weight decay 5e-4) and q (lr 0.4 = 4x, weight decay 0.02)."""
    torch.manual_seed(56)
    p0, q0 = randn32(5, shift=0.3), randn32(4, shift=-0.2)
    gp = [randn32(5, scale=0.5) for _ in range(3)]
    gq = [randn32(4, scale=0.5) for _ in range(3)]
    p, q = leaf(p0), leaf(q0)
    opt = torch.optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.4, "weight_decay": 0.02}],
                          lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    tensors = {"p": p0, "q": q0}
    for i in range(3):
        tensors[f"gp{i + 1}"], tensors[f"gq{i + 1}"] = gp[i], gq[i]
    for i in range(3):
        opt.zero_grad()
        p.grad, q.grad = gp[i].clone(), gq[i].clone()
        opt.step()
        tensors[f"p_after_{i + 1}"] = p.detach().clone()
        tensors[f"q_after_{i + 1}"] = q.detach().clone()
    write(out, "sgd_param_groups.json",
          {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
           "weight_decay": 5e-4, "q_lr_scale": 4.0, "q_weight_decay": 0.02, "steps": 3},
          tensors)


def case_patch_whitening(out):
    """airbench94's whitening init (legacy/airbench94.py: get_patches, get_whitening_parameters,
    init_whitening_conv) in float64, with minidl's sign convention for the eigenvectors (the
    largest-magnitude component positive; layers/patch_whitening.hpp)."""
    torch.manual_seed(45)
    x = randn32(6, 3, 8, 8, scale=0.8, shift=0.1)
    k, eps = 2, 5e-4
    c = x.shape[1]
    patches = x.unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, c, k, k)
    flat = patches.reshape(patches.shape[0], -1)
    cov = flat.T @ flat / flat.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(cov, UPLO="U")
    eigenvalues = eigenvalues.flip(0)
    vectors = eigenvectors.T.flip(0).clone()  # row i: the i-th largest eigenvalue's eigenvector
    for i in range(vectors.shape[0]):
        big = int(torch.argmax(vectors[i].abs()))
        if vectors[i, big] < 0:
            vectors[i] = -vectors[i]
    scaled = vectors.reshape(-1, c, k, k) / torch.sqrt(eigenvalues + eps).view(-1, 1, 1, 1)
    weight = torch.cat((scaled, -scaled))
    write(out, "patch_whitening.json", {"op": "patch_whitening", "kernel_size": k, "eps": eps},
          {"x": x, "eigenvalues": eigenvalues, "eigenvectors": vectors, "weight": weight})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (tests/fixtures)")
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)  # deterministic reductions, light on CPU
    for case in (case_linear, case_conv, case_bn, case_ce, case_pool, case_gelu,
                 case_group_layer_norm, case_resnet_norms, case_optim, case_param_groups,
                 case_patch_whitening):
        case(out)
    names = sorted(n for n in os.listdir(out) if n.endswith(".json"))
    print(f"wrote {len(names)} fixtures to {out} (torch {torch.__version__})", file=sys.stderr)


if __name__ == "__main__":
    main()
