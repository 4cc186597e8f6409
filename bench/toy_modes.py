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
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

import toflow

MODES = ("fixed", "joint", "steer", "toflow")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}, "
            f"{torch.get_num_threads()} torch thread(s) per run")


def run_one(mode: str, seed: int, steps: int, data: str, root: Path, extra: list[str]) -> dict:
    cfg = toflow.load_config(f"configs/toy_checkerboard_{mode}.yaml", [
        f"seed={seed}", f"data.name={data}", f"trainer.max_steps={steps}", f"trainer.log_dir={root / f'{mode}-s{seed}'}",
        f"trainer.eval_every={max(steps // 4, 1)}", f"trainer.viz_every={steps}", "trainer.progress_bar=false",
        *extra])
    return toflow.train(cfg)


def table(results: dict[str, list[dict]], steps: int, seeds: list[int]) -> str:
    def med(mode, key):
        return statistics.median(r[key] if key != "T" else r["end_times"][0] for r in results[mode])

    base_nfe = med("fixed", "nfe_forward_mean") + med("fixed", "nfe_backward_mean")
    base_time = med("fixed", "time_per_iter_s")
    lines = ["| mode | test NLL (nats) | NFE fwd | NFE bwd | NFE total vs fixed | s/step | time vs fixed | final T |",
             "|---|---|---|---|---|---|---|---|"]
    for mode in results:
        nlls = [r["test_nll"] for r in results[mode]]
        spread = f" ({min(nlls):.3f}-{max(nlls):.3f})" if len(nlls) > 1 else ""
        nfe = med(mode, "nfe_forward_mean") + med(mode, "nfe_backward_mean")
        lines.append(f"| {mode} | {statistics.median(nlls):.3f}{spread} | {med(mode, 'nfe_forward_mean'):.1f} | "
                     f"{med(mode, 'nfe_backward_mean'):.1f} | {nfe / base_nfe:.2f}x | {med(mode, 'time_per_iter_s'):.3f} | "
                     f"{med(mode, 'time_per_iter_s') / base_time:.2f}x | {med(mode, 'T'):.3f} |")
    seeds_text = ", ".join(map(str, seeds))
    return "\n".join(lines) + f"\n\n{steps} steps per run, median over seeds {seeds_text} (range of test NLL in brackets).\n"


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
            f"Machine: {machine()}.\n"
            f"Overrides: {' '.join(args.overrides) or 'none'}. Runs: `{root}`. "
            f"Total wall time {time.perf_counter() - started:.0f} s.\n\n" + table(results, args.steps, args.seeds))
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
