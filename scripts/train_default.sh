#!/usr/bin/env bash
# The main job from a fresh Debian machine: install dependencies, build, find (or fetch) CIFAR-10,
# train --recipe airbench94 (the recipe with the best accuracy per minute: 94% in 14-29 minutes
# on 2 cores, docs/airbench94/README.md). Extra arguments go to `minidl train` (e.g. --epochs 1,
# --seed 1). Each run gets a new folder, runs/airbench94-<YYYYmmdd-HHMMSS> (its path is the first line printed), so the
# script can be run again and again; continue a stopped run with --resume runs/<that folder>.
# Data: $MINIDL_DATA if set, else ../shared/data/cifar-10-batches-bin if present, else
# data/cifar-10-batches-bin (downloaded and md5-checked by scripts/get_cifar10.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
data="${MINIDL_DATA:-}"
if [ -z "$data" ]; then
  if [ -f ../shared/data/cifar-10-batches-bin/test_batch.bin ]; then
    data=../shared/data/cifar-10-batches-bin
  else
    scripts/get_cifar10.sh data
    data=data/cifar-10-batches-bin
  fi
fi
exec build/minidl train --data "$data" --recipe airbench94 "$@"
