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
import sys

from .commands import run_command


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate_run import evaluate
    from .evaluation import describe  # torch and Lightning load only once the arguments are accepted
    from .reliability import stop_on_signals

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
