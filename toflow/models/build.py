"""Build a flow from a :class:`~toflow.config.RunConfig`: an MLP CNF for 2-D data, FFJORD's
multiscale flow for images."""

from __future__ import annotations

from ..config import RunConfig
from ..data import IMAGE_SETS, event_shape
from ..regularizers import build_regularizers
from ..solvers import build_solver
from .cnf import CNF
from .end_time import EndTime
from .fields import ConcatConvNet, ConcatSquashMLP
from .multiscale import MultiscaleFlow


def build_end_time(cfg: RunConfig, index: int = 0) -> EndTime:
    """Block ``index``'s end time; each block draws its own STEER times."""
    t = cfg.time
    return EndTime(t0=t.t0, T0=t.T0, mode=t.mode, alpha=t.alpha, eps=t.eps, grad=t.grad, seed=cfg.seed + 7919 * index)


def build_flow(cfg: RunConfig):
    """The flow a config describes."""
    s = cfg.solver
    solver = build_solver(s.name, atol=s.atol, rtol=s.rtol, sensitivity=s.sensitivity, test_atol=s.test_atol,
                          test_rtol=s.test_rtol, max_steps=s.max_steps, step_size=s.step_size)
    regularizers = build_regularizers(kinetic=cfg.regularizers.kinetic,
                                      jacobian_frobenius=cfg.regularizers.jacobian_frobenius)
    m = cfg.model
    if cfg.data.name not in IMAGE_SETS:
        field = ConcatSquashMLP(event_shape(cfg.data.name)[0], m.hidden, m.activation)
        return CNF(field, build_end_time(cfg), solver, regularizers, trace=m.trace, probe=m.probe, name="block 0")
    built = []

    def make_block(shape: tuple) -> CNF:
        field = ConcatConvNet(shape[0], m.hidden, m.activation)
        block = CNF(field, build_end_time(cfg, len(built)), solver, regularizers, trace=m.trace, probe=m.probe,
                    event_shape=shape, name=f"block {len(built)}")
        built.append(block)
        return block

    return MultiscaleFlow(event_shape(cfg.data.name, cfg.data.resize), make_block, m.num_blocks, m.logit_alpha)
