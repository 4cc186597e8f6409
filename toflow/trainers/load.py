"""A trained flow from its run: ``flow, cfg = toflow.load_flow("runs/<run>")``.

A run directory gives ``checkpoints/best.ckpt`` (the lowest test NLL) or, with
``which="last"``, ``checkpoints/last.ckpt``, each falling back to the other; a ``.ckpt`` file
is read as it is. The config comes from the checkpoint itself. Checkpoints are read with
``weights_only=True`` (no code runs from them); a damaged one, or a run without one, is a
one-line :class:`~toflow.trainers.reliability.CheckpointError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..config import RunConfig, from_dict
from ..config.components import build_flow
from ..errors import CheckpointError
from .checkpoints import find_checkpoint
from .reliability import load_checkpoint


class Loaded(NamedTuple):
    flow: object
    cfg: RunConfig
    checkpoint: Path
    step: int


def flow_state(checkpoint: dict) -> dict:
    """The flow's weights and end times in a training checkpoint (its module's ``flow.*`` entries)."""
    prefix = "flow."
    return {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}


def load_trained(target: str | Path, which: str = "best", map_location: str = "cpu") -> Loaded:
    """A run's trained flow, with its config, checkpoint file and step (see :func:`load_flow`).

    Args:
        target: A run directory or a ``.ckpt`` file.
        which: ``best`` (the lowest test NLL) or ``last``, for a run directory.
        map_location: Where the weights go.

    Returns:
        :class:`Loaded`: the flow (eval mode), its config, the checkpoint and its step.
    """
    path = find_checkpoint(target, which)
    checkpoint = load_checkpoint(path)
    cfg = from_dict(checkpoint["hyper_parameters"]["config"])
    flow = build_flow(cfg)
    try:
        flow.load_state_dict(flow_state(checkpoint))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint: {path} does not fit the flow its config describes ({first})") from None
    return Loaded(flow.to(map_location).eval(), cfg, path, int(checkpoint.get("global_step", 0)))


def load_flow(target: str | Path, which: str = "best", map_location: str = "cpu") -> tuple:
    """The trained flow of a run directory or checkpoint, and the config it was trained with.

    Args:
        target: A run directory (its ``checkpoints/best.ckpt``, else ``last.ckpt``) or a ``.ckpt``.
        which: ``best`` or ``last``, for a run directory.
        map_location: Where the weights go.

    Returns:
        ``(flow, cfg)``: the flow in eval mode, with its trained end times, and its config.

    Example:
        >>> flow, cfg = load_flow("runs/toy_checkerboard_quick-20261203-120000")
        >>> x = flow.sample(1000)
    """
    loaded = load_trained(target, which, map_location)
    return loaded.flow, loaded.cfg
