#!/usr/bin/python3
"""PROJECTED data-parallel scaling of minidl training (a model, not a measurement).

For N = 1, 2, 4, ..., 64 processes on 10 and 100 Gbit/s links and three workloads (resnet20,
resnet110 training only BatchNorm, airbench94), prints markdown tables of images/s and
efficiency, with --bn-sync none and --bn-sync global, from

    t(N) = t_compute(B / N) + t_allreduce(N, gradient bytes) [+ t_bn_sync(N)]

where t_compute comes from MEASURED single-process images/s at per-process batch sizes, read
from a JSON file (default docs/distributed/compute.json; scripts/bench_dist.sh --compute-json
FILE writes one), and the communication terms from the network model printed above the tables.
The gradient and BatchNorm sizes are computed here from the architectures (and checked against
the parameter counts minidl prints).

Usage: scripts/project_scaling.py [--compute FILE] [--alpha-10g US] [--alpha-100g US]
Python 3 standard library only.
"""
import argparse
import json
import math
import os
import sys

PROCESSES = [1, 2, 4, 8, 16, 32, 64]
# link: (name, bits per second, default latency per message in microseconds)
LINKS = [("10 Gbit/s", 10e9, 20.0), ("100 Gbit/s", 100e9, 5.0)]


def resnet_cifar(depth, width=16, classes=10):
    """open_lth's cifar_resnet_D_W as minidl builds it (layers/models/resnet.hpp): D = 6k + 2, a
    3x3 stem conv + BN, 3 stages of k BasicBlocks (two 3x3 convs, two BNs) at widths W, 2W, 4W,
    the first block of stages 2 and 3 with a 1x1 conv + BN shortcut, then Linear(4W -> 10).
    Returns (parameter count, [channels of every BN layer])."""
    assert (depth - 2) % 6 == 0
    k = (depth - 2) // 6
    params = 3 * width * 9  # stem conv, no bias
    bn = [width]
    c_in = width
    for stage in range(3):
        c = width << stage
        for block in range(k):
            params += c_in * c * 9 + c * c * 9  # conv1, conv2 (no bias)
            bn += [c, c]
            if c_in != c:
                params += c_in * c  # 1x1 shortcut conv
                bn.append(c)
            c_in = c
    params += c_in * classes + classes  # fc
    params += 2 * sum(bn)  # gamma and beta
    return params, bn


def airbench94():
    """Keller Jordan's airbench94 as minidl builds it (layers/models/airbench.hpp): 2x2 patch
    whitening conv 3 -> 24 with bias (weight frozen), three blocks conv3x3 -> pool -> BN -> GELU
    -> conv3x3 -> BN -> GELU at widths 64, 256, 256 (convs without bias, every BN gamma frozen
    at 1), Linear(256 -> 10, no bias). Returns (parameters, frozen parameters, [BN channels])."""
    whiten_w, whiten_b = 24 * 3 * 2 * 2, 24
    params, frozen, bn = whiten_w + whiten_b, whiten_w, []
    c_in = 24
    for c in (64, 256, 256):
        params += c_in * c * 9 + c * c * 9
        bn += [c, c]
        c_in = c
    params += 256 * 10
    params += 2 * sum(bn)
    frozen += sum(bn)  # the gammas
    return params, frozen, bn


