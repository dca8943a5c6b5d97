#!/usr/bin/env bash
# The headline attempt for a GPU lent for a few minutes, in one command:
#   - first (BENCH=1), `python -m bench.gpu --quick --layers`: our training step
#     against PyTorch's on that GPU, with the ops on each of their GPU routes (a few
#     whole-array calls, the CPU's loops, or hand-written kernels), and each layer's
#     host time against its device time, into DEST/bench-gpu.txt (a failure there is
#     noted, and the lease goes on; it trains on the route that passed with the
#     shortest step, unless ALEXNET_GPU_ROUTES is set);
#   - then groups of `mini` networks trained at once on the one GPU by
#     scripts/gpu_headline.sh, each run held to TRAIN_SECONDS with its learning-rate
#     drops at fractions of the epochs that fit (train.py --time-limit, --lr-drops):
#     group "base", the best recipe so far (lr 0.02, drops at 50% and 70%), on every
#     training image (--val-fraction 0: no validation split, the last epoch tested), seeds
#     BASE_SEEDS, with the CuPy cases of the tests running beside it; and, where
#     VARIANT_SEEDS names seeds, a second group, VARIANT_NAME ("variant"), the same
#     with VARIANT_FLAGS after the base flags (train.py takes the last of a repeated
#     flag that takes a value, so VARIANT_FLAGS="--lr 0.04" changes the base's learning
#     rate, and "--lr-drops none --cosine" its schedule; the flags are split at
#     spaces), to compare one change with the base on the same lease; ERASE_SEEDS is
#     the group "erase" of the first lease, VARIANT_FLAGS="--erase ERASE" (off by
#     default since then: it made 14-epoch runs worse);
#   - each group's ensemble, and (with a second group) the ensemble of every network of both;
#   - with ENSEMBLE_WITH (checkpoints of earlier leases, carried here, e.g. the weights
#     that came back from one), the ensemble of group base's networks and those, into
#     DEST/ensemble-with.json: networks of one recipe average best, and a lease trains
#     only two.
# What comes back fits in a few files in DEST (no whole checkpoints: their SHA-256s are
# in the archives): bench-gpu.txt, base.tar.gz, VARIANT_NAME.tar.gz (with a second group),
# ensemble-all.json (with a second group), ensemble-with.json (with ENSEMBLE_WITH),
# weights.tar.part-* (the weights of the first
# WEIGHTS_BACK networks of group base, 18 MB each for mini, in parts of 15 MB, so that
# two networks stay within what a lent machine gives back), lease.log; where that makes
# more than the 8 files a lent machine gives back, the .json files and bench-gpu.txt
# go into small-files.tar.
#
#   mkdir -p runs/data && cp /usr/share/datasets/fashion-mnist/* runs/data/
#   DEST=/some/folder DATA_DIR=runs/data PYTHON=python3 bash scripts/gpu_lease.sh
#
# Then, where DEST came back: tar -xzf DEST/base.tar.gz (and VARIANT_NAME.tar.gz), cat
# DEST/weights.tar.part-* | tar -x (weights/base-seed0.npz, ..., weights/SHA256SUMS:
# python train.py --eval-only weights/base-seed0.npz, or python -m experiments ensemble
# with networks of other leases), and record with `python -m experiments headline
# --variant NAME --change ... --ensemble ... --run ...` (see scripts/gpu_headline.sh).
#
# WORK is emptied at the start, and this script's own files in DEST (every .tar.gz
# there among them) removed, so that a second call on a still-warm machine does not
# count the first call's networks.
# Settings (environment): DEST (default runs/gpu-lease-results), WORK (runs/gpu-lease),
# BENCH (1; 0: no benchmark), BASE_SEEDS ("0 1": two networks keep an H200 busy),
# VARIANT_SEEDS (""; e.g. "10 11"), VARIANT_FLAGS (needed with VARIANT_SEEDS), VARIANT_NAME
# ("variant"; letters, digits, - and _, not "base"), ERASE_SEEDS (""; instead of
# VARIANT_SEEDS: the group "erase"), ERASE (0.5), EPOCHS (100: the
# time limit decides), TRAIN_SECONDS (480 at most), CALL_SECONDS (570: the whole
# lease's wall time, within one device call's 600 s limit; the training gets what the benchmark
# leaves of it, less FINISH_SECONDS, 90, for starting the runs and, after them, the
# tests' end, the ensemble and the packing; 0: no cap), BASE_FLAGS ("--init he --lr 0.02
# --lr-drops 0.5,0.7 --val-fraction 0"), EXTRA_FLAGS (added to both groups),
# WEIGHTS_BACK (2; 0: none), PART_SIZE (15M, split's -b), ENSEMBLE_WITH (""; checkpoint paths, space-separated), TESTS (parallel; skip), TEST_ROUTES ("few kernels": the
# tests' GPU routes, a pass each), DEVICE (cuda), MODEL, DATASET, DATA_DIR, TF32 (1),
# PYTHON: as scripts/gpu_headline.sh takes them.
set -uo pipefail
cd "$(dirname "$0")/.."

