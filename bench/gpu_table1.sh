#!/usr/bin/env bash
# The paper's Table 1 protocol (batch 200, Adam 1e-3, T0 = 1, TO-FLOW lr 1e-2, alpha 0.1,
# eps 0.1, dopri5 at 1e-5, FFJORD's multiscale flow) for a few hundred steps on one GPU:
# fixed, steer and toflow side by side, time per step and NFE.
#
#   bash bench/gpu_table1.sh                      # Fashion-MNIST, 300 steps
#   DATA=mnist STEPS=500 ROOT=/data bash bench/gpu_table1.sh
#
# DATA: mnist | fashion_mnist | cifar (the config prefix); ROOT: data.root; EXTRA: more
# key=value overrides, after the protocol's own.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
STEPS=${STEPS:-300}
DATA=${DATA:-fashion_mnist}
ROOT=${ROOT:-data}
OUT=${OUT:-runs/gpu_table1/$(date +%Y%m%d-%H%M%S)}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
for mode in fixed steer toflow; do
  $PY -m toflow.trainers.run "configs/${DATA}_${mode}.yaml" "trainer.max_steps=${STEPS}" \
    "trainer.eval_every=${STEPS}" "trainer.viz_every=${STEPS}" "trainer.checkpoint_every=${STEPS}" \
    "trainer.log_dir=${OUT}/${mode}" trainer.progress_bar=false "data.root=${ROOT}" data.test_size=1000 \
    trainer.accelerator=auto "${EXTRA_ARGS[@]}"
done
$PY - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {m: json.loads((out / m / "summary.json").read_text()) for m in ("fixed", "steer", "toflow")}
base = rows["fixed"]
print(f"| mode | s/step | vs fixed | NFE fwd | NFE bwd | NFE total vs fixed | test bits/dim | final T (first block) |")
print("|---|---|---|---|---|---|---|---|")
for mode, s in rows.items():
    nfe = s["nfe_forward_mean"] + s["nfe_backward_mean"]
    base_nfe = base["nfe_forward_mean"] + base["nfe_backward_mean"]
    print(f"| {mode} | {s['time_per_iter_s']:.3f} | {s['time_per_iter_s'] / base['time_per_iter_s']:.2f}x | "
          f"{s['nfe_forward_mean']:.1f} | {s['nfe_backward_mean']:.1f} | {nfe / base_nfe:.2f}x | "
          f"{s.get('test_bpd', float('nan')):.3f} | {s['end_times'][0]:.3f} |")
PYEOF
