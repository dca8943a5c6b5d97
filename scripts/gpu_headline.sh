#!/usr/bin/env bash
# The headline ensemble in one command, for a machine with an NVIDIA GPU and CuPy:
#   1. the CuPy cases of the test suite (every op against NumPy, the gradient checks),
#      by default alongside the training (TESTS=parallel, so that a short GPU lease is
#      not spent waiting for them); if one fails, the script says the numbers are not
#      to be trusted and exits 1. TESTS=first runs them before and trains only if they
#      pass; TESTS=skip runs none;
#   2. one `train.py` run per seed, all at once on the one GPU (a 28x28 network leaves
#      most of it idle), with the recipe of the best single network so far, float32
#      matrix products on the tensor cores (TF32=1, CuPy's CUPY_TF32; TF32=0 for exact
#      float32) and, with TRAIN_SECONDS, a time limit after which each run tests its
#      best checkpoint (train.py --time-limit) instead of being lost;
#   3. `python -m experiments ensemble` over their best.npz (the paper's Section 6);
#   4. a SHA-256 next to each checkpoint (best.npz.sha256), so that the record keeps the
#      hash when the checkpoint itself stays on that machine;
#   5. with PACK=FILE.tar.gz, everything but the checkpoints in one archive (a machine
#      that gives back a few files, not folders of them).
#
#   OUT=runs/gpu bash scripts/gpu_headline.sh
#   OUT=runs/gpu SEEDS="0 1 2" EPOCHS=40 TRAIN_SECONDS=420 PACK=runs/gpu.tar.gz \
#     bash scripts/gpu_headline.sh
#
# Then, where the results came back (FOLDER holds seed0/, seed1/, ... and ensemble.json):
#
#   python -m experiments headline --variant ensemble5 --change "5 networks averaged" \
#       --ensemble FOLDER/ensemble.json --run FOLDER/seed0 --run FOLDER/seed1 ... \
#       --log FOLDER/seed0.log ... --command "OUT=... bash scripts/gpu_headline.sh" \
#       --machine "NVIDIA H200, 16 CPU cores, CuPy 14.2.0"   # else: this machine's CPU
#
# Settings (environment): OUT (default runs/gpu-headline), SEEDS ("0 1 2 3 4"), EPOCHS
# (40), TRAIN_SECONDS (train.py --time-limit for each run: no epoch is started that
# would end after it, and the best checkpoint is tested; the run's last.npz is kept to
# resume from; default 0 = no limit), DEVICE (cuda), MODEL (mini), DATASET
# (fashion-mnist), DATA_DIR (where its files are; a machine without network needs them
# carried, e.g. copied into runs/data), TRAIN_FLAGS (more train.py flags; default the
# recipe "--init he --lr 0.02 --lr-patience 4"), TESTS (parallel, first or skip;
# SKIP_TESTS=1 is skip), TEST_ROUTES (the ops' GPU routes the tests run on, one pass
# each; default the training's, ALEXNET_GPU_ROUTES or few), TF32 (1), PACK, PYTHON. KEEP_CHECKPOINTS=1 keeps the last.npz
# of a run that trained all its epochs (best.npz is always kept).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/gpu-headline}
SEEDS=${SEEDS:-"0 1 2 3 4"}
EPOCHS=${EPOCHS:-40}
TRAIN_SECONDS=${TRAIN_SECONDS:-0}
DEVICE=${DEVICE:-cuda}
MODEL=${MODEL:-mini}
DATASET=${DATASET:-fashion-mnist}
DATA_DIR=${DATA_DIR:-}
TRAIN_FLAGS=${TRAIN_FLAGS:-"--init he --lr 0.02 --lr-patience 4"}
TESTS=${TESTS:-parallel}
[ "${SKIP_TESTS:-0}" = 1 ] && TESTS=skip
TF32=${TF32:-1}
PACK=${PACK:-}
PYTHON=${PYTHON:-$(command -v python3 || echo python)}
case "$TESTS" in parallel|first|skip) ;; *)
  echo "gpu_headline: TESTS must be parallel, first or skip, not '$TESTS'" >&2; exit 2;; esac
mkdir -p "$OUT"
echo "gpu_headline: $(date -u +%FT%TZ) on $(hostname); out $OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

# the device must be usable, or the CuPy tests below would all be skipped, not passed
"$PYTHON" - "$DEVICE" <<'PY' || exit 2
import sys
from engine.backend import check_device
from engine.backend import gpu_status
try:
    check_device(sys.argv[1])
except Exception as e:                  # one line: what is missing and how to install it
    sys.exit(f"gpu_headline: {e}")
if sys.argv[1] == "cuda":
    print(f"gpu_headline: {gpu_status()[1]}")
PY

if [ "$TESTS" != skip ] && ! "$PYTHON" -c "import pytest" 2>/dev/null; then
  echo "gpu_headline: pytest is not installed for $PYTHON; install it or set TESTS=skip" >&2
  exit 2
