#!/usr/bin/env bash
# Installs minidl's build and test dependencies from Debian's packages (run as root or with sudo).
#   build: g++ cmake libopenblas-dev libopenblas-openmp-dev libstb-dev catch2 libcli11-dev
#          nlohmann-json3-dev libbenchmark-dev (Google Benchmark, for tests/bench)
#          libgoogle-perftools-dev (tcmalloc_minimal: minidl's allocator, see CMakeLists.txt)
#          clang-format (.ci/run checks the formatting against .clang-format)
#          libeigen3-dev (the eigensolver of airbench94's patch-whitening init)
#          openmpi-bin libopenmpi-dev (data-parallel training, dist/: the build works without
#          them, with the local process group only)
#   plots and the python/ package: python3-matplotlib python3-numpy (for /usr/bin/python3)
#   reference values and the PyTorch benchmark (optional, --with-python): python3-torch
#          libtcmalloc-minimal4 (the tcmalloc that
#          scripts/bench_compare.sh preloads for its "PyTorch best" rows) python3-scipy
#          (scripts/airbench_summary.py's tests)
# Usage: scripts/install_deps.sh [--with-python]
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
packages=(g++ cmake make libopenblas-dev libopenblas-openmp-dev libstb-dev catch2 libcli11-dev
          nlohmann-json3-dev libbenchmark-dev libgoogle-perftools-dev clang-format libeigen3-dev
          openmpi-bin libopenmpi-dev python3-matplotlib python3-numpy)
if [ "${1:-}" = "--with-python" ]; then
  packages+=(python3-torch libtcmalloc-minimal4 python3-scipy)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
