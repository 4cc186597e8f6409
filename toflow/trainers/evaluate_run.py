"""Evaluating a trained run again: its checkpoint, its own config with overrides, its summary
updated (the ``evaluate`` command's work)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from ..config import changed_keys, from_dict
from ..config.loading import parse_overrides
from ..errors import ConfigError
from .checkpoints import find_checkpoint
from .module import FlowModule
from .reliability import load_checkpoint, write_text_atomic


def evaluate(target: str | Path, overrides: Sequence[str] = ()) -> dict:
    """Evaluate the run or checkpoint ``target`` (``key=value`` overrides apply to its config, e.g.
    evaluation tolerances); update its ``summary.json``; return the scores."""
    path = find_checkpoint(target)
    checkpoint = load_checkpoint(path)
    config = _overridden(checkpoint["hyper_parameters"]["config"], overrides)
    module = FlowModule(config)
    module.load_state_dict(checkpoint["state_dict"])
    scores = {**module.test_scores(), "checkpoint": str(path), "step": int(checkpoint.get("global_step", 0))}
    summary_path = path.parent.parent / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary.pop("unconverged", None)  # a figure of an earlier evaluation
    summary.update(scores)
    write_text_atomic(summary_path, json.dumps(summary, indent=2) + "\n")
    return scores


# what an evaluation may change: how it evaluates and where its data lie, not what was trained
EVALUATION_KEYS = ("solver.", "data.root", "data.test_size", "trainer.", "name")


def _overridden(values: dict, overrides: Sequence[str]):
    trained = from_dict(values)
    merged = OmegaConf.merge(OmegaConf.create(values), parse_overrides(overrides))
    given = from_dict(OmegaConf.to_container(merged))
    changed = changed_keys(trained, given, EVALUATION_KEYS)
    if changed:
        may = ", ".join(key + "*" if key.endswith(".") else key for key in EVALUATION_KEYS)
        raise ConfigError(f"evaluate: the checkpoint was trained with another model or method; {'; '.join(changed)} "
                          f"(an evaluation may change {may})")
    return given
