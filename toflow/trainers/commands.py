"""What toflow's commands share: bad input is one line and exit code 2, a failed training
1, a signal 128 + its number; ``--debug`` shows the traceback instead.

This module imports nothing heavy, so that a command answers ``--help`` and refuses a bad
config before torch and Lightning are imported.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..errors import (
    CheckpointError,
    ConfigError,
    DataError,
    Interrupted,
    SolverError,
    Stopped,
    TrainingFailed,
    UsageError,
    WriteError,
)

BAD_INPUT = (ConfigError, DataError, CheckpointError, UsageError, WriteError)


def _bad_input() -> tuple:
    """:data:`BAD_INPUT`, and Lightning's refusal of a setting where Lightning is loaded."""
    lightning = sys.modules.get("lightning_fabric.utilities.exceptions")
    return BAD_INPUT + ((lightning.MisconfigurationException,) if lightning else ())


def run_command(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int],
                argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run ``body(args)``, turning its errors into one line and an exit code.

    Args:
        parser: The command's argument parser (``--debug`` is added to it).
        body: The command itself, given the parsed arguments; returns the exit code.
        argv: The arguments (default: the process's).

    Returns:
        The exit code: ``body``'s, 2 for bad input, 1 for a run that could not go on, 128 plus
        the signal's number for a stop by a signal.
    """
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_intermixed_args(argv)
    try:
        return body(args)
    except (Interrupted, Stopped) as stop:
        print(f"{stop}", file=sys.stderr)
        return 128 + stop.signum
    except Exception as err:
        if args.debug or not isinstance(err, (*_bad_input(), SolverError, TrainingFailed, OSError)):
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1 if isinstance(err, (SolverError, TrainingFailed)) else 2


def _one_line(err: Exception) -> str:
    """The error's first line; a file system's refusal as what could not be done to which file."""
    if isinstance(err, OSError) and not isinstance(err, WriteError) and err.strerror:
        return f"cannot use {err.filename or 'a file'} ({err.strerror})"
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
