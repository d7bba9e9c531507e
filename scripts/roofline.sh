#!/usr/bin/env bash
# The roofline of this machine for minidl (docs/speed.md#the-roofline): OpenBLAS SGEMM's peak at
# 1 and 2 threads (square n = 512 and 2048, and the GEMM shapes resnet20's convolutions hand to
# OpenBLAS, run as minidl runs them: one single-threaded call per thread) and the memory
# bandwidth of a STREAM-like triad. Prints a table; --json FILE writes the JSON that
# `minidl bench --profile --roofline FILE` reads to give each op's fraction of the ceilings.
#
# Usage: scripts/roofline.sh [--json FILE] [--threads 1,2] [--square 512,2048] [--min-time 1]
#                            [--triad-mib 256] [--no-minidl-shapes]
#   Every argument goes to build/tests/minidl_roofline (tests/bench/roofline.cpp), which this
#   script builds first when it is missing. env BUILD: the build folder (default build).
#   Takes about (shapes x thread counts + thread counts) x --min-time seconds: half a minute
#   with the defaults. Run it on an idle machine: other load lowers every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
tool=$build/tests/minidl_roofline
if [ ! -x "$tool" ]; then
  [ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
  cmake --build "$build" -j2 --target minidl_roofline > /dev/null
fi
exec "$tool" "$@"
