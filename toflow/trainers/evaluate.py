"""``python -m toflow.trainers.evaluate RUN_DIR_OR_CHECKPOINT``: test NLL (and bits/dim)
of a trained flow with the evaluation solver and tolerances, written into its run's summary.

A run directory is evaluated from ``checkpoints/best.ckpt`` (else ``last.ckpt``); the
config comes from the checkpoint itself, so a checkpoint file alone is enough, and
``key=value`` overrides change it for this evaluation (e.g. ``solver.test_atol=1e-7``).
SIGINT or SIGTERM stop it with one line and exit code 128 + the signal; the summary is
written whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ..config import ConfigError, from_dict
from .commands import run_command
from .evaluation import describe
from .load import find_checkpoint
from .module import FlowModule
from .reliability import load_checkpoint, stop_on_signals, write_text_atomic


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
    from omegaconf import OmegaConf

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{item}: an override must read key=value")
    merged = OmegaConf.merge(OmegaConf.create(values), OmegaConf.from_dotlist(list(overrides)))
    return from_dict(OmegaConf.to_container(merged))


def _evaluate(args: argparse.Namespace) -> int:
    with stop_on_signals("the run's summary.json is as it was"):
        print(f"evaluating {args.target}", flush=True)
        scores = evaluate(args.target, args.overrides)
    text = describe(scores)
    if "test_bpd" in scores:
        text += f"; test NLL {scores['test_nll']:.4f} nats"
    print(f"{text} ({scores['checkpoint']}, step {scores['step']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toflow.trainers.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="a run directory or a .ckpt file")
    parser.add_argument("overrides", nargs="*", help="key=value for the run's config, e.g. solver.test_atol=1e-6")
    return run_command(parser, _evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
