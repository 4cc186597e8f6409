"""What an evaluation's error control costs and buys, on trained runs.

    python bench/eval_tolerance.py RUN_DIR [RUN_DIR ...] [--out FILE]

For each run (its ``best.ckpt``), the test score is evaluated four ways:

- as before: the error norm over z alone, one RMS over the batch, at the evaluation tolerances;
- as now: z, the log-density and the integrals each in the norm, every sample on its own, at the
  evaluation tolerances;
- as now, 10x tighter (the convergence check every reported score gets);
- the reference: as now, in float64, 1000x tighter than the evaluation tolerances.

It prints (and with ``--out`` writes) a Markdown table: each figure's error against the reference
(nats for 2-D data, bits/dim for images), the change the 10x check sees, and the time and field
evaluations of each way, as ratios against the way of before.
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
from toflow.solvers import Tolerance
from toflow.solvers.base import Solver
from toflow.trainers.evaluation import mean_nll


def before(self: Solver, training: bool, controlled: int | None = None) -> Tolerance:
    """The evaluation's error control of before: z alone, one RMS over the batch."""
    return Tolerance(*self.evaluation_tolerances, controlled) if not training else Solver.tolerance(self, training,
                                                                                                     controlled)


def tightened(flow, factor: float, dtype=None):
    flow = copy.deepcopy(flow)
    for block in flow.blocks():
        atol, rtol = block.solver.evaluation_tolerances
        block.use_solver(dataclasses.replace(block.solver, test_atol=atol / factor, test_rtol=rtol / factor))
    return flow.to(dtype) if dtype is not None else flow


def timed(flow, data: torch.Tensor, batch: int) -> tuple[float, float, int]:
    flow.reset_nfe()
    started = time.perf_counter()
    nll = mean_nll(flow, data.to(flow.end_times()[0].T), batch)
    return nll, time.perf_counter() - started, flow.nfe["forward"]


def measure(run: Path) -> dict:
    flow, cfg = load_flow(run)
    for block in flow.blocks():
        block.dynamics.compile = False  # eager everywhere: compiling would be timed with the first way
    d = cfg.data
    source = make_source(d.name, cfg.seed, d.root, d.test_size, d.resize, d.subset)
    batch = 200 if source.is_image else 1000
    unit = (lambda nll: float(bits_per_dim(nll, source.dim, source.levels))) if source.is_image else (lambda n: n)
    with_before = copy.deepcopy(flow)
    original = Solver.tolerance
    Solver.tolerance = before
    try:
        ways = {"before": timed(with_before, source.test, batch)}
    finally:
        Solver.tolerance = original
    ways["now"] = timed(flow, source.test, batch)
    ways["check"] = timed(tightened(flow, 10), source.test, batch)
    ways["reference"] = timed(tightened(flow, 1000, torch.float64), source.test, batch)
    atol, rtol = flow.blocks()[0].solver.evaluation_tolerances
    return {"run": run, "data": d.name, "tol": f"{atol:g}" if atol == rtol else f"{atol:g}/{rtol:g}",
            **{way: (unit(nll), seconds, nfe) for way, (nll, seconds, nfe) in ways.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [f"Evaluation error control on {machine()}, one thread. Errors against float64 at 1000x tighter "
             "tolerances; time and NFE of a whole test-set evaluation, as ratios against before.", "",
             "| run | data | eval tol | error before | error now | change at 10x tighter | reference | time now | "
             "NFE now | time of the check |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in args.runs:
        m = measure(run)
        ref, old, now, check = m["reference"][0], m["before"], m["now"], m["check"]
        lines.append(f"| {run} | {m['data']} | {m['tol']} | {old[0] - ref:+.1e} | {now[0] - ref:+.1e} | "
                     f"{check[0] - now[0]:+.1e} | {ref:.4f} | {now[1] / old[1]:.2f}x | {now[2] / old[2]:.2f}x | "
                     f"{check[1] / old[1]:.2f}x |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