def workloads():
    r20_params, r20_bn = resnet_cifar(20)
    r110_params, r110_bn = resnet_cifar(110)
    ab_params, ab_frozen, ab_bn = airbench94()
    # minidl train prints these totals (resnet110 --train-only bn: "8288 trainable")
    assert r20_params == 272474, r20_params
    assert r110_params == 1730714, r110_params
    assert 2 * sum(r110_bn) == 8288
    assert ab_params == 1972792, ab_params
    return [
        {
            "name": "resnet20",
            "what": "resnet20, every parameter trained, batch 128",
            "batch": 128,
            "grad_floats": r20_params,
            "grad_how": "all %s parameters" % f"{r20_params:,}",
            "bn": r20_bn,
        },
        {
            "name": "resnet110-bn",
            "what": "resnet110 --train-only bn (only BN gamma and beta), batch 128",
            "batch": 128,
            "grad_floats": 2 * sum(r110_bn),
            "grad_how": ("2 x %s BN channels: %d BN layers (stem 16; 3 stages x 18 blocks x 2 "
                         "at 16, 32, 64; shortcut BNs of 32 and 64); of %s parameters"
                         % (f"{sum(r110_bn):,}", len(r110_bn), f"{r110_params:,}")),
            "bn": r110_bn,
        },
        {
            "name": "airbench94",
            "what": "airbench94, batch 1024",
            "batch": 1024,
            "grad_floats": ab_params - ab_frozen,
            "grad_how": ("%s parameters minus the frozen %s BN gammas and %d whitening weights "
                         "(the 24 whitening biases stay in the buffer, as zeros after their 3 "
                         "epochs)" % (f"{ab_params:,}", f"{sum(ab_bn):,}", 24 * 3 * 2 * 2)),
            "bn": ab_bn,
        },
    ]


def interpolate(table, b):
    """images/s at per-process batch b: linear in log2(batch) between the measured neighbours;
    outside the measured range, the nearest measurement (flagged)."""
    pts = sorted((int(k), float(v)) for k, v in table.items())
    if b <= pts[0][0]:
        return pts[0][1], b < pts[0][0]
    if b >= pts[-1][0]:
        return pts[-1][1], b > pts[-1][0]
    for (b0, v0), (b1, v1) in zip(pts, pts[1:]):
        if b0 <= b <= b1:
            if b == b0:
                return v0, False
            f = (math.log2(b) - math.log2(b0)) / (math.log2(b1) - math.log2(b0))
            return v0 + f * (v1 - v0), False
    raise AssertionError


def t_allreduce(n, nbytes, alpha, beta):
    """Ring allreduce: 2 (N-1) messages of latency alpha, 2 (N-1)/N x bytes over the link."""
    if n == 1:
        return 0.0
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * nbytes / beta


def t_allgather(n, nbytes_each, alpha, beta):
    """Small allgather (recursive doubling): log2 N latencies; each process receives the other
    N-1 contributions."""
    if n == 1:
        return 0.0
    return alpha * math.log2(n) + (n - 1) * nbytes_each / beta


