#!/usr/bin/env bash
# minidl and PyTorch (Debian's python3-torch) side by side on resnet20 (default) or airbench94
# (--model airbench94), same machine, same threads. resnet20 rows:
#   train     batch 128  training step (forward, cross-entropy, backward, SGD momentum step)
#   train bn  batch 128  the same step with only BatchNorm's weight and bias trainable
#                        (minidl --train-only bn; PyTorch: requires_grad=False on every conv and
#                        on the final Linear)
#   eval      batch 128  and batch 1: forward only, model.eval() under torch.no_grad()
#                        (minidl --mode eval); batch 1 runs 20x STEPS (and 20x the warm-up)
# airbench94 rows (minidl bench --model airbench94; scripts/bench_pytorch.py --model airbench94,
# the same network, trained parameters and SGD step as minidl bench):
#   train     batch 1024 training step (as above; every parameter learns, as --train-only all)
#   eval      batch 1024 forward only
#   A batch-1024 training step takes seconds (minidl: about 5 s on 2 cores), so the defaults
#   (20 steps, 3 rounds) take of the order of half an hour; `WARMUP=1 ... 2 5 3` is quicker.
#   The --json object then also has "model" and no "steps_batch_1".
# Configurations per row: minidl; PyTorch default; PyTorch best = LD_PRELOAD of Debian's
# libtcmalloc-minimal4, OMP_PROC_BIND=true, model and input in torch.channels_last (not for
# train bn). minidl and PyTorch default run with LD_PRELOAD, OMP_PROC_BIND and OMP_PLACES unset.
#
# Any other CIFAR ResNet (--model resnet<D>[_<W>], e.g. resnet56) has the BN-only row alone:
#   train bn  batch BATCH  (--batch-size, default 128) the step above on that network (issue 28's
#                          comparison of the bn-speedrun network)
#
# Usage: scripts/bench_compare.sh [--model resnet20|airbench94|resnet<D>[_<W>]] [--batch-size N]
#        [--json FILE] [THREADS] [STEPS] [ROUNDS]   (defaults resnet20 2 20 3)
#   Every (row, configuration) is its own process, run ROUNDS times; each round runs a row's
#   configurations in the reverse order of the previous round, so minidl and PyTorch alternate
#   slots. The table gives images/s as the median over the rounds with the min-max range, peak
#   RSS (median), and minidl / PyTorch default and minidl / PyTorch best (ratios of medians).
#   --json FILE (or env BENCH_JSON=FILE) also writes the header facts, every run and the summary
#   as one JSON object to FILE.
#   env MINIDL_BIN: the minidl binary (default build/minidl); it needs `bench --mode train|eval`.
#   env WARMUP: untimed steps before the timed ones (default 3; batch 1 uses 20x).
# Run on an idle machine: other load shows up as a wide min-max range.
set -euo pipefail
start_dir="$PWD"
cd "$(dirname "$0")/.."
die() { echo "bench_compare: $*" >&2; exit 1; }
usage="usage: scripts/bench_compare.sh [--model resnet20|airbench94|resnet<D>[_<W>]] \
[--batch-size N] [--json FILE] [THREADS] [STEPS] [ROUNDS]"

