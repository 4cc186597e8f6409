"""Build a flow from a :class:`~toflow.config.RunConfig`."""

from __future__ import annotations

from ..config import RunConfig
from ..regularizers import build_regularizers
from ..solvers import build_solver
from .cnf import CNF
from .end_time import EndTime
from .fields import ConcatSquashMLP

TOY_DIM = 2


def build_end_time(cfg: RunConfig) -> EndTime:
    t = cfg.time
    return EndTime(t0=t.t0, T0=t.T0, mode=t.mode, alpha=t.alpha, eps=t.eps, grad=t.grad, seed=cfg.seed)


def build_flow(cfg: RunConfig) -> CNF:
    """The flow a config describes: for the 2-D sets, one CNF block over a ConcatSquash MLP."""
    s = cfg.solver
    solver = build_solver(s.name, atol=s.atol, rtol=s.rtol, sensitivity=s.sensitivity, test_atol=s.test_atol,
                          test_rtol=s.test_rtol, max_steps=s.max_steps, step_size=s.step_size)
    field = ConcatSquashMLP(TOY_DIM, cfg.model.hidden, cfg.model.activation)
    regularizers = build_regularizers(kinetic=cfg.regularizers.kinetic,
                                      jacobian_frobenius=cfg.regularizers.jacobian_frobenius)
    return CNF(field, build_end_time(cfg), solver, regularizers, trace=cfg.model.trace, probe=cfg.model.probe)
