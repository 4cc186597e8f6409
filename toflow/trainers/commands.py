"""What toflow's commands share: bad input is one line and exit code 2, a failed training
1, a signal 128 + its number; ``--debug`` shows the traceback instead."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from lightning_fabric.utilities.exceptions import MisconfigurationException

from ..config import ConfigError
from ..data import DataError
from ..solvers import SolverError
from .reliability import CheckpointError, Interrupted, Stopped, TrainingFailed

BAD_INPUT = (ConfigError, DataError, CheckpointError, MisconfigurationException)

def run_command(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int],
                argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run ``body(args)``, turning its errors into one line and an exit code."""
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_intermixed_args(argv)
    try:
        return body(args)
    except (*BAD_INPUT, SolverError, TrainingFailed) as err:
        if args.debug:
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"error: {first}", file=sys.stderr)
        return 1 if isinstance(err, (SolverError, TrainingFailed)) else 2
    except (Interrupted, Stopped) as stop:
        print(f"{stop}", file=sys.stderr)
        return 128 + stop.signum
