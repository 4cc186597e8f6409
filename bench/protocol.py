"""The 2-D protocol's report: per arm and seed, NFE and gradient norms by 1000-step window, the test NLL
every 1000 steps, whether the run turned unstable, and the time to fixed T's final NLL.

    python bench/protocol.py runs/study_protocol > protocol.md

Reads each ``<out>/<arm>/seed<k>/`` run's TensorBoard events (finished or still training). A run counts
as unstable when its test NLL goes back by more than ``--back`` nats (default 0.02) from the best earlier
evaluation: the preview runs that turned unstable went back by 0.21 nats, the calm ones by under 0.002.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from toflow.study.results import curve, first_reached, nfe_per_step, run_scalars

WINDOW = 1000


def _windows(events: list, steps: int, reduce) -> list:
    by_window: dict[int, list] = {}
    for e in events:
        if e.step < steps:
            by_window.setdefault(e.step // WINDOW, []).append(e.value)
    return [reduce(by_window[w]) if w in by_window else None for w in range(steps // WINDOW)]


def read_run(path: Path, steps: int) -> dict:
    scalars = run_scalars(path)
    nll = {e.step: e.value for e in scalars.get("test/nll", [])}
    ordered = [nll[k] for k in sorted(nll)]
    best_before = itertools.accumulate(ordered, min)  # the best evaluation up to each one
    back = max([0.0] + [v - best for v, best in zip(ordered[1:], best_before)])
    change = max((abs(e.value) for e in scalars.get("test/nll_change", [])), default=None)
    grads = scalars.get("train/grad_norm", [])
    summary = path / "summary.json"
    return {
        "finished": summary.is_file(),
        "final": json.loads(summary.read_text())["test_nll"] if summary.is_file() else None,
        "last_step": max((e.step for e in scalars.get("train/loss", [])), default=0) + 1,
        "nfe": _windows(nfe_per_step(scalars), steps, statistics.mean),
        "grad_median": _windows(grads, steps, statistics.median),
        "grad_max": max((e.value for e in grads), default=None),
        "nll": nll,
        "went_back": back,
        "tolerance_change": change,
        "curve": curve(path, scalars=scalars),
    }


def _cell(value, digits: str) -> str:
    return "" if value is None else format(value, digits)


def report(out: Path, steps: int, back: float, baseline: str) -> str:
    runs = {(arm.name, int(seed.name.removeprefix("seed"))): read_run(seed, steps)
            for arm in sorted(out.iterdir()) if arm.is_dir() for seed in sorted(arm.glob("seed*"))}
    windows = " | ".join(str(w + 1) for w in range(steps // WINDOW))
    lines = [f"| NFE per step, by {WINDOW}-step window | {windows} |", "|---" * (steps // WINDOW + 1) + "|"]
    for (arm, seed), r in runs.items():
        lines.append(f"| {arm} seed {seed} | " + " | ".join(_cell(v, ".1f") for v in r["nfe"]) + " |")
    lines += ["", f"| median gradient norm, by window | {windows} | largest |", "|---" * (steps // WINDOW + 2) + "|"]
    for (arm, seed), r in runs.items():
        lines.append(f"| {arm} seed {seed} | " + " | ".join(_cell(v, ".2f") for v in r["grad_median"])
                     + f" | {_cell(r['grad_max'], '.1f')} |")
    marks = list(range(WINDOW // 2, steps, WINDOW))
    lines += ["", "| test NLL (nats) at step | " + " | ".join(str(m) for m in marks) + " | final |",
              "|---" * (len(marks) + 2) + "|"]
    for (arm, seed), r in runs.items():
        lines.append(f"| {arm} seed {seed} | " + " | ".join(_cell(r["nll"].get(m - 1, r["nll"].get(m)), ".4f")
                                                          for m in marks) + f" | {_cell(r['final'], '.4f')} |")
    finals = [r["final"] for (arm, _), r in runs.items() if arm == baseline and r["final"] is not None]
    target = statistics.mean(finals) if finals else None
    lines += ["", f"| run | steps | went back (nats) | unstable (> {back}) | largest change at 10x tighter "
                  f"| training s | time to {baseline}'s final{'' if target is None else f' {target:.4f}'} |",
              "|---|---|---|---|---|---|---|"]
    for (arm, seed), r in runs.items():
        reached = first_reached(r["curve"], target) if target is not None else None
        seconds = r["curve"].seconds[-1] if r["curve"].seconds else None
        lines.append(f"| {arm} seed {seed} | {r['last_step']}{'' if r['finished'] else ' (training)'} "
                     f"| {r['went_back']:.4f} | {'yes' if r['went_back'] > back else 'no'} "
                     f"| {_cell(r['tolerance_change'], '.0e')} | {_cell(seconds, '.0f')} "
                     f"| {'not reached' if reached is None else f'{reached[0]:.0f} s'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the study's output folder")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--back", type=float, default=0.02, help="nats a run's test NLL may go back and be calm")
    parser.add_argument("--baseline", default="arm=fixed")
    args = parser.parse_args(argv)
    print(report(args.out, args.steps, args.back, args.baseline))


if __name__ == "__main__":
    main()
