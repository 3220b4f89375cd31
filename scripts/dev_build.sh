#!/usr/bin/env bash
# Incremental developer build of the extension, without reinstalling the package.
#   scripts/dev_build.sh [cpu|cuda] [build-dir]
# then run Python against it:
#   INFERLAB_CORE_DIR=<build-dir> PYTHONPATH=python python3 -m pytest tests/...
set -euo pipefail
mode=${1:-cpu}
dir=${2:-build/dev-$mode}
cd "$(dirname "$0")/.."
case "$mode" in
  cpu) cuda=OFF ;;
  cuda) cuda=ON ;;
  *) echo "usage: $0 [cpu|cuda] [build-dir]" >&2; exit 2 ;;
esac
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DINFERLAB_CUDA=$cuda \
    -DCMAKE_CUDA_ARCHITECTURES="${INFERLAB_CUDA_ARCHS:-90}" \
    -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python3)" >/dev/null
fi
cmake --build "$dir" -j "${JOBS:-2}"
echo "built: export INFERLAB_CORE_DIR=$dir PYTHONPATH=python"
