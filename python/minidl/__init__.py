"""minidl from Python: read and write minidl's checkpoints, inspect their BatchNorm layers, and
evaluate them in PyTorch.

numpy only (Debian's python3-numpy):
    minidl.safetensors  load(path) -> Checkpoint(tensors, metadata); save(path, tensors, metadata)
    minidl.bn           bn_layers(tensors): every BatchNorm's gamma, beta and running statistics
    minidl.cifar10      load(folder, train, limit): CIFAR-10 binary batches; normalize(images, name)
torch optional (Debian's python3-torch):
    minidl.models       build_model(name), load_model(path): the torch.nn twin of a minidl model,
                        with minidl's state names, holding a checkpoint

Quick start (with this folder on sys.path, e.g. PYTHONPATH=python):
    import minidl.safetensors, minidl.bn
    ck = minidl.safetensors.load("runs/e1/model.safetensors")
    for layer in minidl.bn.bn_layers(ck.tensors):
        print(layer.name, layer.weight.mean())
    from minidl.models import load_model      # needs torch
    model, ck = load_model("runs/e1/model.safetensors")   # eval mode
"""

__version__ = "0.1.0"
