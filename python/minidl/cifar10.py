"""CIFAR-10's binary version (cifar-10-batches-bin) and minidl's input normalization, numpy only.

Each record is 1 label byte and 3072 image bytes (3 planes of 32 x 32, R, G, B). minidl's
normalization, exactly in float32 (data/loader.cpp): x = (byte / 255 - mean[c]) / std[c].
"""
import os

import numpy as np

# The named normalizations of minidl (data::normalization_named), as a checkpoint's metadata
# "normalization" names them.
NORMALIZATIONS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


def load(folder, train=False, limit=None):
    """(images uint8 [N, 3, 32, 32], labels int64 [N]) of the training (50,000) or test (10,000)
    set in `folder`, the first `limit` images if given. Raises OSError for a missing file."""
    records = []
    for name in TRAIN_FILES if train else TEST_FILES:
        raw = np.fromfile(os.path.join(folder, name), dtype=np.uint8)
        records.append(raw.reshape(-1, 3073))
        if limit is not None and sum(len(r) for r in records) >= limit:
            break
    raw = np.concatenate(records)[:limit]
    return raw[:, 1:].reshape(-1, 3, 32, 32).copy(), raw[:, 0].astype(np.int64)


def normalize(images, name="cifar10"):
    """float32 [N, 3, 32, 32] of uint8 images, normalized as minidl does for `name` (the
    checkpoint's "normalization" metadata; "cifar10" if it has none). KeyError for another."""
    mean, std = (np.asarray(v, dtype=np.float32).reshape(1, 3, 1, 1)
                 for v in NORMALIZATIONS[name])
    return (images.astype(np.float32) / np.float32(255) - mean) / std
