#!/usr/bin/env bash
# Builds the GGUF parser fuzzer with clang + libFuzzer + ASan + UBSan:  fuzz/build.sh [out-dir]
# (CMake alternative: -DINFERLAB_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++). Rebuilds only when a source changed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/fuzz}
cxx=${CXX_FUZZ:-clang++}
srcs=(fuzz/fuzz_gguf.cpp csrc/gguf/gguf.cpp csrc/gguf/dequant.cpp csrc/core/ggml_types.cpp)
hdrs=(csrc/gguf/gguf.h csrc/gguf/dequant.h csrc/core/ggml_types.h csrc/core/error.h csrc/core/half.h)
mkdir -p "$out"
bin="$out/fuzz_gguf"
if [ -x "$bin" ]; then
  stale=0
  for s in "${srcs[@]}" "${hdrs[@]}"; do [ "$s" -nt "$bin" ] && stale=1; done
  [ $stale = 0 ] && { echo "$bin is up to date"; exit 0; }
fi
"$cxx" -std=c++17 -g -O1 -fno-omit-frame-pointer -Icsrc \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  "${srcs[@]}" -o "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "built $bin"
