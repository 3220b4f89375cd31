#!/usr/bin/env bash
# One call on the GPU machine: build, run every test file that can touch the GPU (CPU and CUDA tests in them), run the benchmarks.
# Logs go to $OUT (or ./gpu-out). Usage (from the repo root):
#   scripts/gpu_check.sh [pytest args...]      e.g. scripts/gpu_check.sh -k attention
# Environment: SKIP_BENCH=1 skips the benchmarks; BENCH_ONLY=1 skips the tests; TESTS="tests/a.py ..."
# narrows the test files (default: every file that can touch the GPU; ALL_TESTS=1: all of tests/).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# Test-only wheels that the GPU image lacks (the gguf writer), carried in .whl/.
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== build"
t0=$(date +%s)
if ! INFERLAB_CUDA=ON INFERLAB_CUDA_ARCHS=${INFERLAB_CUDA_ARCHS:-90} \
     python3 -m pip install --no-build-isolation --no-deps --no-index . > "$OUT/build.log" 2>&1; then
  tail -60 "$OUT/build.log"
  echo "BUILD FAILED"
  exit 1
fi
echo "built in $(( $(date +%s) - t0 )) s"
python3 -c "import inferlab; print('cuda_available', inferlab.cuda_available(), inferlab.devices())"

# Test files that never touch the GPU (GGUF parsing, tokenizers, the NumPy reference model, the test
# helpers, the README's text): CI runs them on every change; here they would only spend device time.
CPU_ONLY=" test_gguf.py test_gguf_fuzz.py test_gguf_malformed.py test_reference_forward.py test_testing.py \
  test_tokenizer.py test_tokenizer_hf.py test_tokenizer_props.py test_tokenizer_unicode.py test_readme.py "
if [ -z "${TESTS:-}" ] && [ "${ALL_TESTS:-0}" != 1 ]; then
  for f in tests/test_*.py; do [[ "$CPU_ONLY" == *" ${f#tests/} "* ]] || TESTS="${TESTS:-}${TESTS:+ }$f"; done
fi
echo "test files: ${TESTS:-tests}"

rc=0
if [ "${BENCH_ONLY:-0}" != 1 ]; then
  echo "== tests"
  # xdist (when present) isolates crashes: a dying worker shows as a failed test, not a lost run.
  xdist=""; python3 -c "import xdist" 2>/dev/null && xdist="-n ${PYTEST_WORKERS:-6} --max-worker-restart=200 -p no:faulthandler"
  if [ -n "$xdist" ]; then
    # Each worker's CPU threads (our pool, BLAS, OpenMP) get a share of the cores, not all of them: with
    # every worker at the machine's count the CPU-side references crawl (oversubscription).
    per=$(( $(nproc) / ${PYTEST_WORKERS:-6} )); [ "$per" -ge 1 ] || per=1
    export INFERLAB_NUM_THREADS=$per OMP_NUM_THREADS=$per OPENBLAS_NUM_THREADS=$per MKL_NUM_THREADS=$per
  fi
  # -v names every test as it ends, and SIGINT (not ABRT) lets pytest print its summary and
  # durations, so a run cut short by the timeout still says which tests failed.
  timeout -s INT -k 30 "${TEST_TIMEOUT:-360}" python3 -m pytest -v -rfs -p no:cacheprovider --durations=15 $xdist "$@" ${TESTS:-tests} \
    > "$OUT/pytest.log" 2>&1
  rc=$?
  if [ -n "$xdist" ]; then
    # Tests that read device-wide free memory need the GPU to themselves (skipped under xdist above).
    timeout -s INT -k 30 "${SERIAL_TIMEOUT:-120}" python3 -m pytest -q -rf -p no:cacheprovider -p no:xdist -m exclusive_gpu \
      ${TESTS:-tests} >> "$OUT/pytest.log" 2>&1 || rc=1
  fi
  grep -E "(^| )(FAILED|ERROR) " "$OUT/pytest.log" | head -40
  tail -25 "$OUT/pytest.log"
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== benchmarks"
  for b in ${BENCHES:-kernels e2e tokenizer}; do
    if [ -f "benchmarks/$b.py" ]; then
      timeout -s ABRT "${BENCH_TIMEOUT:-150}" python3 -X faulthandler "benchmarks/$b.py" ${BENCH_ARGS:-} --json "$OUT/bench_$b.json" > "$OUT/bench_$b.log" 2>&1
      echo "-- $b (rc=$?)"; tail -40 "$OUT/bench_$b.log"
    fi
  done
fi
exit $rc
