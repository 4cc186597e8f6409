#!/usr/bin/env bash
# A few steps of mnist_toflow (or DATA=fashion_mnist) on one GPU and, where there are
# several, on all of them: time per step and NFE.
#
#   bash bench/gpu_check.sh
#   STEPS=50 DATA=fashion_mnist ROOT=data bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
STEPS=${STEPS:-30}
DATA=${DATA:-mnist}
ROOT=${ROOT:-data}
OUT=${OUT:-runs/gpu_check/$(date +%Y%m%d-%H%M%S)}
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
[ "$GPUS" -ge 1 ] || { echo "gpu_check: no CUDA device here" >&2; exit 1; }
COUNTS=1; [ "$GPUS" -gt 1 ] && COUNTS="1 $GPUS"
for n in $COUNTS; do
  $PY -m toflow.trainers.run "configs/${DATA}_toflow.yaml" "trainer.max_steps=${STEPS}" "trainer.devices=${n}" \
    trainer.accelerator=gpu "trainer.eval_every=${STEPS}" "trainer.viz_every=${STEPS}" data.test_size=1000 \
    "trainer.log_dir=${OUT}/gpus${n}" trainer.progress_bar=false "data.root=${ROOT}"
  $PY -c "import json,sys; s=json.load(open('${OUT}/gpus${n}/summary.json')); print(f'${n} GPU(s): {s[\"time_per_iter_s\"]:.3f} s/step, NFE {s[\"nfe_forward_mean\"]:.1f} fwd / {s[\"nfe_backward_mean\"]:.1f} bwd, global batch 200')"
done