DEST=${DEST:-runs/gpu-lease-results}
WORK=${WORK:-runs/gpu-lease}
BENCH=${BENCH:-1}
BASE_SEEDS=${BASE_SEEDS-"0 1"}
ERASE_SEEDS=${ERASE_SEEDS-}
ERASE=${ERASE:-0.5}
VARIANT_SEEDS=${VARIANT_SEEDS-}
VARIANT_FLAGS=${VARIANT_FLAGS-}
VARIANT_NAME=${VARIANT_NAME:-variant}
if [ -n "$ERASE_SEEDS" ]; then      # the first lease's second group, by its old name
  if [ -n "$VARIANT_SEEDS$VARIANT_FLAGS${VARIANT_NAME#variant}" ]; then
    echo "gpu_lease: ERASE_SEEDS and VARIANT_SEEDS, VARIANT_FLAGS or VARIANT_NAME are" \
      "set; a lease trains one second group: set ERASE_SEEDS alone, or the VARIANT_ ones" >&2
    exit 2
  fi
  VARIANT_SEEDS=$ERASE_SEEDS VARIANT_FLAGS="--erase $ERASE" VARIANT_NAME=erase
fi
if [ -n "$VARIANT_SEEDS" ] && [ -z "$VARIANT_FLAGS" ]; then
  echo "gpu_lease: VARIANT_SEEDS names seeds but VARIANT_FLAGS is empty: without a" \
    "change the group is more seeds of the base (put them in BASE_SEEDS)" >&2
  exit 2
fi
case "$VARIANT_NAME" in
  base|[!A-Za-z0-9]*|*[!A-Za-z0-9_-]*)
    echo "gpu_lease: VARIANT_NAME=$VARIANT_NAME: it names a folder and an archive beside" \
      "base's; use letters, digits, - and _, starting with a letter or digit, and not" \
      "\"base\"" >&2
    exit 2;;
esac
EPOCHS=${EPOCHS:-100}
TRAIN_SECONDS=${TRAIN_SECONDS:-480}
CALL_SECONDS=${CALL_SECONDS:-570}
FINISH_SECONDS=${FINISH_SECONDS:-90}
t_start=$SECONDS
BASE_FLAGS=${BASE_FLAGS:-"--init he --lr 0.02 --lr-drops 0.5,0.7 --val-fraction 0"}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
WEIGHTS_BACK=${WEIGHTS_BACK:-2}
PYTHON=${PYTHON:-$(command -v python3 || echo python)}
DEVICE=${DEVICE:-cuda}
# the CuPy cases of the tests, beside group base: on the default route and the kernels
TEST_ROUTES=${TEST_ROUTES:-"few kernels"}
export DEVICE PYTHON EPOCHS TEST_ROUTES
ENSEMBLE_WITH=${ENSEMBLE_WITH:-}
# Each group's flags through train.py's own checks (a flag it does not know, two
# schedules, no schedule with --val-fraction 0), before any minute goes into a group
# that would fail at its start. (gpu_headline.sh adds --epochs, --seed, --device,
# --time-limit, --out and the data's flags after these, and those it sets win.)
check_flags() {   # check_flags GROUP FLAGS...
  local name=$1
  shift
  if ! "$PYTHON" -c '
import sys
import train
a = train.build_parser().parse_args(sys.argv[1:])
try:
    train.validate_args(a)
except (ValueError, OSError) as e:
    sys.exit(f"error: {e}")' "$@"; then
    echo "gpu_lease: group $name: train.py refuses its flags ($*): see above" >&2
    exit 2
  fi
}
# shellcheck disable=SC2086  # the flags are lists
check_flags base $BASE_FLAGS $EXTRA_FLAGS
if [ -n "$VARIANT_SEEDS" ]; then
  # shellcheck disable=SC2086
  check_flags "$VARIANT_NAME" $BASE_FLAGS $EXTRA_FLAGS $VARIANT_FLAGS