fi
TEST_ROUTES=${TEST_ROUTES:-${ALEXNET_GPU_ROUTES:-few}}
run_tests() {   # the CuPy cases, in exact float32 whatever TF32 says, once per route
  local r rc=0
  : >"$OUT/gpu-tests.log"
  for r in $TEST_ROUTES; do
    echo "== ALEXNET_GPU_ROUTES=$r" >>"$OUT/gpu-tests.log"
    ALEXNET_GPU_ROUTES=$r CUPY_TF32=0 "$PYTHON" -m pytest -q -x -k cupy tests \
      >>"$OUT/gpu-tests.log" 2>&1 || rc=1
  done
  return $rc
}
tests_summary() {   # each route's line of pytest's summary
  grep -E "^== ALEXNET_GPU_ROUTES=|[0-9]+ (passed|failed)" "$OUT/gpu-tests.log" | tail -n 6
}
tests_rc=0
if [ "$TESTS" = first ]; then
  echo "== the CuPy cases of the tests"
  run_tests
  tests_rc=$?
  tests_summary
  if [ $tests_rc -ne 0 ]; then
    echo "gpu_headline: the GPU tests failed (exit $tests_rc, see $OUT/gpu-tests.log): not training" >&2
    exit 1
  fi
elif [ "$TESTS" = parallel ]; then
  echo "== the CuPy cases of the tests, alongside the training (log: $OUT/gpu-tests.log)"
  run_tests &
  tests_pid=$!
fi

echo "== training seeds $SEEDS, $EPOCHS epochs each, all at once"
data=()
[ -n "$DATA_DIR" ] && data=(--data-dir "$DATA_DIR")
limit=()
[ "$TRAIN_SECONDS" != 0 ] && limit=(--time-limit "$TRAIN_SECONDS")
echo "matrix products: $([ "$TF32" = 1 ] && echo "TF32 (CUPY_TF32=1)" || echo "float32")"
pids=()
for s in $SEEDS; do
  # A fresh folder: a second call on a warm machine must not find the first call's
  # best.npz and metrics.json there and count them as this run's (train.py starts
  # afresh, but a run that fails early would leave the old files looking finished).
  rm -rf "${OUT:?}/seed$s" "$OUT/seed$s.log"
  # shellcheck disable=SC2086  # TRAIN_FLAGS is a list of flags
  CUPY_TF32=$TF32 "$PYTHON" train.py --dataset "$DATASET" "${data[@]}" --no-download \
    --model "$MODEL" $TRAIN_FLAGS --epochs "$EPOCHS" --seed "$s" --device "$DEVICE" \
    "${limit[@]}" --quiet --out "$OUT/seed$s" >"$OUT/seed$s.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  rc=$?
  s=$(echo $SEEDS | cut -d' ' -f$((i + 1)))
  echo "seed $s: exit $rc; $(grep -E '^test' "$OUT/seed$s.log" | tr '\n' ' ')"
  [ $rc -ne 0 ] && failed=1 && tail -n 3 "$OUT/seed$s.log"
done

finished=()
for s in $SEEDS; do
  ck="$OUT/seed$s/best.npz"
  if [ -f "$ck" ]; then
    (cd "$OUT/seed$s" && sha256sum best.npz >best.npz.sha256)
    if grep -q '"test_center_top1_error"' "$OUT/seed$s/metrics.json" 2>/dev/null; then
      finished+=("$ck")
      # a run that trained all its epochs needs no last.npz; one stopped by the time
      # limit (tested all the same) or interrupted resumes from it
      if [ "${KEEP_CHECKPOINTS:-0}" != 1 ] &&
         ! grep -q '"stopped_by_time_limit"' "$OUT/seed$s/metrics.json"; then
        rm -f "$OUT/seed$s/last.npz"
      fi
    fi
  fi
done

if [ ${#finished[@]} -ge 2 ]; then
  echo "== the ensemble of ${#finished[@]} finished networks"
  "$PYTHON" -m experiments ensemble "${finished[@]}" --device "$DEVICE" "${data[@]}" \
    --out "$OUT/ensemble.json" || failed=1
elif [ ${#finished[@]} -eq 1 ] && [ "$(echo $SEEDS | wc -w)" -eq 1 ]; then
  echo "one network (one seed asked for): no ensemble"
else
  echo "gpu_headline: ${#finished[@]} run(s) finished; an ensemble needs two" >&2
  failed=1
fi

if [ "$TESTS" = parallel ]; then
  wait "$tests_pid"
  tests_rc=$?
  echo "== the CuPy cases of the tests: exit $tests_rc"
  tests_summary
  if [ $tests_rc -ne 0 ]; then
    echo "gpu_headline: the GPU tests FAILED (see $OUT/gpu-tests.log): the numbers above are not to be trusted" >&2
    failed=1
  fi
fi

if [ -n "$PACK" ]; then
  # the logs, metrics, curves, hashes and the ensemble; checkpoints stay here
  tar -czf "$PACK" --exclude='*.npz' -C "$(dirname "$OUT")" "$(basename "$OUT")" &&
    echo "packed $OUT (no checkpoints) into $PACK ($(du -h "$PACK" | cut -f1))" || failed=1
fi
exit $failed
