"""The four temporal modes on one 2-D set: same seeds, same step budget, through the study runner.

    python bench/toy_modes.py [--steps 1000] [--seeds 0 1 2] [--data checkerboard] [--out DIR] [key=value ...]

Runs the study of ``configs/toy_checkerboard_toflow.yaml`` over ``time.mode`` (one run after
another, so the timings share the machine's state) and writes its table, ``DIR/results.md``:
test NLL, NFE forward and backward per step, time per step, final T, means over seeds, and
the NFE and time ratios against ``fixed`` from the same run. A stopped benchmark resumes
when run again with the same ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time

from toflow.study import StudyConfig, run_study

MODES = ("fixed", "joint", "steer", "toflow")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--data", default="checkerboard")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--out", default=f"runs/bench_toy_modes/{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("overrides", nargs="*", help="extra key=value for every run")
    args = parser.parse_args()
    study = StudyConfig(
        base="configs/toy_checkerboard_toflow.yaml", grid={"time.mode": args.modes}, seeds=args.seeds, out=args.out,
        overrides=[f"data.name={args.data}", f"trainer.max_steps={args.steps}",
                   f"trainer.eval_every={max(args.steps // 4, 1)}", f"trainer.viz_every={args.steps}", *args.overrides],
        baseline="time.mode=fixed" if "fixed" in args.modes else None)
    run_study(study)
    return 0


if __name__ == "__main__":
    sys.exit(main())
