"""Solvers side by side: NFE, time of forward + backward, peak memory at T and 4T.

    python bench/solvers.py [--repeats 5] [--tol 1e-5] [--out docs/solvers.md]

Two problems: a 2-D CNF (FFJORD's toy field, exact trace, batch 512) and an MLP field
dy/dt = f(y, t) at dimension 32 (batch 256). Each of toflow's solvers runs beside three
outside references at the same tolerances: torchdiffeq's ``odeint_adjoint`` (dopri5, with
and without its seminorm) and TorchDiffEqPack's ACA (``odesolve_adjoint``) and MALI
(``odesolve_adjoint_sym12``). Times are medians of ``--repeats`` forward+backward passes
in one process; peak memory is measured in a fresh process per cell (CUDA: the
allocator's peak; CPU: the rise of the resident set size during one pass, sampled).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import torch
from torch import nn

from toflow.models import CNFDynamics, ConcatSquashMLP, ExactTrace
from toflow.solvers import SOLVERS, Tolerance

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

OURS = ("dopri5-adjoint", "dopri5-autograd", "aca", "mali", "rk4", "euler")
REFERENCES = ("torchdiffeq-adjoint", "torchdiffeq-adjoint-seminorm", "tdp-aca", "tdp-mali")
FIXED_STEP = {"rk4": 0.05, "euler": 0.01}


class Counted(nn.Module):
    """A field that counts its evaluations, forward or backward (set by the caller)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field
        self.phase = "forward"
        self.nfe = {"forward": 0, "backward": 0}

    def forward(self, t, y):
        self.nfe[self.phase] += 1
        return self.field(torch.as_tensor(t, dtype=y.dtype, device=y.device), y)


def problem(name: str, device: torch.device):
    """(field, y0, T, loss(y_T), controlled columns)."""
    torch.manual_seed(0)
    if name == "cnf2d":
        field = CNFDynamics(ConcatSquashMLP(2, (64, 64, 64)), ExactTrace(), (2,))
        x = torch.randn(512, 2) * 1.5
        y0 = torch.cat([x, torch.zeros(512, 1)], 1)

        def loss(y):
            return (0.5 * y[:, :2].pow(2).sum(1) + y[:, 2]).mean()

        return field.to(device), y0.to(device), 0.5, loss, 2
    field = ConcatSquashMLP(32, (128, 128), "tanh")
    y0 = torch.randn(256, 32)
    return field.to(device), y0.to(device), 1.0, (lambda y: y.pow(2).sum(1).mean()), None


def run_once(solver: str, field: Counted, y0, T: float, tol: float, controlled, loss_fn):
    """One forward + backward; returns the gradient norm (to check agreement)."""
    t0 = torch.tensor(0.0, device=y0.device)
    t1 = torch.tensor(T, device=y0.device, requires_grad=True)
    params = tuple(field.parameters())
    field.phase = "forward"
    if solver in OURS:
        name = solver.split("-")[0]
        settings = {"atol": tol, "rtol": tol}
        if "-" in solver:
            settings["sensitivity"] = solver.split("-")[1]
        if name in FIXED_STEP:
            settings = {"step_size": FIXED_STEP[name], "sensitivity": "autograd"}
        method = SOLVERS[name](**settings)
        end = method.solve(field, y0, t0, t1, params, Tolerance(tol, tol, controlled))
    elif solver.startswith("torchdiffeq"):
        from torchdiffeq import odeint_adjoint

        options = {"norm": "seminorm"} if solver.endswith("seminorm") else None
        end = odeint_adjoint(field, y0, torch.stack([t0, t1]), rtol=tol, atol=tol, method="dopri5",
                             adjoint_options=options)[-1]
    else:
        from TorchDiffEqPack import odesolve_adjoint, odesolve_adjoint_sym12

        options = {"method": "dopri5" if solver == "tdp-aca" else "sym12async", "t0": 0.0, "t1": t1, "h": None,
                   "rtol": tol, "atol": tol, "neval_max": 10**6, "end_point_mode": True, "print_neval": False,
                   "t_eval": None}
        end = (odesolve_adjoint if solver == "tdp-aca" else odesolve_adjoint_sym12)(field, y0, options=options)
    loss = loss_fn(end)
    field.phase = "backward"
    grads = torch.autograd.grad(loss, params + (t1,))
    return float(torch.cat([g.reshape(-1) for g in grads]).norm())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_cells(problem_name, solvers, tol, repeats, device) -> dict:
    """Median forward+backward time of each solver; the repeats go round-robin over the
    solvers, so a drift in the machine's speed touches them all alike."""
    base, y0, T, loss_fn, controlled = problem(problem_name, device)
    field = Counted(base)
    times = {solver: [] for solver in solvers}
    cells = {}
    for solver in solvers:
        run_once(solver, field, y0, T, tol, controlled, loss_fn)  # warm-up
    for _ in range(repeats):
        for solver in solvers:
            field.nfe = {"forward": 0, "backward": 0}
            sync(device)
            started = time.perf_counter()
            grad_norm = run_once(solver, field, y0, T, tol, controlled, loss_fn)
            sync(device)
            times[solver].append(time.perf_counter() - started)
            cells[solver] = {"nfe_forward": field.nfe["forward"], "nfe_backward": field.nfe["backward"],
                             "grad_norm": grad_norm}
    for solver in solvers:
        cells[solver]["time_s"] = statistics.median(times[solver])
    return cells


