#!/usr/bin/python3
"""ctest cases of the python/ package (tests/CMakeLists.txt: python_numpy, python_torch).

Usage: /usr/bin/python3 python/tests/test_minidl_python.py numpy|torch MINIDL RUN_DIR DATA_DIR

RUN_DIR holds a checkpoint minidl trained (the ctest fixture python_checkpoint: resnet8, one
short epoch). Exits 0 when every check passes, 1 with a message naming the failed check, 77
(ctest's skip) with a message when the half's package is missing (numpy; torch).

numpy: minidl.safetensors reads the checkpoint; its BatchNorm layers (minidl.bn) are those of
  `minidl bn-stats --json`, with the same statistics; a copy written by minidl.safetensors.save
  reads back bit for bit, and `minidl eval` of the copy counts the same correct images as of the
  original; the CIFAR-10 reader and normalization give minidl's first test image exactly
  (against the checkpoint's metadata); python/examples/inspect_bn.py draws its figure (when
  matplotlib is installed).
torch: every model of tests/fixtures/model_zoo.json (made from minidl's registered models) has
  a twin with the same state names, shapes and parameter count; the checkpoint loaded into its
  twin classifies the first 1,000 test images with exactly as many correct as `minidl eval`.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
SKIP = 77
TEST_IMAGES = 1000


def check(ok, message):
    """Exit 1 with `message` unless ok."""
    if not ok:
        sys.exit(f"FAIL: {message}")


def run_json(binary, *args):
    """The JSON object `minidl args... --json` prints (fails the test on a non-zero exit)."""
    p = subprocess.run([binary, *args, "--json"], capture_output=True, text=True)
    check(p.returncode == 0, f"minidl {' '.join(args)} failed: {p.stderr.strip()}")
    return json.loads(p.stdout)


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def test_numpy(binary, run_dir, data):
    try:
        import numpy as np
    except ImportError:
        print("numpy is not installed (apt-get install python3-numpy): skipped")
        return SKIP
    import minidl.bn
    import minidl.cifar10
    import minidl.safetensors as st
    path = os.path.join(run_dir, "model.safetensors")
    ck = st.load(path)
    check(ck.metadata.get("model") == "resnet8", f"metadata model: {ck.metadata.get('model')}")
    check(all(t.dtype == np.float32 for t in ck.tensors.values()), "tensors are not all F32")

    stats = run_json(binary, "bn-stats", "--checkpoint", path)
    layers = minidl.bn.bn_layers(ck.tensors)
    check([l.name for l in layers] == [l["name"] for l in stats["layers"]],
          "BatchNorm layers differ from bn-stats --json's")
    for mine, theirs in zip(layers, stats["layers"]):
        check(mine.weight.size == theirs["num_features"], f"{mine.name}: channel count")
        for field in ("weight", "bias", "running_mean", "running_var"):
            s = minidl.bn.summary(getattr(mine, field))
            for key, value in s.items():
                check(close(value, theirs[field][key]),
                      f"{mine.name}.{field} {key}: {value} here, {theirs[field][key]} in minidl")

    copy = os.path.join(run_dir, "copy.safetensors")
    st.save(copy, ck.tensors, ck.metadata)
    again = st.load(copy)
    check(again.metadata == ck.metadata, "metadata changed in a round trip")
    check(list(again.tensors) == list(ck.tensors), "tensor order changed in a round trip")
    for name, t in ck.tensors.items():
        check(again.tensors[name].shape == t.shape and
              again.tensors[name].tobytes() == t.tobytes(), f"{name} changed in a round trip")
    original = run_json(binary, "eval", "--checkpoint", path, "--data", data, "--limit", "200")
    copied = run_json(binary, "eval", "--checkpoint", copy, "--data", data, "--limit", "200")
    check(original["correct"] == copied["correct"] and original["loss"] == copied["loss"],
          f"minidl eval of the Python-written copy differs: {copied} vs {original}")

    images, labels = minidl.cifar10.load(data, train=False, limit=3)
    check(images.shape == (3, 3, 32, 32) and list(labels) == [3, 8, 8], "CIFAR-10 reader")
    x = minidl.cifar10.normalize(images, ck.metadata.get("normalization", "cifar10"))
    mean = np.float32(0.4914)
    check(x[0, 0, 0, 0] == (np.float32(images[0, 0, 0, 0]) / np.float32(255) - mean)
          / np.float32(0.2470), "normalization")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: inspect_bn.py not run")
    else:
        figure = os.path.join(run_dir, "bn.png")
        p = subprocess.run([sys.executable, os.path.join(HERE, "..", "examples", "inspect_bn.py"),
                            path, "--out", figure], capture_output=True, text=True)
        check(p.returncode == 0 and os.path.getsize(figure) > 0,
              f"inspect_bn.py failed: {p.stderr.strip()[-300:]}")
        n_gamma = sum(layer.weight.size for layer in layers if layer.weight is not None)
        check(f"layers, {n_gamma} gamma: " in p.stdout and "median |gamma|" in p.stdout,
              f"inspect_bn.py printed no whole-network gamma line: {p.stdout[-300:]}")
    print(f"numpy half: ok ({len(layers)} BatchNorm layers, {len(ck.tensors)} tensors)")
    return 0


def test_torch(binary, run_dir, data):
    try:
        import torch
    except ImportError:
        print("torch is not installed (apt-get install python3-torch): the PyTorch half is "
              "skipped")
        return SKIP
    import minidl.cifar10
    import minidl.models

    with open(os.path.join(HERE, "..", "..", "tests", "fixtures", "model_zoo.json")) as f:
        zoo = json.load(f)["models"]
    for name, want in zoo.items():
        model = minidl.models.build_model(name)
        got = [[k, list(v)] for k, v in minidl.models.state_names(model).items()]
        check(got == want["state"], f"{name}: state names or shapes differ from minidl's")
        count = sum(p.numel() for p in model.parameters())
        check(count == want["parameters"], f"{name}: {count} parameters, minidl {want['parameters']}")

    path = os.path.join(run_dir, "model.safetensors")
    model, ck = minidl.models.load_model(path)
    images, labels = minidl.cifar10.load(data, train=False, limit=TEST_IMAGES)
    x = torch.from_numpy(minidl.cifar10.normalize(images, ck.metadata.get("normalization",
                                                                           "cifar10")))
    torch.set_num_threads(2)
    with torch.no_grad():
        predicted = torch.cat([model(x[i:i + 250]).argmax(1) for i in range(0, len(x), 250)])
    correct = int((predicted.numpy() == labels).sum())
    theirs = run_json(binary, "eval", "--checkpoint", path, "--data", data,
                      "--limit", str(TEST_IMAGES))
    check(theirs["count"] == TEST_IMAGES, f"minidl eval counted {theirs['count']} images")
    check(correct == theirs["correct"],
          f"PyTorch: {correct} of {TEST_IMAGES} correct, minidl eval: {theirs['correct']}")
    print(f"torch half: ok ({len(zoo)} twins; {correct} of {TEST_IMAGES} correct in PyTorch "
          f"and in minidl eval, torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("numpy", "torch"):
        sys.exit(__doc__)
    half = test_numpy if sys.argv[1] == "numpy" else test_torch
    sys.exit(half(*sys.argv[2:]))