def t_bn_sync(n, bn, alpha, beta):
    """--bn-sync global, per step: per BN layer of C channels an allgather of (count, mean, M2)
    = 3C doubles in forward and one of (sum dy, sum dy x_hat) = 2C doubles in backward."""
    return sum(t_allgather(n, 3 * c * 8, alpha, beta) + t_allgather(n, 2 * c * 8, alpha, beta)
               for c in bn)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compute", default=os.path.join(here, "..", "docs", "distributed",
                                                      "compute.json"),
                    help="measured per-process images/s (default docs/distributed/compute.json)")
    ap.add_argument("--alpha-10g", type=float, default=LINKS[0][2],
                    help="latency per message on 10 Gbit/s, microseconds (default 20)")
    ap.add_argument("--alpha-100g", type=float, default=LINKS[1][2],
                    help="latency per message on 100 Gbit/s, microseconds (default 5)")
    args = ap.parse_args()
    links = [(LINKS[0][0], LINKS[0][1], args.alpha_10g), (LINKS[1][0], LINKS[1][1], args.alpha_100g)]
    with open(args.compute) as f:
        compute = json.load(f)
    measured = compute.get("measured") is True
    root = os.path.dirname(here)
    shown = os.path.abspath(args.compute)
    if shown.startswith(root + os.sep):
        shown = os.path.relpath(shown, root)
    wls = workloads()
    out = []
    p = out.append
    p("# PROJECTED data-parallel scaling of minidl (a model, not a measurement)")
    p("")
    if not measured:
        p("> **PLACEHOLDER COMPUTE VALUES**: %s does not say \"measured\": true. Every number"
          % shown)
        p("> below is a placeholder until the file holds measurements (scripts/bench_dist.sh "
          "--compute-json).")
        p("")
    p("Per training step of a global batch B on N processes (one per host):")
    p("")
    p("    t(N)  = t_compute(B/N) + t_allreduce(N, G) [+ t_bn_sync(N) with --bn-sync global]")
    p("    t_compute(b)         = b / images_per_second(b), one process, measured (below)")
    p("    t_allreduce(N, G)    = 2 (N-1) alpha + 2 (N-1)/N x G / beta          (ring allreduce)")
    p("    t_bn_sync(N)         = sum over BN layers of C channels of")
    p("                           [alpha log2 N + (N-1) 3C x 8 B / beta]   forward allgather of (count, mean, M2)")
    p("                         + [alpha log2 N + (N-1) 2C x 8 B / beta]   backward allgather of (sum dy, sum dy x_hat)")
    p("    images/s(N)  = B / t(N);   efficiency(N) = images/s(N) / (N x images/s(1)),  t(1) = t_compute(B)")
    p("")
    p("Assumptions:")
    p("")
    for name, bps, alpha in links:
        p("- %s link: beta = %.2f GB/s (the line rate, no protocol overhead), alpha = %g us per "
          "message." % (name, bps / 8 / 1e9, alpha))
    p("- G = 4 bytes x the trainable parameters: minidl sums every trainable gradient in one flat "
      "float buffer per step (--allreduce mpi) after the backward pass, with no overlap with "
      "compute, so the terms add. --allreduce ordered (an allgather: N x G) is not modelled.")
    p("- Each process computes as fast as the single measured process at its batch B/N "
      "(threads_per_process = %s, on \"%s\"); images/s between measured batches is interpolated "
      "linearly in log2(batch), and outside them the nearest measurement is used (marked *)."
      % (compute.get("threads_per_process", "?"), compute.get("machine", "?")))
    p("- Not modelled: copying the gradients into the flat buffer, per-epoch collectives (state "
      "and running-statistics broadcasts, replica hashes, split evaluation), data loading "
      "differences, stragglers, contention between processes sharing a host or a switch.")
    p("- Ring allreduce over-counts latency for small messages (MPI picks recursive doubling: "
      "log2 N messages); the BN collectives use the latency-dominated log2 N form.")
    p("- --bn-sync none gives each process BN statistics of B/N images (2 at N = 64 for batch 128): "
      "the speed is as modelled, the accuracy is another matter.")
    p("")
    p("Compute input (%s, measured: %s): %s" % (shown,
                                               str(measured).lower(), compute.get("note", "")))
    p("")
    p("Workloads:")
    p("")
    for w in wls:
        p("- **%s**: %s; G = %s floats = %s bytes (%s); %d BN layers, %s channels."
          % (w["name"], w["what"], f"{w['grad_floats']:,}", f"{4 * w['grad_floats']:,}",
             w["grad_how"], len(w["bn"]), f"{sum(w['bn']):,}"))
    for w in wls:
        entry = compute.get("workloads", {}).get(w["name"])
        if not entry or not entry.get("images_per_second"):
            p("")
            p("(%s: no compute measurements in %s: skipped)" % (w["name"], shown))
            continue
        ips = entry["images_per_second"]
        B = w["batch"]
        t1 = B / interpolate(ips, B)[0]
        for name, bps, alpha_us in links:
            beta, alpha = bps / 8, alpha_us * 1e-6
            p("")
            p("### PROJECTED: %s, %s%s" % (w["name"], name,
                                           "" if measured else " (PLACEHOLDER compute)"))
            p("")
            p("| N | batch/process | compute ms | allreduce ms | images/s | efficiency "
              "| BN sync ms | images/s, bn-sync global | efficiency, bn-sync global |")
            p("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
            for n in PROCESSES:
                if B % n:
                    continue
                b = B // n
                v, extrapolated = interpolate(ips, b)
                tc = b / v
                ta = t_allreduce(n, 4 * w["grad_floats"], alpha, beta)
                ts = t_bn_sync(n, w["bn"], alpha, beta)
                ips_n, ips_s = B / (tc + ta), B / (tc + ta + ts)
                p("| %d | %d%s | %.2f | %.3f | %.0f | %.0f%% | %.3f | %.0f | %.0f%% |"
                  % (n, b, "*" if extrapolated else "", tc * 1e3, ta * 1e3, ips_n,
                     100 * ips_n / (n * B / t1), ts * 1e3, ips_s, 100 * ips_s / (n * B / t1)))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
