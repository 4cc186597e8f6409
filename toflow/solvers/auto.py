"""``sensitivity: auto``: the fastest exact gradient method whose memory fits a budget, per block.

The methods, fastest first (``bench/solvers.py`` on the 2-D CNF: autograd 0.6x and ACA 0.8x
the adjoint's time), with what they hold until the backward pass:

- ``autograd``: the graph of every evaluation of the solve, E x b bytes for E evaluations
  of b bytes each;
- ``aca`` (adaptive checkpoints, dopri5 only): one state per evaluation at most, E x s bytes,
  plus the graph of the one step it recomputes, 6 b;
- ``adjoint``: a few states, constant; its gradient is the one of the adjoint system
  solved backward, not of the forward steps themselves.

For each block (each field ``f``) a :class:`Footprint` keeps E from the block's last solve
and b, measured once per state shape by one evaluation with a graph (eager, its saved
tensors counted, the weights left out, not counted as NFE for toflow's flows). A block's
first solve, with E unknown, takes the adjoint.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import Tensor

METHODS = ("autograd", "aca", "adjoint")  # fastest first
BUDGET_MB = 2048  # the default ``solver.memory_budget_mb``
ACA_STEP_EVALUATIONS = 6  # the evaluations ACA recomputes, with a graph, for one step


@dataclass
class Footprint:
    """What one block's solve holds for its gradient: E, b and s as above."""

    evaluations: int | None = None
    bytes_per_evaluation: dict = field(default_factory=dict)  # state shape -> b
    state_bytes: int = 0
    sensitivity: str | None = None  # the gradient method its last training solve took

    def state_dict(self) -> dict:
        """Plain values, for a checkpoint: a resumed run chooses as the uninterrupted one would."""
        return {"evaluations": self.evaluations, "state_bytes": self.state_bytes, "sensitivity": self.sensitivity,
                "bytes_per_evaluation": [[list(shape), b] for shape, b in self.bytes_per_evaluation.items()]}

    def load_state_dict(self, state: dict) -> None:
        self.evaluations, self.state_bytes = state["evaluations"], state["state_bytes"]
        self.sensitivity = state["sensitivity"]
        self.bytes_per_evaluation = {tuple(shape): b for shape, b in state["bytes_per_evaluation"]}

    def memory(self, method: str, shape: tuple) -> float:
        """Bytes the method holds for a solve like the last one (inf where E or b is not known)."""
        b = self.bytes_per_evaluation.get(shape)
        if method == "adjoint":
            return 0.0
        if self.evaluations is None or b is None:
            return float("inf")
        if method == "autograd":
            return float(self.evaluations * b)
        return float(self.evaluations * self.state_bytes + ACA_STEP_EVALUATIONS * b)


def choose(footprint: Footprint, shape: tuple, budget_mb: float, methods=METHODS) -> str:
    """The first of ``methods`` (fastest first) whose memory fits ``budget_mb``; the adjoint otherwise."""
    for method in methods:
        if footprint.memory(method, shape) <= budget_mb * 2**20:
            return method
    return "adjoint"


_FOOTPRINTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def footprint_of(f) -> Footprint:
    if f not in _FOOTPRINTS:
        _FOOTPRINTS[f] = Footprint()
    return _FOOTPRINTS[f]


def graph_bytes(f, t: Tensor, y: Tensor, params) -> int:
    """Bytes one evaluation of ``f`` saves for its backward pass (its weights not counted)."""
    evaluate = getattr(getattr(f, "vf", None), "evaluate", None)  # toflow's dynamics: eager, not counted
    kept = {p.untyped_storage().data_ptr() for p in params}
    seen: dict = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in kept:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        y = y.detach().requires_grad_(True)
        evaluate(t, y, f.vf.probe) if evaluate is not None else f(t, y)
    return sum(seen.values())


class Counted:
    """``f``, counting its evaluations into ``footprint.evaluations`` (from zero) until :meth:`stop`:
    the forward solve's evaluations, not those of a backward pass that calls it again."""

    def __init__(self, f, footprint: Footprint):
        self.f, self.footprint, self.counting = f, footprint, True
        footprint.evaluations = 0

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.footprint.evaluations += self.counting
        return self.f(t, y)

    def stop(self) -> None:
        self.counting = False
