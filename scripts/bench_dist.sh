#!/usr/bin/env bash
# minidl's data-parallel measurements on this machine (docs/distributed.md). Run it with nothing
# else running: it times things.
#
# (a) allreduce: scripts/allreduce_bench.c (compiled here with mpicc -O2 into a temporary folder)
#     times MPI_Allreduce of floats between 2 processes for 4 B to 16 MiB (x4 steps) over
#       shm   one machine, shared memory (--mca btl vader,self: OpenMPI's default on one host)
#       tcp   one machine, TCP over the loopback (--mca btl tcp,self --mca btl_tcp_if_include lo)
#       veth  two simulated hosts: network namespaces joined by a veth pair, TCP
#             (scripts/netns_lib.sh, as scripts/two_hosts.sh; needs root, skipped otherwise)
#     Table per transport: bytes, timed calls, median and fastest microseconds (slowest rank
#     per call), algorithmic bandwidth 2 (P-1)/P x bytes / median time in GB/s (1e9 B/s).
# (b) training throughput: `minidl train --epochs 1 --limit-train 5120 --limit-test 100` (resnet20,
#     batch 128: 40 steps) as
#       1p2t       1 process x 2 threads (no MPI)
#       2r1t       mpirun -np 2, 1 thread each (--bn-sync none)
#       2r1t-sync  mpirun -np 2, 1 thread each, --bn-sync global
#     images/s = the images_per_second column of RUN_DIR/metrics.csv (rank 0's: the global
#     images/s of the epoch's training loop, data loading and augmentation included, evaluation
#     excluded). ROUNDS rounds; each round runs the configurations in the reverse order of the
#     previous one. Prints every run, then the median and range per configuration and the ratio
#     of the medians to 1p2t.
# (c) with --compute-json FILE: the per-process compute that scripts/project_scaling.py projects
#     from: `minidl bench --mode train` (random data) images/s of resnet20 and resnet110
#     --train-only bn at per-process batches 128, 64, ..., 2 and airbench94 at 1024, ..., 16,
#     with --compute-threads T threads (default: every CPU, one process per host), written as
#     FILE with "measured": true (docs/distributed/compute.json's format).
#
# Usage: scripts/bench_dist.sh [--quick] [--rounds N] [--no-allreduce] [--no-train]
#                              [--compute-json FILE] [--compute-threads T]
#   --quick  tiny sizes (allreduce up to 64 KiB with few calls; 512 training images; 1 round;
#            the compute at two batches, 1 step): checks that everything runs, measures nothing
# Environment: MINIDL (binary, default build/minidl), MINIDL_DATA (CIFAR-10 binary folder,
# default ../shared/data/cifar-10-batches-bin), ROUNDS (default 3), MINIDL_NETNS /
# MINIDL_NETNS_NET (scripts/netns_lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/netns_lib.sh

quick=0
rounds="${ROUNDS:-3}"
do_allreduce=1
do_train=1
compute_json=""
compute_threads="$(nproc)"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --rounds) rounds="$2"; shift ;;
    --no-allreduce) do_allreduce=0 ;;
    --no-train) do_train=0 ;;
    --compute-json) compute_json="$(realpath -m "$2")"; shift ;;
    --compute-threads) compute_threads="$2"; shift ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
  esac
  shift
done

