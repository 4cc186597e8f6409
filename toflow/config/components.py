"""Every component a run config describes, built from its own section, and the validation that
builds them all: the allowed values are the registries' and the range checks the constructors'.

``solver`` -> ``SOLVERS.build(**section)``, ``time`` -> :class:`~toflow.models.EndTime`,
``regularizers`` -> :func:`~toflow.regularizers.build_regularizers`, ``objective`` ->
``OBJECTIVES.build(**section)``, ``model`` -> the fields, the trace estimator and (images) the
multiscale flow, ``data`` -> :func:`~toflow.data.check_data`. A setting left at None takes the
component's own default; one the chosen component does not take is refused.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from ..data import IMAGE_SETS, check_data, event_shape
from ..errors import ConfigError
from ..models import CNF, ConcatConvNet, ConcatSquashMLP, EndTime, Flow, MultiscaleFlow
from ..objectives import OBJECTIVES
from ..regularizers import build_regularizers
from ..solvers import SOLVERS
from .loading import get, numbers, to_dict
from .schema import CHOICES, RunConfig

IMAGE_ONLY = ("num_blocks", "logit_alpha", "scales")  # model settings of the image flow
COMPILE_FROM_STEPS = 100  # ``model.compile: null`` compiles runs this long: compiling takes seconds


def build_end_time(cfg: RunConfig, index: int = 0) -> EndTime:
    """Block ``index``'s end time, from the ``time`` section; each block draws its own STEER times."""
    return EndTime(**asdict(cfg.time), seed=cfg.seed + 7919 * index)


def solver_settings(cfg: RunConfig) -> dict:
    """The ``solver`` section as the chosen solver takes it. ``sensitivity: auto`` asks for each
    solver's best gradient method, so for a solver whose gradient method is its own (aca, mali)
    it is already met, and ``solver.name=aca`` is one override on any config."""
    settings = asdict(cfg.solver)
    if settings["sensitivity"] == "auto" and "sensitivity" not in SOLVERS.settings(settings["name"]):
        settings["sensitivity"] = None
    return settings


def build_flow(cfg: RunConfig) -> Flow:
    """The flow a config describes: an MLP CNF for 2-D data, FFJORD's multiscale flow for images.

    Args:
        cfg: The run's config; its ``solver``, ``time``, ``regularizers`` and ``model`` sections
            build the solver, the end times, the regularisers and the fields and traces.

    Returns:
        The flow, with its weights drawn from torch's current random state.
    """
    solver = SOLVERS.build(**solver_settings(cfg))
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


def _components(cfg: RunConfig) -> None:
    """Build every section's component with its own fields; a refusal is a ValueError naming the key."""
    check_data(**asdict(cfg.data))
    with torch.device("meta"):  # every constructor runs, nothing is allocated
        flow = build_flow(cfg)
        OBJECTIVES.build(**asdict(cfg.objective)).check(flow)
        warm_start = warm_start_objective(cfg)
        if warm_start is not None:
            warm_start.check(flow, warm_start=True)


def warm_start_objective(cfg: RunConfig):
    """Flow matching for the ``warm_start`` steps, or None where there are none."""
    w = cfg.warm_start
    if w.steps < 0:
        raise ValueError(f"warm_start.steps: must be non-negative, got {w.steps}")
    if w.steps == 0:
        for key in ("coupling", "sigma"):
            if getattr(w, key) is not None:
                raise ValueError(f"warm_start.{key}: not used without warm_start.steps")
        return None
    if cfg.objective.name == "flow_matching":
        raise ValueError("warm_start.steps: the objective is flow matching already; a warm start is flow matching "
                         "before another objective")
    return OBJECTIVES.build("flow_matching", coupling=w.coupling, sigma=w.sigma)


def validate(cfg: RunConfig) -> None:
    """Check every value of ``cfg``: finite numbers, the components' own checks (each built on the
    meta device), the trainer's choices and the optimizer's and the trainer's ranges.

    Args:
        cfg: The config to check.

    Raises:
        ConfigError: One line naming the offending key.
    """
    for key, value in numbers(to_dict(cfg)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: must be a finite number, got {value}")
    try:
        _components(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    for key, allowed in CHOICES.items():
        value = get(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}: '{value}' is not one of {', '.join(allowed)}")
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator: {cfg.trainer.accelerator} asked for, but torch finds no GPU on this "
                          "machine; use cpu or auto")
    _ranges(cfg)


def _positive(cfg: RunConfig, key: str, allow_none: bool = False, allow_zero: bool = False) -> None:
    value = get(cfg, key)
    if value is None and allow_none:
        return
    if value is None or value < 0 or (value == 0 and not allow_zero):
        need = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{key}: must be {need}, got {value}")


def _ranges(cfg: RunConfig) -> None:
    """The optimizer's and the trainer's ranges, and the batch's split over processes."""
    for key in ("optim.lr", "trainer.max_steps", "trainer.eval_every", "trainer.viz_every", "trainer.checkpoint_every",
                "trainer.devices", "trainer.num_nodes", "trainer.sample_temperature"):
        _positive(cfg, key)
    for key in ("optim.max_grad_norm", "trainer.num_threads"):
        _positive(cfg, key, allow_none=True)
    for key in ("optim.weight_decay", "trainer.max_bad_steps", "seed"):
        _positive(cfg, key, allow_zero=True)
    processes = cfg.trainer.devices * cfg.trainer.num_nodes
    if cfg.data.batch_size % processes:
        raise ConfigError(f"data.batch_size: {cfg.data.batch_size} (the global batch) does not split evenly over "
                          f"{processes} processes (trainer.devices x trainer.num_nodes)")
    if cfg.trainer.animate_frames == 1 or cfg.trainer.animate_frames < 0:
        raise ConfigError(f"trainer.animate_frames: 0 (none) or at least 2, got {cfg.trainer.animate_frames}")
