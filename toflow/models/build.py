"""Build a flow from a :class:`~toflow.config.RunConfig`: an MLP CNF for 2-D data, FFJORD's
multiscale flow for images. Each config section builds its component with its own fields:
``solver`` -> :func:`~toflow.solvers.build_solver`, ``time`` -> :class:`EndTime`,
``regularizers`` -> :func:`~toflow.regularizers.build_regularizers`, ``model`` -> the field,
the trace estimator and (images) the multiscale flow.
"""

from __future__ import annotations

from dataclasses import asdict

from ..config import RunConfig
from ..data import IMAGE_SETS, event_shape
from ..regularizers import build_regularizers
from ..solvers import build_solver
from .cnf import CNF
from .end_time import EndTime
from .fields import ConcatConvNet, ConcatSquashMLP
from .multiscale import MultiscaleFlow

IMAGE_ONLY = ("num_blocks", "logit_alpha", "scales")  # model settings of the image flow
COMPILE_FROM_STEPS = 100  # ``model.compile: null`` compiles runs this long: compiling takes seconds


def build_end_time(cfg: RunConfig, index: int = 0) -> EndTime:
    """Block ``index``'s end time; each block draws its own STEER times."""
    return EndTime(**asdict(cfg.time), seed=cfg.seed + 7919 * index)


def build_flow(cfg: RunConfig):
    """The flow a config describes."""
    solver = build_solver(**asdict(cfg.solver))
    regularizers = build_regularizers(**cfg.regularizers)
    m = cfg.model
    compile = m.compile if m.compile is not None else cfg.trainer.max_steps >= COMPILE_FROM_STEPS
    if cfg.data.name not in IMAGE_SETS:
        for key in IMAGE_ONLY:
            if getattr(m, key) is not None:
                raise ValueError(f"model.{key}: not used by the 2-D flow (data.name={cfg.data.name})")
        field = ConcatSquashMLP(event_shape(cfg.data.name)[0], m.hidden, m.activation)
        return CNF(field, build_end_time(cfg), solver, regularizers, trace=m.trace, probe=m.probe, name="block 0",
                   divergence=m.divergence, compile=compile)
    built = []

    def make_block(shape: tuple) -> CNF:
        field = ConcatConvNet(shape[0], m.hidden, m.activation)
        block = CNF(field, build_end_time(cfg, len(built)), solver, regularizers, trace=m.trace, probe=m.probe,
                    event_shape=shape, name=f"block {len(built)}", divergence=m.divergence, compile=compile)
        built.append(block)
        return block

    images = {key: getattr(m, key) for key in IMAGE_ONLY if getattr(m, key) is not None}
    if "scales" in images:
        images["n_scales"] = images.pop("scales")
    return MultiscaleFlow(event_shape(cfg.data.name, cfg.data.resize), make_block, **images)