bin="$(realpath "${MINIDL:-build/minidl}")"
data="$(realpath "${MINIDL_DATA:-../shared/data/cifar-10-batches-bin}")"
[ -x "$bin" ] || { echo "bench_dist.sh: no binary $bin (build first)" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

limit_train=5120
ar_args=(4 16777216 1000 20)
if [ "$quick" = 1 ]; then
  limit_train=512
  rounds=1
  ar_args=(4 65536 20 5)
fi

tmp="$(mktemp -d /tmp/minidl-bench-dist.XXXXXX)"
netns_used=0
cleanup() {
  if [ "$netns_used" = 1 ]; then
    netns_stop
    netns_down
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
echo "# minidl data-parallel benchmark$([ "$quick" = 1 ] && echo " (--quick: tiny sizes, not a measurement)")"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $cpu, $(nproc) CPUs ($(lscpu | sed -n 's/^Thread(s) per core:[[:space:]]*/threads per core: /p'))"
echo "MPI:     $(mpirun --version 2>/dev/null | head -1)"
echo "minidl:  $bin (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"

if [ "$do_allreduce" = 1 ]; then
  echo
  echo "## (a) MPI_Allreduce, 2 processes (scripts/allreduce_bench.c; args: ${ar_args[*]})"
  mpicc -O2 -o "$tmp/allreduce_bench" scripts/allreduce_bench.c
  echo
  echo "### shm: one machine, shared memory (--mca btl vader,self)"
  mpirun -np 2 --mca btl vader,self "$tmp/allreduce_bench" "${ar_args[@]}"
  echo
  echo "### tcp: one machine, TCP over the loopback (--mca btl tcp,self --mca btl_tcp_if_include lo)"
  mpirun -np 2 --mca btl tcp,self --mca btl_tcp_if_include lo "$tmp/allreduce_bench" "${ar_args[@]}"
  echo
  echo "### veth: two network namespaces joined by a veth pair, TCP (scripts/netns_lib.sh)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "skipped: needs root"
  else
    netns_require
    netns_used=1
    netns_up
    netns_write_helpers "$tmp/netns"
    netns_mpirun "$tmp/netns" "$tmp/netns/rank_wrapper" "$tmp/allreduce_bench" "${ar_args[@]}"
    netns_down
    netns_used=0
  fi
fi

if [ "$do_train" = 1 ]; then
  echo
  echo "## (b) training throughput: resnet20, batch 128, minidl train --epochs 1 --limit-train $limit_train --limit-test 100, $rounds round(s)"
  configs=(1p2t 2r1t 2r1t-sync)
  run_config() {  # CONFIG ROUND -> prints images/s
    local c="$1" out="$tmp/train-$1-$2"
    local common=(train --data "$data" --epochs 1 --limit-train "$limit_train" --limit-test 100
                  --out "$out")
    case "$c" in
      1p2t) "$bin" "${common[@]}" --threads 2 ;;
      2r1t) mpirun -np 2 "$bin" "${common[@]}" --threads 1 ;;
      2r1t-sync) mpirun -np 2 "$bin" "${common[@]}" --threads 1 --bn-sync global ;;
    esac >"$out.log" 2>&1 || { cat "$out.log" >&2; return 1; }
    awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "images_per_second") k = i}
             END {print $k}' "$out/metrics.csv"
  }
  for ((r = 1; r <= rounds; r++)); do
    order=("${configs[@]}")
    if [ $((r % 2)) = 0 ]; then order=(2r1t-sync 2r1t 1p2t); fi
    for c in "${order[@]}"; do
      ips="$(run_config "$c" "$r")"
      echo "round $r  $c  $ips images/s"
      echo "$ips" >>"$tmp/ips-$c"
    done
  done
  echo
  base="$(median <"$tmp/ips-1p2t")"
  printf '| %-44s | %10s | %17s | %9s |\n' "configuration" "images/s" "range" "vs 1p2t"
  printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..12})" \
    "$(printf -- '-%.0s' {1..19})" "$(printf -- '-%.0s' {1..11})"
  for c in "${configs[@]}"; do
    case "$c" in
      1p2t) label="1 process x 2 threads" ;;
      2r1t) label="2 ranks x 1 thread (--bn-sync none)" ;;
      2r1t-sync) label="2 ranks x 1 thread (--bn-sync global)" ;;
    esac
    m="$(median <"$tmp/ips-$c")"
    range="$(sort -g "$tmp/ips-$c" | awk 'NR == 1 {a = $1} {b = $1} END {printf "%.1f-%.1f", a, b}')"
    printf '| %-44s | %10.1f | %17s | %9s |\n' "$label" "$m" "$range" \
      "$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.3f", a / b}')"
  done
  echo "(median over $rounds round(s); range min-max)"
fi

if [ -n "$compute_json" ]; then
  echo
  echo "## (c) per-process compute for scripts/project_scaling.py: minidl bench --mode train, $compute_threads thread(s)"
  steps=10
  warmup=2
  small=(128 64 32 16 8 4 2)
  large=(1024 512 256 128 64 32 16)
  if [ "$quick" = 1 ]; then
    steps=1
    warmup=0
    small=(8 4)
    large=(32 16)
  fi
  bench_ips() {  # MODEL TRAIN_ONLY BATCH
    "$bin" bench --model "$1" --train-only "$2" --batch-size "$3" --threads "$compute_threads" \
      --steps "$steps" --warmup "$warmup" --json |
      sed -n 's/.*"images_per_second":\([0-9.eE+-]*\).*/\1/p'
  }
  workload_json() {  # NAME MODEL TRAIN_ONLY BATCHES...
    local name="$1" model="$2" only="$3" sep="" b ips
    shift 3
    printf '    "%s": {"model": "%s", "train_only": "%s", "images_per_second": {' "$name" "$model" "$only"
    for b in "$@"; do
      ips="$(bench_ips "$model" "$only" "$b")"
      echo "  $name batch $b: $ips images/s" >&2
      printf '%s"%s": %.2f' "$sep" "$b" "$ips"
      sep=", "
    done
    printf '}}'
  }
  {
    echo "{"
    echo "  \"measured\": $([ "$quick" = 1 ] && echo false || echo true),"
    echo "  \"note\": \"scripts/bench_dist.sh --compute-json$([ "$quick" = 1 ] && echo " --quick (1 step: NOT a measurement)"): minidl bench --mode train, random data, $steps timed steps after $warmup, one process\","
    echo "  \"machine\": \"$cpu\","
    echo "  \"date\": \"$(date -u '+%Y-%m-%d')\","
    echo "  \"threads_per_process\": $compute_threads,"
    echo "  \"workloads\": {"
    workload_json resnet20 resnet20 all "${small[@]}"
    echo ","
    workload_json resnet110-bn resnet110 bn "${small[@]}"
    echo ","
    workload_json airbench94 airbench94 all "${large[@]}"
    echo
    echo "  }"
    echo "}"
  } >"$tmp/compute.json"
  mv "$tmp/compute.json" "$compute_json"
  cat "$compute_json"
  echo "wrote $compute_json"
fi
