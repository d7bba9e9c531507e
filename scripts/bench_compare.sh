#!/usr/bin/env bash
# Side by side: one resnet20 training step (forward, cross-entropy, backward, SGD momentum step)
# at batch 128 in minidl and in PyTorch (Debian's python3-torch), same machine, same threads.
# Usage: scripts/bench_compare.sh [THREADS] [STEPS]   (run on an idle machine; needs build/)
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
steps="${2:-20}"
[ -x build/minidl ] || { echo "bench_compare: build/minidl missing; build first" >&2; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null ||
  { echo "bench_compare: needs Debian's python3-torch (scripts/install_deps.sh --with-python)" >&2; exit 1; }
m=$(build/minidl bench --model resnet20 --batch-size 128 --threads "$threads" --steps "$steps" --json)
p=$(/usr/bin/python3 scripts/bench_pytorch.py --threads "$threads" --steps "$steps" 2>/dev/null)
/usr/bin/python3 - "$m" "$p" <<'PY'
import json, sys
m, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'framework':<10} {'images/s':>10} {'s/step':>8}  (resnet20, batch 128, {m['threads']} threads)")
for r in (m, p):
    print(f"{r['framework']:<10} {r['images_per_second']:>10.1f} {r['seconds_per_step']:>8.3f}")
print(f"minidl / pytorch = {m['images_per_second'] / p['images_per_second']:.2f}"
      f"  (minidl peak RSS {m['peak_rss_mib']:.0f} MiB)")
PY
