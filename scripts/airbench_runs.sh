#!/usr/bin/env bash
# Issue 13's measurement: `minidl train --recipe airbench94` with seeds 0, 1, 2 (or the seeds
# given), one after the other, nothing else running, each into docs/airbench94/seed<S>/ with
# its log; then docs/airbench94/results.md: accuracy without and with TTA level 2, the wall
# time split into training and evaluation, and the mean, with the CPU model.
# Usage: scripts/airbench_runs.sh DATA_DIR [SEED ...]   (run from a built checkout: build/minidl)
# Environment: MINIDL=binary to run (default build/minidl; copy it elsewhere to keep building
# while the runs go), OUT=directory (default docs/airbench94).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?usage: scripts/airbench_runs.sh DATA_DIR [SEED ...]}"
shift
seeds=("$@")
[ "${#seeds[@]}" -gt 0 ] || seeds=(0 1 2)
bin="${MINIDL:-build/minidl}"
out="${OUT:-docs/airbench94}"
mkdir -p "$out"
for s in "${seeds[@]}"; do
  "$bin" train --recipe airbench94 --data "$data" --seed "$s" --tta 2 --out "$out/seed$s" \
    | tee "$out/seed$s.log"
done
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
/usr/bin/python3 - "$out" "$cpu" <<'PY'
import glob, json, os, sys
out, cpu = sys.argv[1], sys.argv[2]
rows = []
for path in sorted(glob.glob(os.path.join(out, "seed*", "results.json"))):
    r = json.load(open(path))
    rows.append(r)
lines = [f"# airbench94 on {cpu}, 2 threads", "",
         "| seed | test accuracy | with TTA 2 | wall time | training | evaluation |",
         "|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    lines.append(f"| {r['seed']} | {100 * r['test_accuracy']:.2f}% | "
                 f"{100 * r['test_accuracy_tta']:.2f}% | {r['total_seconds'] / 60:.1f} min | "
                 f"{r['train_seconds'] / 60:.1f} min | {r['eval_seconds'] / 60:.1f} min |")
if rows:
    n = len(rows)
    mean = lambda k: sum(r[k] for r in rows) / n
    lines.append(f"| mean | {100 * mean('test_accuracy'):.2f}% | "
                 f"{100 * mean('test_accuracy_tta'):.2f}% | {mean('total_seconds') / 60:.1f} min | "
                 f"{mean('train_seconds') / 60:.1f} min | {mean('eval_seconds') / 60:.1f} min |")
open(os.path.join(out, "results.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