def memory_cell(problem_name, solver, tol, scale, device) -> float:
    """Peak memory (MiB) of one forward + backward with end time scale * T, in this process."""
    base, y0, T, loss_fn, controlled = problem(problem_name, device)
    field = Counted(base)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run_once(solver, field, y0, scale * T, tol, controlled, loss_fn)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    return peak_rss_rise(lambda: run_once(solver, field, y0, scale * T, tol, controlled, loss_fn)) / 2**20


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_rise(fn) -> int:
    """Highest resident set size while ``fn`` runs, minus the size before (sampled every 0.2 ms)."""
    base = _rss()
    top, stop = [base], threading.Event()

    def watch():
        while not stop.is_set():
            top[0] = max(top[0], _rss())
            time.sleep(0.0002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        fn()
    finally:
        stop.set()
        watcher.join()
    return max(top[0], _rss()) - base


def memory_in_subprocess(problem_name, solver, tol, scale, device) -> float:
    out = subprocess.run([sys.executable, __file__, "--memory-cell", problem_name, solver, str(tol), str(scale),
                          str(device)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--problems", nargs="+", default=["cnf2d", "mlp32"])
    parser.add_argument("--solvers", nargs="+", default=list(OURS + REFERENCES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="runs/bench_solvers.md")
    parser.add_argument("--memory-cell", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_cell:
        name, solver, tol, scale, device = args.memory_cell
        print(memory_cell(name, solver, float(tol), float(scale), torch.device(device)))
        return 0

    device = torch.device(args.device)
    results = {}
    lines = [f"## Solvers ({date.today()})", "",
             f"Machine: {machine()}, {torch.get_num_threads()} torch threads. Tolerances atol = rtol = {args.tol:g}; "
             f"fixed steps: rk4 {FIXED_STEP['rk4']}, euler {FIXED_STEP['euler']}. Time: median of {args.repeats} "
             "forward+backward passes, taken round-robin over the solvers. Memory: peak during one pass, MiB "
             f"({'CUDA allocator' if device.type == 'cuda' else 'rise of resident memory in a fresh process'}).", ""]
    for name in args.problems:
        lines += [f"### {name}", "", "| solver | NFE fwd | NFE bwd | time (s) | time vs dopri5-adjoint | "
                  "peak MiB at T | at 4T | 4T/T | grad norm |", "|---|---|---|---|---|---|---|---|---|"]
        rows = time_cells(name, args.solvers, args.tol, args.repeats, device)
        for solver, cell in rows.items():
            cell["mem_T"] = memory_in_subprocess(name, solver, args.tol, 1.0, device)
            cell["mem_4T"] = memory_in_subprocess(name, solver, args.tol, 4.0, device)
            print(name, solver, json.dumps(cell), flush=True)
        base = rows.get("dopri5-adjoint", next(iter(rows.values())))["time_s"]
        for solver, c in rows.items():
            ratio = c["mem_4T"] / c["mem_T"] if c["mem_T"] > 0 else float("nan")
            lines.append(f"| {solver} | {c['nfe_forward']} | {c['nfe_backward']} | {c['time_s']:.3f} | "
                         f"{c['time_s'] / base:.2f}x | {c['mem_T']:.1f} | {c['mem_4T']:.1f} | {ratio:.2f} | "
                         f"{c['grad_norm']:.6g} |")
        lines.append("")
        results[name] = rows
        if {"aca", "tdp-aca"} <= rows.keys():
            ratio = rows['aca']['time_s'] / rows['tdp-aca']['time_s']
            lines.append(f"ACA time, ours / TorchDiffEqPack's: {ratio:.2f}x. ")
        if {"dopri5-adjoint", "torchdiffeq-adjoint"} <= rows.keys():
            lines.append(f"dopri5 adjoint time, ours / torchdiffeq's: "
                         f"{rows['dopri5-adjoint']['time_s'] / rows['torchdiffeq-adjoint']['time_s']:.2f}x. ")
        lines.append("")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