fi
for ck in $ENSEMBLE_WITH; do     # checked before the lease's minutes go into training
  if [ ! -f "$ck" ]; then
    echo "gpu_lease: ENSEMBLE_WITH names $ck, which does not exist" >&2
    exit 2
  fi
done
mkdir -p "$DEST" "$WORK"
DEST=$(cd "$DEST" && pwd)
WORK=$(cd "$WORK" && pwd)
# A second call on a warm machine starts clean: the networks are collected from
# WORK's folders and DEST's files, and the first call's would join this one's.
for ck in $ENSEMBLE_WITH; do
  case "$(cd "$(dirname "$ck")" && pwd)/" in "$WORK"/*)
    echo "gpu_lease: ENSEMBLE_WITH names $ck, inside WORK ($WORK), which is cleared" >&2
    exit 2;; esac
done
case "$DEST/" in "$WORK"/*)
  echo "gpu_lease: DEST ($DEST) is inside WORK ($WORK), which is cleared" >&2; exit 2;; esac
rm -rf "${WORK:?}"/*
# (every .tar.gz: a first call's second group may have had another name)
(cd "$DEST" && rm -f -- bench-gpu.txt ./*.tar.gz ensemble-all.json \
   ensemble-with.json small-files.tar weights.tar.part-*)
exec > >(tee "$DEST/lease.log") 2>&1
echo "gpu_lease: $(date -u +%FT%TZ) on $(hostname); work in $WORK, results in $DEST"

if [ "$BENCH" = 1 ]; then     # alone on the GPU, before the training: its timings
  tf32=on
  [ "${TF32:-1}" = 0 ] && tf32=off
  echo "== python -m bench.gpu --quick --layers --tf32 $tf32 (into bench-gpu.txt)"
  timeout 180 "$PYTHON" -m bench.gpu --quick --layers --tf32 "$tf32" \
    >"$DEST/bench-gpu.txt" 2>&1
  brc=$?
  tail -n 40 "$DEST/bench-gpu.txt"
  [ $brc -ne 0 ] && echo "gpu_lease: bench.gpu exited $brc (see bench-gpu.txt); training anyway"
  # Train on the route of our ops (engine/backend.py: few, loops, kernels) that passed
  # bench.gpu's check with the shortest step, unless ALEXNET_GPU_ROUTES was set: the
  # hand-written kernels where they are fastest and correct, the CPU's loops where the
  # other two failed, rather than lose the lease
  fastest=$(sed -n 's/^fastest GPU route: \([a-z]*\)$/\1/p' "$DEST/bench-gpu.txt" | tail -n 1)
  if [ -n "$fastest" ] && [ -z "${ALEXNET_GPU_ROUTES:-}" ]; then
    export ALEXNET_GPU_ROUTES=$fastest
    echo "gpu_lease: $(grep '^GPU routes:' "$DEST/bench-gpu.txt" | tail -n 1); training on the" \
      "fastest that passed: ALEXNET_GPU_ROUTES=$fastest"
  fi
fi

# A lease killed at its call's limit gives back only what it had written: hold the
# training to what is left of the call, so that the networks are tested and packed.
if [ "$CALL_SECONDS" != 0 ]; then
  left=$((CALL_SECONDS - (SECONDS - t_start) - FINISH_SECONDS))
  if [ "$left" -lt "$TRAIN_SECONDS" ]; then
    [ "$left" -lt 30 ] && left=30
    echo "gpu_lease: $((SECONDS - t_start)) s of the call's $CALL_SECONDS s gone;" \
      "training for $left s instead of $TRAIN_SECONDS (FINISH_SECONDS=$FINISH_SECONDS kept)"
    TRAIN_SECONDS=$left
  fi
fi
export TRAIN_SECONDS

group() {   # group NAME SEEDS TESTS FLAGS...
  local name=$1 seeds=$2 tests=$3
  shift 3
  OUT="$WORK/$name" SEEDS="$seeds" TESTS="$tests" TRAIN_FLAGS="$*" \
    PACK="$DEST/$name.tar.gz" bash scripts/gpu_headline.sh >"$WORK/$name.out" 2>&1
}

# shellcheck disable=SC2086  # the flags are lists
group base "$BASE_SEEDS" "${TESTS:-parallel}" $BASE_FLAGS $EXTRA_FLAGS &
base_pid=$!
variant_pid=
if [ -n "$VARIANT_SEEDS" ]; then
  # shellcheck disable=SC2086
  group "$VARIANT_NAME" "$VARIANT_SEEDS" skip $BASE_FLAGS $EXTRA_FLAGS $VARIANT_FLAGS &
  variant_pid=$!
fi
wait "$base_pid"
rc=$?
echo "== group base (seeds $BASE_SEEDS): exit $rc"
cat "$WORK/base.out"
if [ -n "$variant_pid" ]; then
  wait "$variant_pid"
  vrc=$?
  echo "== group $VARIANT_NAME (seeds $VARIANT_SEEDS, $VARIANT_FLAGS): exit $vrc"
  cat "$WORK/$VARIANT_NAME.out"
  [ $vrc -ne 0 ] && rc=1
fi

data=()
[ -n "${DATA_DIR:-}" ] && data=(--data-dir "$DATA_DIR")
tested=()
for ck in "$WORK"/base/seed*/best.npz "$WORK/$VARIANT_NAME"/seed*/best.npz; do
  [ -f "$ck" ] && grep -q '"test_center_top1_error"' "$(dirname "$ck")/metrics.json" \
    2>/dev/null && tested+=("$ck")
