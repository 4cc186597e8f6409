"""The paper's Figure 1 from a finished ``configs/study_fig1.yaml``:

    python bench/fig1.py [runs/study_fig1] [--out docs/figures/fig1.png]

A grid: the eight 2-D sets in columns; their data, the fixed-T density and the TO-FLOW
density in rows, each with its test NLL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toflow.trainers.plots import figure_1


def runs_of(study_out: Path) -> dict:
    """{set: {mode: run directory}} from a study whose arms are named data.name=...,time.mode=..."""
    runs: dict = {}
    for arm in sorted(study_out.iterdir()):
        keys = dict(part.split("=", 1) for part in arm.name.split(",") if "=" in part)
        if "data.name" in keys and (arm / "seed0" / "checkpoints").is_dir():
            runs.setdefault(keys["data.name"], {})[keys.get("time.mode", "toflow")] = arm / "seed0"
    order = ["swissroll", "circles", "rings", "moons", "8gaussians", "pinwheel", "2spirals", "checkerboard"]
    return {name: runs[name] for name in sorted(runs, key=lambda n: order.index(n) if n in order else 99)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default="runs/study_fig1")
    parser.add_argument("--out", default="docs/figures/fig1.png")
    args = parser.parse_args()
    runs = runs_of(Path(args.study))
    if not runs:
        print(f"error: no finished data.name=... arms in {args.study}", file=sys.stderr)
        return 2
    fig = figure_1(runs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"{len(runs)} sets -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
