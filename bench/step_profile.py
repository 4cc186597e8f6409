"""Where the time of a training step goes: evaluations, the solver's own work, the T step, the trainer.

    python bench/step_profile.py CONFIG [CONFIG ...] [--steps 20] [--warmup 3] [--out FILE] [key=value ...]

Trains each config for ``--warmup`` + ``--steps`` steps (one torch thread unless an override
says otherwise) with timers around the parts of a step: the forward solve and loss
(``objective``), the backward pass, the weights' optimizer step, the T step, and the whole
step as Lightning runs it (data, logging, checks included). Then, on a training batch and
the weights reached, it times one evaluation of each block's augmented dynamics F alone,
forward (as the solve makes it: without a graph for the adjoint, ACA and MALI, with one
for autograd) and backward (F with a graph and its vector-Jacobian product for the state
and the weights), median of ``--repeats``. The evaluation cost of a step is then

    NFE-weighted cost = sum over blocks of NFE_fwd * t_F + NFE_bwd * t_B

(with autograd, which makes no backward evaluations, each forward evaluation's own
backward, t_B - t_F, takes their place) and the solver's own work is what the forward and
backward passes take beyond it. The
trainer's part is the step's time beyond the timed parts (Lightning's loop, data, logging,
the checks); each part is the median over the steps. The last column, step / NFE-weighted
cost, is how much a step costs beyond its evaluations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytorch_lightning as pl
import torch

import toflow
import toflow.trainers.module as module_code
from toflow.provenance import machine
from toflow.trainers import FlowModule


class Timers:
    """Seconds spent in named parts, per step."""

    def __init__(self):
        self.parts: dict[str, list[float]] = defaultdict(list)
        self.current: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[name] += time.perf_counter() - started
        return timed

    def close_step(self, keep: bool) -> None:
        if keep:
            for name, value in self.current.items():
                self.parts[name].append(value)
        self.current = defaultdict(float)

    def median(self, name: str) -> float:
        return statistics.median(self.parts[name]) if self.parts.get(name) else 0.0


class StepClock(pl.Callback):
    """The whole step as Lightning runs it, and each block's NFE, after ``warmup`` steps."""

    def __init__(self, timers: Timers, warmup: int):
        self.timers, self.warmup, self.nfe = timers, warmup, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.module, self.started = module, time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        keep = batch_idx >= self.warmup
        current = self.timers.current
        current["step"] = time.perf_counter() - self.started
        parts = ("forward", "backward", "weights step", "T step")
        current["trainer"] = current["step"] - sum(current[k] for k in parts)
        self.timers.close_step(keep)
        if keep:
            self.nfe.append([dict(block.dynamics.nfe) for block in module.flow.blocks()])


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def gradient_method(block) -> str:
    """The gradient method the block's last training solve took."""
    method = getattr(block.solver, "sensitivity", block.solver.name)
    if method == "auto":
        from toflow.solvers.auto import footprint_of

        method = footprint_of(block.ode.vf).sensitivity
    return method


def evaluation_costs(module: FlowModule, x: torch.Tensor, repeats: int) -> list[tuple[float, float]]:
    """(t_F, t_B) of each block, at the state its training solve starts from."""
    flow, inputs = module.flow, {}
    for block in flow.blocks():
        block.transform = (lambda b, original: lambda z: inputs.setdefault(b, z.detach()) is not None and original(z))(
            block, block.transform)
    with torch.no_grad():
        flow.transform(x)
    costs = []
    for block in flow.blocks():
        del block.transform  # back to the class's method
        z = inputs[block]
        state = torch.cat([z.reshape(len(z), -1), z.new_zeros(len(z), 1 + len(block.regularizers))], 1)
        t = block.end_time.t_span().to(z.dtype).mean()
        dynamics, params = block.ode.vf, [p for p in block.ode.vf.parameters() if p.requires_grad]
        graph = gradient_method(block) == "autograd"

        def forward(dynamics=dynamics, t=t, state=state, graph=graph):
            with torch.set_grad_enabled(graph):
                dynamics(t, state.requires_grad_(graph))

        def backward(dynamics=dynamics, t=t, state=state, params=params):
            with torch.enable_grad():
                y = state.detach().requires_grad_(True)
                out = dynamics(t, y)
                torch.autograd.grad(out, (y, *params), torch.ones_like(out), allow_unused=True)

        if block.trace.needs_probe:
            block.dynamics.probe = block.trace.sample_probe(z)
        costs.append((_median_time(forward, repeats), _median_time(backward, repeats)))
        block.dynamics.nfe.update(forward=0, backward=0)
    return costs