done
if [ -n "$VARIANT_SEEDS" ] && [ ${#tested[@]} -ge 2 ]; then   # base alone: its own
  echo "== the ensemble of all ${#tested[@]} tested networks"
  "$PYTHON" -m experiments ensemble "${tested[@]}" --device "$DEVICE" "${data[@]}" \
    --out "$DEST/ensemble-all.json" || rc=1
fi
base_tested=()
for ck in "${tested[@]}"; do
  case "$ck" in "$WORK"/base/*) base_tested+=("$ck");; esac
done
if [ -n "$ENSEMBLE_WITH" ] && [ ${#base_tested[@]} -ge 1 ]; then
  echo "== the ensemble of group base's ${#base_tested[@]} network(s) and ENSEMBLE_WITH"
  # shellcheck disable=SC2086  # ENSEMBLE_WITH is a list of paths
  "$PYTHON" -m experiments ensemble "${base_tested[@]}" $ENSEMBLE_WITH --device "$DEVICE" \
    "${data[@]}" --out "$DEST/ensemble-with.json" || rc=1
fi
# The first WEIGHTS_BACK networks of group base, weights only (python -m experiments
# weights: no momentum, 18 MB each for mini), as one tar in parts of 15 MB: enough to
# evaluate them again, or to average them with networks of another lease, elsewhere.
back=()
names=()
for ck in "${base_tested[@]}"; do
  [ ${#back[@]} -lt "$WEIGHTS_BACK" ] || continue
  back+=("$ck")
  names+=("base-$(basename "$(dirname "$ck")")")
done
if [ ${#back[@]} -ge 1 ]; then
  echo "== the weights of ${names[*]} (weights.tar.part-*)"
  rm -rf "$WORK/weights"
  if "$PYTHON" -m experiments weights "${back[@]}" --out-dir "$WORK/weights" \
       --names "$(IFS=,; echo "${names[*]}")" &&
     (cd "$WORK/weights" && sha256sum ./*.npz >SHA256SUMS) &&
     tar -cf - -C "$WORK" weights | split -b "${PART_SIZE:-15M}" - "$DEST/weights.tar.part-"; then :
  else
    echo "gpu_lease: the weights could not be packed"
    rc=1
  fi
fi
# At most 8 files come back from a lent machine: with both groups, ENSEMBLE_WITH and
# 3 weight parts there are 9, so the small ones go into one tar.
if [ "$(ls "$DEST" | wc -l)" -gt 8 ]; then
  small=$(cd "$DEST" && ls -- *.json bench-gpu.txt 2>/dev/null)
  # shellcheck disable=SC2086  # a list of plain file names
  (cd "$DEST" && tar -cf small-files.tar $small && rm -f $small) &&
    echo "gpu_lease: more than 8 files; $(echo $small | tr '\n' ' ') are in small-files.tar"
fi
echo "gpu_lease: done $(date -u +%FT%TZ), exit $rc; in $DEST: $(ls "$DEST" | tr '\n' ' ')"
exit $rc
