"""How fast a command answers: ``--help``, a misspelt key and a bad value, against ``import torch``.

    python bench/cli_startup.py [--repeats 7]

Each command runs in a fresh Python, the kinds interleaved in every repeat so that they share the
machine's state; the table gives the median wall time of each and its ratio to
``python -c "import torch"``, the reference the command line is held to (at most 1.3x).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import machine

CONFIG = "configs/toy_checkerboard_quick.yaml"
RUN = [sys.executable, "-m", "toflow.trainers.run"]
CASES = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "run --help": [*RUN, "--help"],
    "run CONFIG trainer.max_step=5 (a misspelt key)": [*RUN, CONFIG, "trainer.max_step=5"],
    "run CONFIG time.eps=0.7 (a bad value)": [*RUN, CONFIG, "time.eps=0.7"],
    "run CONFIG solver.name=dopri (an unknown solver)": [*RUN, CONFIG, "solver.name=dopri"],
    "evaluate --help": [sys.executable, "-m", "toflow.trainers.evaluate", "--help"],
    "study --help": [sys.executable, "-m", "toflow.study", "--help"],
}


def timed(command: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    codes: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, command in CASES.items():
            seconds, codes[name] = timed(command)
            times[name].append(seconds)
    reference = statistics.median(times["python -c 'import torch'"])
    print(f"Command start-up on {machine()}; median of {args.repeats} interleaved repeats.\n")
    print("| command | exit code | median (s) | vs import torch |\n|---|---|---|---|")
    for name in CASES:
        median = statistics.median(times[name])
        print(f"| `{name}` | {codes[name]} | {median:.2f} | {median / reference:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
