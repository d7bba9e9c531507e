#!/bin/sh
# One probe of the bn-speedrun search (docs/bn-speedrun/PLAN.md): trains with `minidl train
# --train-only bn` and the given flags, then appends a row to docs/bn-speedrun/probes.csv and
# keeps the run's metrics.csv and log under docs/bn-speedrun/probes/.
# Usage: scripts/bn_speedrun_probe.sh NAME STAGE "NOTE" [minidl train flags...]
#   MINIDL (default build/minidl), DATA (default /work/shared/data/cifar-10-batches-bin),
#   RUNS (default /tmp/bn-speedrun-runs: the run directories, not kept).
set -eu
[ $# -ge 3 ] || { echo "usage: $0 NAME STAGE NOTE [train flags...]" >&2; exit 2; }
name=$1 stage=$2 note=$3
shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
minidl=${MINIDL:-$here/build/minidl}
data=${DATA:-/work/shared/data/cifar-10-batches-bin}
runs=${RUNS:-/tmp/bn-speedrun-runs}
doc=$here/docs/bn-speedrun
mkdir -p "$runs" "$doc/probes"
out=$runs/$name
[ ! -e "$out" ] || { echo "$0: $out exists: a probe runs once" >&2; exit 1; }
# A probe's number is its accuracy, not its time; probes may share the machine with builds. With
# the kernel's autogroup scheduling on (Debian's default), every terminal session gets an equal
# share whatever its nice value, and OpenMP's spinning threads then slow 5x (measured: resnet20
# 1,370 -> 252 images/s): passive waiting keeps them usable. With autogroup off
# (echo 0 > /proc/sys/kernel/sched_autogroup_enabled) and builds under `nice -n 15`, the probe
# keeps both cores and spinning is faster (measured: 965-1,112 images/s beside two builds).
# Timed runs (seeds 0, 1, 2) run alone without this script.
if [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo 1)" = 0 ]; then
  export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-active}"
else
  export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
fi
load=$(cut -d' ' -f1 /proc/loadavg)
start=$(date +%s)
"$minidl" train --data "$data" --train-only bn --out "$out" "$@" > "$doc/probes/$name.log" 2>&1
end=$(date +%s)
cp "$out/metrics.csv" "$doc/probes/$name.metrics.csv"
last=$(tail -1 "$out/metrics.csv")
[ -f "$doc/probes.csv" ] ||
  echo "name,stage,test_accuracy,train_accuracy,epochs,wall_seconds,load_at_start,flags,note" > "$doc/probes.csv"
/usr/bin/python3 - "$doc/probes.csv" "$name" "$stage" "$last" "$((end - start))" "$load" "$*" "$note" <<'PY'
import csv, sys
path, name, stage, last, wall, load, flags, note = sys.argv[1:]
f = last.split(",")  # epoch,train_loss,train_accuracy,test_loss,test_accuracy,...
with open(path, "a", newline="") as out:
    csv.writer(out).writerow([name, stage, f"{100 * float(f[4]):.2f}", f"{100 * float(f[2]):.2f}",
                              f[0], wall, load, flags, note])
PY
tail -1 "$doc/probes.csv"
