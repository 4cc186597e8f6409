"""The four temporal modes on one 2-D set: same seeds, same step budget.

    python bench/toy_modes.py [--steps 1000] [--seeds 0 1 2] [--data checkerboard] [--out docs/toy_modes.md]

Trains ``configs/toy_checkerboard_<mode>.yaml`` for each mode and seed (one after another,
so the timings share the machine's state), then prints and writes a Markdown table:
final test NLL, mean NFE forward and backward per step, time per step, final T, each the
median over seeds, and the NFE and time ratios against ``fixed`` from the same run.
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

MODES = ("fixed", "joint", "steer", "toflow")


def run_one(mode: str, seed: int, steps: int, data: str, root: Path, extra: list[str]) -> dict:
    cfg = toflow.load_config(f"configs/toy_checkerboard_{mode}.yaml", [
        f"seed={seed}", f"data.name={data}", f"trainer.max_steps={steps}", f"trainer.log_dir={root / f'{mode}-s{seed}'}",
        f"trainer.eval_every={max(steps // 4, 1)}", f"trainer.viz_every={steps}", "trainer.progress_bar=false",
        *extra])
    return toflow.train(cfg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--data", default="checkerboard")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--runs", default="runs/bench_toy_modes", help="where the runs go")
    parser.add_argument("--out", default="runs/bench_toy_modes.md", help="Markdown table to write")
    parser.add_argument("overrides", nargs="*", help="extra key=value for every run")
    args = parser.parse_args()

    started = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(args.runs) / stamp
    results: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for seed in args.seeds:
        for mode in args.modes:
            summary = run_one(mode, seed, args.steps, args.data, root, args.overrides)
            results[mode].append(summary)
            print(f"{mode:7s} seed {seed}: NLL {summary['test_nll']:.3f}  NFE {summary['nfe_forward_mean']:.1f}"
                  f"/{summary['nfe_backward_mean']:.1f}  {summary['time_per_iter_s']:.3f} s/step  "
                  f"T {summary['end_times'][0]:.3f}", flush=True)
    if "fixed" not in results:
        print(json.dumps(results, indent=2))
        return 0
    text = (f"## Temporal modes on {args.data} ({date.today()})\n\n"
            f"Machine: {machine()}, 1 torch thread per run.\n"
            f"Overrides: {' '.join(args.overrides) or 'none'}. Runs: `{root}`. "
            f"Total wall time {time.perf_counter() - started:.0f} s. {args.steps} steps per run, median over seeds "
            f"{', '.join(map(str, args.seeds))} (range of test NLL in brackets).\n\n"
            + median_table(results, "test_nll", "test NLL (nats)", "fixed"))
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
