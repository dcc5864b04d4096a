#!/usr/bin/env bash
# The GPU checks in one go, for a machine whose image already has a CUDA build of torch and
# Lightning (run from the repo root with the project importable: `pip install --no-deps -e .`,
# or PYTHONPATH=src). Results go to $OUT (default outputs/gpu). Sizes by environment:
#   SWEEP_JOBS (16384): the vectorised seed sweep of the default run, timed, outputs included
#   SEEDS (2000): seeds per width for `make seeds` on the GPU (0: skip)
#   ACCEL (gpu): cpu for a dry run of this script anywhere
set -uo pipefail
OUT=${OUT:-outputs/gpu}
SWEEP_JOBS=${SWEEP_JOBS:-16384}
SEEDS=${SEEDS:-2000}
PY=${PYTHON:-python3}
ACCEL=${ACCEL:-gpu}  # cpu: a dry run of this script anywhere
mkdir -p "$OUT"  # at most 8 files come back from the GPU machine: run dirs go to /tmp
export PYTHONUNBUFFERED=1
since() { $PY -c "import time; print(f'{time.time() - $1:.1f}')"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" | tee -a "$OUT/gpu.txt"
nproc | sed 's/^/cpu cores: /' | tee -a "$OUT/gpu.txt"

echo "== the GPU tests" | tee "$OUT/summary.txt"
$PY -m pytest -q -rs tests/test_cli.py tests/test_ddp.py tests/test_vectorized.py -k "gpu or nccl" \
  2>&1 | tail -6 | tee -a "$OUT/summary.txt"

echo "== the default run on the GPU" | tee -a "$OUT/summary.txt"
start=$(date +%s.%N)
$PY -m xor_lightning.train trainer.accelerator=$ACCEL hydra.run.dir="$(mktemp -d)/run" > "$OUT/run.log" 2>&1
echo "exit $? in $(since "$start") s" | tee -a "$OUT/summary.txt"
grep -E "epoch +(0|400)|best val" "$OUT/run.log" | tee -a "$OUT/summary.txt"

echo "== vectorised seed sweep, $SWEEP_JOBS jobs of the default run" | tee -a "$OUT/summary.txt"
sweep=$(mktemp -d)/sweep
/usr/bin/time -v $PY -m xor_lightning.train -m "seed=range($SWEEP_JOBS)" hydra/launcher=vectorized \
  trainer.accelerator=$ACCEL hydra.sweep.dir="$sweep" > "$OUT/sweep.log" 2> "$OUT/sweep.time"
echo "exit $?" | tee -a "$OUT/summary.txt"
grep -E "Elapsed|Maximum resident" "$OUT/sweep.time" | tee -a "$OUT/summary.txt"
grep -E "Launching|jobs in|epoch +(0|400) |sweep summary" "$OUT/sweep.log" | cut -c1-160 \
  | tee -a "$OUT/summary.txt"
echo "files: $(find "$sweep" -type f | wc -l), MB: $(du -sm "$sweep" | cut -f1)" | tee -a "$OUT/summary.txt"
rm -rf "$sweep"

if [ "$SEEDS" -gt 0 ]; then
  echo "== make seeds on the GPU, $SEEDS seeds per width" | tee -a "$OUT/summary.txt"
  start=$(date +%s.%N)
  seeds=$(mktemp -d)/seeds
  $PY -m xor_lightning.sweeps.seeds --seeds "$SEEDS" --sweep-dir "$seeds" trainer.accelerator=$ACCEL \
    > "$OUT/seeds.log" 2>&1
  echo "exit $? in $(since "$start") s" | tee -a "$OUT/summary.txt"
  tail -7 "$OUT/seeds.log" | tee -a "$OUT/summary.txt"
  cp "$seeds/success_rate.csv" "$seeds/success_rate.png" "$OUT/" 2>/dev/null
  rm -rf "$seeds"
fi
