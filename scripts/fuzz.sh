#!/usr/bin/env bash
# Fuzzes minidl's readers with libFuzzer (tests/fuzz): builds the harnesses with Debian's clang
# (AddressSanitizer + UndefinedBehaviorSanitizer + libFuzzer) in build-fuzz, then runs each
# harness for SECONDS (default 600) from a copy of its seed corpus.
#
#   scripts/fuzz.sh [SECONDS]
#
# Environment:
#   FUZZ_HARNESSES   harnesses to run (default "safetensors cifar10 config image cli resume")
#   FUZZ_BUILD_JOBS  parallel compile jobs (default: nproc)
#   FUZZ_KEEP=1      continue from the previous run's work corpus instead of the seeds alone
#
# Work files go to build-fuzz/fuzz-work/<harness>/ (corpus/, artifacts/, log); the repository's
# corpus is never written. A crash, leak, timeout or out-of-memory stops that harness; its input
# is copied to tests/fuzz/crashes/<harness>/ (replayed by ctest in the normal build from then
# on) and the script exits 1 after running the others. At the end it prints, per harness, the
# executions, the corpus size and the result.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: SECONDS must be a positive whole number, got '$seconds'" >&2
  exit 2
fi
read -r -a harnesses <<< "${FUZZ_HARNESSES:-safetensors cifar10 config image cli resume}"
jobs="${FUZZ_BUILD_JOBS:-$(nproc)}"

declare -A max_len=([safetensors]=4096 [cifar10]=12292 [config]=4096 [image]=8192 [cli]=1024
                    [resume]=20000)
for h in "${harnesses[@]}"; do
  if [ -z "${max_len[$h]:-}" ]; then
    echo "fuzz.sh: unknown harness '$h' (known: ${!max_len[*]})" >&2
    exit 2
  fi
done
for tool in clang clang++; do
  command -v "$tool" > /dev/null || { echo "fuzz.sh: $tool not found (apt install clang)" >&2; exit 2; }
done

CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DMINIDL_FUZZ=ON > /dev/null
cmake --build build-fuzz --target fuzzers minidl_fuzz_seeds -j"$jobs"

scratch_parent=/dev/shm
[ -d "$scratch_parent" ] && [ -w "$scratch_parent" ] || scratch_parent="${TMPDIR:-/tmp}"
scratch="$(mktemp -d "$scratch_parent/minidl_fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
export MINIDL_FUZZ_TMPDIR="$scratch"

failed=0
summary=()
for h in "${harnesses[@]}"; do
  work="build-fuzz/fuzz-work/$h"
  if [ "${FUZZ_KEEP:-0}" != 1 ]; then rm -rf "$work"; fi
  mkdir -p "$work/corpus" "$work/artifacts"
  rm -f "$work/artifacts/"*
  if [ "$h" = cifar10 ] || [ "$h" = resume ]; then  # binary seeds are not committed: written here
    mkdir -p "$work/seeds" && build-fuzz/tests/fuzz/minidl_fuzz_seeds "$work/seeds" "$h"
    cp "$work/seeds/$h/"* "$work/corpus/"
  else
    cp tests/fuzz/corpus/"$h"/* "$work/corpus/"
  fi
  echo "== fuzz_$h for ${seconds}s (log: $work/log)"
  dict=()
  [ -f "tests/fuzz/$h.dict" ] && dict=(-dict="tests/fuzz/$h.dict")
  status=0
  "build-fuzz/tests/fuzz/fuzz_$h" "$work/corpus" -max_total_time="$seconds" -timeout=60 \
      -rss_limit_mb=2048 -max_len="${max_len[$h]}" -artifact_prefix="$work/artifacts/" \
      -print_final_stats=1 "${dict[@]}" > "$work/log" 2>&1 &
  pid=$!
  wait "$pid" || status=$?
  # libomp's registration file stays behind when the process dies on a finding.
  rm -f "/dev/shm/__KMP_REGISTERED_LIB_${pid}_"*
  execs="$(awk '/stat::number_of_executed_units:/ {print $2}' "$work/log" | tail -n 1)"
  files="$(find "$work/corpus" -type f | wc -l)"
  bytes="$(find "$work/corpus" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
  result=ok
  found=()
  for f in "$work/artifacts"/crash-* "$work/artifacts"/leak-* "$work/artifacts"/timeout-* \
           "$work/artifacts"/oom-*; do
    [ -e "$f" ] && found+=("$f")
  done
  if [ "$status" -ne 0 ] || [ "${#found[@]}" -gt 0 ]; then
    failed=1
    result="FAILED (exit $status)"
    mkdir -p "tests/fuzz/crashes/$h"
    for f in "${found[@]}"; do
      cp "$f" "tests/fuzz/crashes/$h/"
      result="$result, kept tests/fuzz/crashes/$h/$(basename "$f")"
    done
    echo "-- fuzz_$h failed; the end of its log:"
    grep -v '^#' "$work/log" | tail -n 40
  fi
  summary+=("$(printf '%-12s %12s execs %6s files %9s bytes  %s' "$h" "${execs:-?}" "$files" "$bytes" "$result")")
done

echo
echo "== fuzz summary (${seconds}s per harness; corpus = seeds + new units in build-fuzz/fuzz-work)"
printf '%s\n' "${summary[@]}"
exit "$failed"
