"""``python -m toflow.study STUDY.yaml [key=value ...]``: run a study (see :mod:`toflow.study`)."""

from __future__ import annotations

import argparse
import sys

from ..trainers.commands import run_command
from .grid import load_study
from .runner import run_study


def _study(args: argparse.Namespace) -> int:
    run_study(load_study(args.study, args.overrides))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``study`` command: parse ``argv`` and run the study it names; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m toflow.study", description="Run every arm of a study's grid, "
                                     "side by side, and write its tables and figures.")
    parser.add_argument("study", help="YAML study file, e.g. configs/study_toy.yaml")
    parser.add_argument("overrides", nargs="*", help="study keys, e.g. seeds=[0,1] out=runs/mine parallel=2")
    return run_command(parser, _study, argv)


if __name__ == "__main__":
    sys.exit(main())
