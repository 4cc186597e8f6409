"""``python -m toflow.trainers.evaluate RUN_DIR_OR_CHECKPOINT``: test NLL (and bits/dim)
of a trained flow with the evaluation solver and tolerances, written into its run's summary.

A run directory is evaluated from ``checkpoints/best.ckpt`` (else ``last.ckpt``); the
config comes from the checkpoint itself, so a checkpoint file alone is enough.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import ConfigError, from_dict
from ..data import DataError
from .module import FlowModule
from .reliability import CheckpointError, load_checkpoint, write_text_atomic


def _checkpoint(target: Path) -> Path:
    if target.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (target / "checkpoints" / name).is_file():
                return target / "checkpoints" / name
        raise ConfigError(f"evaluate: no checkpoints/best.ckpt or last.ckpt in {target}")
    if not target.is_file():
        raise ConfigError(f"evaluate: no such run directory or checkpoint: {target}")
    return target


def evaluate(target: str | Path, overrides: dict | None = None) -> dict:
    """Evaluate the run or checkpoint ``target``; update its ``summary.json``; return the scores."""
    path = _checkpoint(Path(target))
    checkpoint = load_checkpoint(path)
    config = from_dict(checkpoint["hyper_parameters"]["config"] | (overrides or {}))
    module = FlowModule(config)
    module.load_state_dict(checkpoint["state_dict"])
    scores = {**module.test_scores(), "checkpoint": str(path), "step": int(checkpoint.get("global_step", 0))}
    run_dir = path.parent.parent
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary.update(scores)
    write_text_atomic(summary_path, json.dumps(summary, indent=2) + "\n")
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toflow.trainers.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="a run directory or a .ckpt file")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    try:
        scores = evaluate(args.target)
    except (ConfigError, DataError, CheckpointError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = f"test NLL {scores['test_nll']:.4f} nats"
    if "test_bpd" in scores:
        text += f", {scores['test_bpd']:.4f} bits/dim"
    print(f"{text} ({scores['checkpoint']}, step {scores['step']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
