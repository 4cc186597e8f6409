"""Training's error control, measured: ``solver.control: all`` (z, the log-density and the
regulariser integrals in the error norm) against ``state`` (z alone).

    python bench/error_control.py [--out DIR] [--workloads NAME ...]

Each workload trains twice from the same seed, once each way, two runs at a time, through the
study runner (run it again with the same ``--out`` to complete a stopped benchmark). Then, at each
run's final weights, the likelihood loss of one fixed batch (in training mode: the training
tolerances and, for Hutchinson's trace, one fixed probe) is computed with either control and
against a float64 reference at 1e-9. ``DIR/results.md`` gets, per workload and control: the NFE
per step, the time per step (the two ran side by side), the converged test figure, and the loss
error of both controls at that run's weights.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

import torch
from common import machine

from toflow import load_flow
from toflow.data import bits_per_dim, make_source
from toflow.study import StudyConfig, arms, run_dir, run_study

WORKLOADS = {  # name: (config, overrides)
    "checkerboard, 1e-4": ("configs/toy_checkerboard_quick.yaml", ["trainer.animate_frames=0"]),
    "checkerboard, 1e-5": ("configs/toy_checkerboard_toflow.yaml", ["trainer.max_steps=1000"]),
    "digits 8x8, 1e-4": ("configs/digits_single_scale_toflow.yaml", []),
}
REFERENCE_TOL = 1e-9


def loss(flow, x: torch.Tensor, metric) -> float:
    """The likelihood loss of ``x`` in training mode, with the probe drawn from seed 0."""
    torch.manual_seed(0)
    flow.train()
    with torch.no_grad():
        return metric(float(-flow.log_prob(x).mean()))


def with_solver(flow, **settings):
    """A copy of ``flow`` whose blocks' solvers take ``settings``."""
    flow = copy.deepcopy(flow)
    for block in flow.blocks():
        block.use_solver(dataclasses.replace(block.solver, **settings))
    return flow


def loss_errors(run: Path) -> dict:
    """The loss of a fixed batch at ``run``'s final weights with either control, and the reference."""
    flow, cfg = load_flow(run, which="last")
    d = cfg.data
    source = make_source(d.name, cfg.seed, d.root, d.test_size, d.resize, d.subset)
    x = source.test[: cfg.data.batch_size].to(torch.float32)
    metric = (lambda nll: float(bits_per_dim(nll, source.dim, source.levels))) if source.is_image else (lambda nll: nll)
    reference = loss(with_solver(flow, atol=REFERENCE_TOL, rtol=REFERENCE_TOL, control="all").double(), x.double(),
                     metric)
    return {control: loss(with_solver(flow, control=control), x, metric) - reference for control in ("all", "state")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=f"runs/bench_error_control/{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lines = [f"Training's error control on {machine()}, seed {args.seed}; both controls of a workload ran side by "
             f"side. Loss error: the likelihood loss of one fixed batch at the run's final weights, at the training "
             f"tolerance with each control, minus the float64 figure at {REFERENCE_TOL:g} (nats for 2-D, bits/dim "
             "for images).", "",
             "| workload | trained with | NFE fwd/step | NFE bwd/step | s/step | test (converged) | loss error, all | "
             "loss error, state |", "|---|---|---|---|---|---|---|---|"]
    for name in args.workloads:
        config, overrides = WORKLOADS[name]
        slug = name.replace(", ", "_").replace(" ", "_")
        study = StudyConfig(base=config, overrides=[*overrides, "trainer.num_threads=1", "trainer.progress_bar=false"],
                            grid={"solver.control": ["all", "state"]}, seeds=[args.seed],
                            out=f"{args.out}/{slug}", parallel=2, baseline="solver.control=all")
        results = run_study(study)
        for arm in arms(study.grid):
            summary = results[arm.name][0]
            errors = loss_errors(run_dir(study, arm, args.seed))
            figure = summary.get("test_bpd", summary["test_nll"])
            lines.append(f"| {name} | {arm.name.split('=')[1]} | {summary['nfe_forward_mean']:.1f} | "
                         f"{summary['nfe_backward_mean']:.1f} | {summary['time_per_iter_s']:.3f} | {figure:.4f} | "
                         f"{errors['all']:+.1e} | {errors['state']:+.1e} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
