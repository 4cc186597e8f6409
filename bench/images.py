"""Fixed vs STEER vs TO-FLOW vs TO-FLOW + OT on real Fashion-MNIST at CPU size.

    python bench/images.py [--steps 200] [--seeds 0] [--out runs/bench_images.md] [key=value ...]

Trains ``configs/fashion_mnist_small_<arm>.yaml`` for each arm and seed, one after another,
on the same budget (Fashion-MNIST from ``data.root`` or Debian's dataset-fashion-mnist),
and writes test bits/dim, NFE forward and backward per step, time per step and final T
(first block), medians over seeds, with ratios against ``fixed``. ``--root DIR`` reuses an
earlier benchmark's folder: finished arms are read back, an interrupted one resumes from
its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import toflow  # noqa: E402
from common import machine, median_table  # noqa: E402
from toflow.trainers.train import finished_summary, last_checkpoint  # noqa: E402

ARMS = ("fixed", "steer", "toflow", "toflow_ot")


def train_arm(run_dir: Path, arm: str, seed: int, steps: int, overrides: list[str]) -> dict:
    """One arm's summary: read back if the run finished, else trained (resumed if it started)."""
    summary = finished_summary(run_dir)
    if summary is not None:
        return summary
    resume = last_checkpoint(run_dir).is_file()
    cfg = toflow.load_config(f"configs/fashion_mnist_small_{arm}.yaml", [
        f"seed={seed}", f"trainer.max_steps={steps}", f"trainer.log_dir={run_dir}",
        f"trainer.resume={str(resume).lower()}", f"trainer.eval_every={steps}", f"trainer.viz_every={steps}",
        "trainer.progress_bar=false", *overrides])
    return toflow.train(cfg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--runs", default="runs/bench_images", help="a new timestamped folder goes here")
    parser.add_argument("--root", help="an earlier benchmark's folder to complete instead")
    parser.add_argument("--out", default="runs/bench_images.md")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    started = time.perf_counter()
    root = Path(args.root) if args.root else Path(args.runs) / time.strftime("%Y%m%d-%H%M%S")
    results: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    for seed in args.seeds:
        for arm in args.arms:
            summary = train_arm(root / f"{arm}-s{seed}", arm, seed, args.steps, args.overrides)
            results[arm].append(summary)
            print(f"{arm:9s} seed {seed}: {summary['test_bpd']:.3f} bits/dim  NFE {summary['nfe_forward_mean']:.1f}"
                  f"/{summary['nfe_backward_mean']:.1f}  {summary['time_per_iter_s']:.2f} s/step", flush=True)
    text = (f"## Fashion-MNIST at CPU size ({date.today()})\n\nMachine: {machine()}. `configs/fashion_mnist_small_*`, "
            f"{args.steps} steps, seeds {', '.join(map(str, args.seeds))}; overrides: "
            f"{' '.join(args.overrides) or 'none'}. Total wall time {time.perf_counter() - started:.0f} s.\n\n"
            + median_table(results, "test_bpd", "test bits/dim", "fixed" if "fixed" in results else args.arms[0]))
    print(text)
    Path(args.out).write_text(text)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