def profile(config: str, overrides: list[str], steps: int, warmup: int, repeats: int) -> dict:
    as_configured = toflow.load_config(config, overrides)  # compiled or not as the full run would be
    if getattr(as_configured.model, "compile", False) is None:
        from toflow.config.components import COMPILE_FROM_STEPS

        overrides = [*overrides, f"model.compile={as_configured.trainer.max_steps >= COMPILE_FROM_STEPS}"]
    cfg = toflow.load_config(config, [
        "trainer.num_threads=1", f"trainer.max_steps={warmup + steps}", "trainer.eval_every=100000",
        "trainer.viz_every=100000", "trainer.checkpoint_every=100000", "trainer.progress_bar=false",
        f"trainer.log_dir={tempfile.mkdtemp(prefix='step_profile-')}", *overrides])
    timers = Timers()
    clock = StepClock(timers, warmup)
    patched = {"objective": module_code.objective, "temporal_step": module_code.temporal_step}
    module_code.objective = timers.wrap("forward", patched["objective"])
    module_code.temporal_step = timers.wrap("T step", patched["temporal_step"])
    backward, optimizers = FlowModule.manual_backward, FlowModule._optimizers
    FlowModule.manual_backward = timers.wrap("backward", backward)

    def timed_optimizers(self):
        wrapped, time_opt = optimizers(self)
        if not hasattr(wrapped[0], "untimed_step"):
            wrapped[0].untimed_step = wrapped[0].step
            wrapped[0].step = timers.wrap("weights step", wrapped[0].untimed_step)
        return wrapped, time_opt

    FlowModule._optimizers = timed_optimizers
    try:
        toflow.train(cfg, callbacks=[clock])
    finally:
        module_code.objective, module_code.temporal_step = patched["objective"], patched["temporal_step"]
        FlowModule.manual_backward, FlowModule._optimizers = backward, optimizers
    module = clock.module
    x = next(iter(module.source.train_batches(cfg.data.batch_size, 0))).to(module.flow.end_times()[0].T)
    costs = evaluation_costs(module, x, repeats)
    nfe = [[statistics.mean(step[b][k] for step in clock.nfe) for k in ("forward", "backward")]
           for b in range(len(costs))]
    # autograd differentiates each forward evaluation once more (no backward NFE): that share of
    # t_B - t_F (the evaluation's own backward) counts as its backward evaluation
    autograd = [gradient_method(block) == "autograd" for block in module.flow.blocks()]
    evals_fwd = sum(f * t_f for (f, _), (t_f, _) in zip(nfe, costs))
    evals_bwd = sum(f * (t_b - t_f) if a else n_b * t_b for (f, n_b), (t_f, t_b), a in zip(nfe, costs, autograd))
    weighted = evals_fwd + evals_bwd
    parts = {name: timers.median(name) for name in ("step", "forward", "backward", "weights step", "T step", "trainer")}
    return {"config": Path(config).stem, "overrides": overrides, **parts, "nfe": nfe, "costs": costs,
            "weighted": weighted, "evals_fwd": evals_fwd, "evals_bwd": evals_bwd}


def row(r: dict) -> str:
    solver_work = r["forward"] - r["evals_fwd"] + r["backward"] - r["evals_bwd"]
    nfe_f = sum(f for f, _ in r["nfe"])
    nfe_b = sum(b for _, b in r["nfe"])
    t_f = ", ".join(f"{c[0] * 1e3:.2f}" for c in r["costs"])
    t_b = ", ".join(f"{c[1] * 1e3:.2f}" for c in r["costs"])
    name = r["config"] + (f" ({' '.join(r['overrides'])})" if r["overrides"] else "")
    return (f"| {name} | {r['step'] * 1e3:.1f} | {nfe_f:.1f} / {nfe_b:.1f} | {t_f} | {t_b} | "
            f"{r['evals_fwd'] * 1e3:.1f} | {r['evals_bwd'] * 1e3:.1f} | {solver_work * 1e3:.1f} | "
            f"{r['weights step'] * 1e3:.1f} | {r['T step'] * 1e3:.1f} | {r['trainer'] * 1e3:.1f} | "
            f"{r['step'] / r['weighted']:.2f}x |")


HEADER = ("| config | step (ms) | NFE fwd / bwd | t_F (ms, per block) | t_B (ms, per block) | forward evals (ms) | "
          "backward evals (ms) | solver's own work (ms) | weights step (ms) | T step (ms) | trainer (ms) | "
          "step / NFE-weighted cost |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help="configs, then key=value overrides for every one")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", help="append the table to this Markdown file")
    args = parser.parse_intermixed_args()
    configs = [c for c in args.configs if "=" not in c]
    overrides = [c for c in args.configs if "=" in c]
    rows = []
    for config in configs:
        result = profile(config, overrides, args.steps, args.warmup, args.repeats)
        rows.append(row(result))
        print(rows[-1], flush=True)
    text = (f"Machine: {machine()}; {args.steps} steps after {args.warmup} warm-up steps, medians; t_F, t_B: median "
            f"of {args.repeats} evaluations alone.\n\n{HEADER}\n" + "\n".join(rows) + "\n")
    print(text)
    if args.out:
        with open(args.out, "a") as file:
            file.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
