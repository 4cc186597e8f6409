"""Evaluating a trained run again: its checkpoint, its own config with overrides, its summary
updated (the ``evaluate`` command's work)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from ..config import from_dict
from ..errors import ConfigError
from .load import find_checkpoint
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


def _overridden(values: dict, overrides: Sequence[str]):
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{item}: an override must read key=value")
    merged = OmegaConf.merge(OmegaConf.create(values), OmegaConf.from_dotlist(list(overrides)))
    return from_dict(OmegaConf.to_container(merged))