json_out="${BENCH_JSON:-}"
model=resnet20
bn_batch=128
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --json) [ $# -ge 2 ] || die "--json needs a file name"; json_out="$2"; shift 2 ;;
    --json=*) json_out="${1#--json=}"; shift ;;
    --model) [ $# -ge 2 ] || die "--model needs a model name"; model="$2"; shift 2 ;;
    --model=*) model="${1#--model=}"; shift ;;
    --batch-size) [ $# -ge 2 ] || die "--batch-size needs a number"; bn_batch="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 ($usage)" ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ "${#positional[@]}" -le 3 ] || die "too many arguments ($usage)"
[[ "$model" =~ ^(resnet20|airbench94|resnet[0-9]+(_[0-9]+)?)$ ]] ||
  die "--model must be resnet20, airbench94 or resnet<D>[_<W>], got '$model'"
[[ "$bn_batch" =~ ^[1-9][0-9]*$ ]] && [ "$bn_batch" -ge 2 ] ||
  die "--batch-size must be a whole number >= 2, got '$bn_batch'"
if [ "$bn_batch" != 128 ] && { [ "$model" = resnet20 ] || [ "$model" = airbench94 ]; }; then
  die "--batch-size is for the BN-only row of a resnet<D>[_<W>] other than resnet20"
fi
threads="${positional[0]:-2}"
steps="${positional[1]:-20}"
rounds="${positional[2]:-3}"
warmup="${WARMUP:-3}"
for v in "THREADS=$threads" "STEPS=$steps" "ROUNDS=$rounds"; do
  [[ "${v#*=}" =~ ^[1-9][0-9]*$ ]] || die "${v%%=*} must be a positive integer, got '${v#*=}'"
done
[[ "$warmup" =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer, got '$warmup'"

minidl="${MINIDL_BIN:-build/minidl}"
# MINIDL_BIN and --json FILE are relative to the caller's directory; build/minidl to the repo's
if [ -n "${MINIDL_BIN:-}" ] && [[ "$minidl" != /* ]]; then
  minidl="$start_dir/$minidl"
fi
if [ -n "$json_out" ] && [[ "$json_out" != /* ]]; then json_out="$start_dir/$json_out"; fi
[ -x "$minidl" ] || die "$minidl missing or not executable; build first" \
  "(cmake -S . -B build && cmake --build build -j2) or set MINIDL_BIN"
"$minidl" bench --help 2>/dev/null | grep -Eq -- '--mode\b' ||
  die "$minidl bench has no --mode option (needs a minidl with bench --mode train|eval)"
[ -x /usr/bin/python3 ] || die "/usr/bin/python3 missing (scripts/install_deps.sh --with-python)"
torch_version=$(/usr/bin/python3 -c "import torch; print(torch.__version__)" 2>/dev/null) ||
  die "/usr/bin/python3 cannot import torch; needs Debian's python3-torch" \
    "(scripts/install_deps.sh --with-python)"
tcmalloc=$(compgen -G "/usr/lib/*/libtcmalloc_minimal.so.4" | head -n 1 || true)
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain 2>/dev/null)" ]; then
  commit="$commit-dirty"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
manifest="$tmp/manifest.tsv"
: > "$manifest"

# rows: id, mode, train_only, batch, step multiplier, has a "best" configuration
if [ "$model" = resnet20 ]; then
  rows=("train train all 128 1 yes" "train-bn train bn 128 1 no"
        "eval-128 eval all 128 1 yes" "eval-1 eval all 1 20 yes")
elif [ "$model" != airbench94 ]; then
  rows=("train-bn train bn $bn_batch 1 no")
else
  rows=("train train all 1024 1 yes" "eval-1024 eval all 1024 1 yes")
fi
clean_env=(env -u LD_PRELOAD -u OMP_PROC_BIND -u OMP_PLACES)

# run ROUND ROW CONFIG CMD...: one process; stdout, stderr and exit status go to $tmp
run() {
  local round="$1" row="$2" config="$3"; shift 3
  local base="$tmp/$row.$config.$round" rc=0
  if grep -q "^[0-9]*"$'\t'"$row"$'\t'"$config"$'\t'"[^0]" "$manifest"; then
    rc=skip  # failed in an earlier round: not run again
  else
    echo "bench_compare: round $round/$rounds: $row, $config" >&2
    "$@" > "$base.out" 2> "$base.err" || rc=$?
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$row" "$config" "$rc" "$base" >> "$manifest"
}

for ((round = 1; round <= rounds; round++)); do
  for spec in "${rows[@]}"; do
    read -r row mode only batch mult best <<< "$spec"
    s=$((steps * mult)); w=$((warmup * mult))
    configs=(minidl pytorch-default)
    [ "$best" = yes ] && configs+=(pytorch-best)
    if ((round % 2 == 0)); then mapfile -t configs < <(printf '%s\n' "${configs[@]}" | tac); fi
    py=(/usr/bin/python3 scripts/bench_pytorch.py --model "$model" --mode "$mode"
        --train-only "$only" --batch-size "$batch" --threads "$threads" --steps "$s" --warmup "$w")
    for config in "${configs[@]}"; do
      case "$config" in
        minidl) run "$round" "$row" "$config" "${clean_env[@]}" "$minidl" bench --model "$model" \
                  --mode "$mode" --train-only "$only" --batch-size "$batch" --threads "$threads" \
                  --steps "$s" --warmup "$w" --json ;;
        pytorch-default) run "$round" "$row" "$config" "${clean_env[@]}" "${py[@]}" ;;
        pytorch-best)
          if [ -n "$tcmalloc" ]; then
            run "$round" "$row" "$config" "${clean_env[@]}" LD_PRELOAD="$tcmalloc" \
              OMP_PROC_BIND=true "${py[@]}" --channels-last
          fi ;;
      esac
    done
  done
done

/usr/bin/python3 - "$manifest" "$json_out" "$cpu" "$threads" "$steps" "$rounds" "$warmup" \
  "$torch_version" "$commit" "$tcmalloc" "$minidl" "$model" "$bn_batch" <<'PY'
import json, statistics, sys, time

manifest, json_out, cpu, threads, steps, rounds, warmup, torch_version, commit, tcmalloc, \
    minidl, model, bn_batch = sys.argv[1:]
if model not in ("resnet20", "airbench94"):
    ROWS = [("train-bn", f"train bn-only, batch {bn_batch}")]
    TRAIN_BATCH = int(bn_batch)
elif model == "resnet20":
    ROWS = [("train", "train, batch 128"), ("train-bn", "train bn-only, batch 128"),
            ("eval-128", "eval, batch 128"), ("eval-1", "eval, batch 1")]
    TRAIN_BATCH = 128
else:
    ROWS = [("train", "train, batch 1024"), ("eval-1024", "eval, batch 1024")]
    TRAIN_BATCH = 1024
has_batch_1 = any(row == "eval-1" for row, _ in ROWS)
CONFIGS = [("minidl", "minidl"), ("pytorch-default", "PyTorch default"),
           ("pytorch-best", "PyTorch best")]

runs, failed = [], {}
for line in open(manifest):
    rnd, row, config, rc, base = line.rstrip("\n").split("\t")
    if rc == "skip":
        continue
    entry = {"round": int(rnd), "row": row, "config": config}
    if rc == "0":
        try:
            entry["result"] = json.loads(open(base + ".out").read().strip().splitlines()[-1])
            entry["result"]["images_per_second"] = float(entry["result"]["images_per_second"])
        except (ValueError, IndexError, KeyError, TypeError) as e:
            rc, err = "bad-output", f"no JSON line with images_per_second on stdout ({e})"
    if rc != "0":
        if rc != "bad-output":
            lines = [l.strip() for l in open(base + ".err", errors="replace")
                     if l.strip() and not l.startswith("Run with --help")]  # CLI11's last line
            err = f"exit status {rc}" + (f": {lines[-1]}" if lines else "")
        entry["error"] = err
        failed[(row, config)] = err
    runs.append(entry)

summary = {}
for row, _ in ROWS:
    for config, _ in CONFIGS:
        results = [r["result"] for r in runs if r["row"] == row and r["config"] == config
                   and "result" in r]
        if results and (row, config) not in failed:
            ips = [r["images_per_second"] for r in results]
            rss = [r["peak_rss_mib"] for r in results if "peak_rss_mib" in r]
            summary[(row, config)] = {
                "row": row, "config": config, "rounds": len(ips),
                "images_per_second_median": statistics.median(ips),
                "images_per_second_min": min(ips), "images_per_second_max": max(ips),
                "peak_rss_mib_median": statistics.median(rss) if rss else None,
                "peak_rss_mib_max": max(rss) if rss else None}
for (row, config), s in summary.items():
    m = summary.get((row, "minidl"))
    if config != "minidl" and m:
        s["minidl_ratio"] = m["images_per_second_median"] / s["images_per_second_median"]
    if config == "pytorch-best":  # the environment the "best" process actually saw
        res = [r["result"] for r in runs if r["row"] == row and r["config"] == config
               and "result" in r]
        if not all(r.get("tcmalloc") for r in res):
            s["warning"] = "tcmalloc was not mapped into every run (LD_PRELOAD ignored?)"

print(f"CPU: {cpu or 'unknown'}")
if model != "resnet20":
    print(f"model: {model}")
if has_batch_1:
    print(f"threads: {threads}   steps: {steps} (batch 1: {int(steps) * 20})   warm-up: {warmup} "
          f"(batch 1: {int(warmup) * 20})   rounds: {rounds}")
else:
    print(f"threads: {threads}   steps: {steps}   warm-up: {warmup}   rounds: {rounds}")
print(f"torch {torch_version}   minidl {commit} ({minidl})")
print("PyTorch best = " + (f"LD_PRELOAD={tcmalloc}" if tcmalloc else "tcmalloc (missing)")
      + ", OMP_PROC_BIND=true, channels_last")
print()
print(f"{'row':<25} {'configuration':<16} {'images/s':>9} {'min-max':>17} {'RSS MiB':>8} "
      f"{'minidl/this':>11}")
for row, row_label in ROWS:
    label = row_label
    for config, config_label in CONFIGS:
        if config == "pytorch-best" and row == "train-bn":
            continue
        head = f"{label:<25} {config_label:<16}"
        label = ""
        s = summary.get((row, config))
        if config == "pytorch-best" and not tcmalloc:
            print(f"{head} skipped (libtcmalloc-minimal4 missing)")
        elif (row, config) in failed:
            print(f"{head} failed: {failed[(row, config)]}")
        elif s is None:
            print(f"{head} no result")
        else:
            rng = f"{s['images_per_second_min']:.1f}-{s['images_per_second_max']:.1f}"
            rss = s["peak_rss_mib_median"]
            ratio = f"{s['minidl_ratio']:.2f}" if "minidl_ratio" in s else ""
            print(f"{head} {s['images_per_second_median']:>9.1f} {rng:>17} "
                  f"{(f'{rss:.0f}' if rss is not None else '?'):>8} {ratio:>11}"
                  + (f"  ({s['warning']})" if "warning" in s else ""))
m = summary.get(("train", "minidl"))
if m and m["peak_rss_mib_max"] is not None:
    print(f"\nminidl training step ({model}, batch {TRAIN_BATCH}): peak RSS "
          f"{m['peak_rss_mib_max']:.0f} MiB (max over rounds)")

if json_out:
    doc = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu, "threads": int(threads),
           "steps": int(steps), "steps_batch_1": int(steps) * 20, "warmup": int(warmup),
           "rounds": int(rounds), "torch_version": torch_version, "minidl_commit": commit,
           "minidl_bin": minidl, "tcmalloc": tcmalloc or None,
           "best": {"ld_preload": tcmalloc or None, "omp_proc_bind": "true",
                    "channels_last": True},
           "summary": list(summary.values()),
           "failed": [{"row": r, "config": c, "error": e} for (r, c), e in failed.items()],
           "runs": runs}
    if model != "resnet20":  # no batch-1 row; resnet20's document keeps its keys as they were
        doc = {"model": model, **{k: v for k, v in doc.items() if k != "steps_batch_1"}}
    try:
        with open(json_out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    except OSError as e:
        sys.exit(f"bench_compare: cannot write {json_out}: {e.strerror}")
    print(f"JSON: {json_out}")
sys.exit(1 if failed else 0)
PY
