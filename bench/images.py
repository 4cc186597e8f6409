"""Fixed vs STEER vs TO-FLOW vs TO-FLOW + OT on real Fashion-MNIST at CPU size, through the study runner.

    python bench/images.py [--steps 200] [--seeds 0] [--out DIR] [key=value ...]

Runs the study of ``configs/fashion_mnist_small_toflow.yaml`` (Fashion-MNIST from
``data.root`` or Debian's dataset-fashion-mnist) over the arms, one after another, on the
same budget, and writes its table, ``DIR/results.md``: test NLL and bits/dim, NFE forward
and backward per step, time per step and final T, means over seeds, with ratios against
``fixed``. Run again with the same ``--out`` to complete a stopped benchmark: finished
arms are read back, an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import time

from toflow.study import StudyConfig, run_study

OT = {"regularizers.kinetic": 0.01, "regularizers.jacobian_frobenius": 0.01}  # RNODE's coefficients
ARMS = {"fixed": {"time.mode": "fixed"}, "steer": {"time.mode": "steer"}, "toflow": {}, "toflow_ot": OT}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--out", default=f"runs/bench_images/{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    study = StudyConfig(
        base="configs/fashion_mnist_small_toflow.yaml", grid={"arm": {arm: ARMS[arm] for arm in args.arms}},
        seeds=args.seeds, out=args.out, baseline="arm=fixed" if "fixed" in args.arms else None,
        overrides=[f"trainer.max_steps={args.steps}", f"trainer.eval_every={args.steps}",
                   f"trainer.viz_every={args.steps}", *args.overrides])
    run_study(study)
    return 0


if __name__ == "__main__":
    sys.exit(main())
