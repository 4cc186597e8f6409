"""A study's results read back: the table of final figures, each run's curves from its
TensorBoard events, and time to quality."""

from __future__ import annotations

import bisect
import itertools
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, NamedTuple

from omegaconf import OmegaConf

from .grid import StudyConfig


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


COLUMNS = ("arm", "test NLL (nats)", "10x check", "NFE fwd", "NFE bwd", "NFE vs baseline", "s/step", "time vs baseline",
           "wall (s)", "final T", "sampling NFE", "seeds")


def table(results: dict[str, list[dict]], baseline: str | dict | None = None) -> str:
    """One row per arm: means over seeds (the score with its spread), NFE and time per step also
    as ratios against the ``baseline`` arm (default: the first; a dict gives each arm its own) of
    the same study; test bits/dim after the NLL where the data are images. ``10x check``: the
    largest change over seeds of the score (bits/dim for images) at evaluation tolerances 10x
    tighter; a figure that moved more than 1e-3 is already the tighter one."""
    base_of = baseline if isinstance(baseline, dict) else {name: baseline or next(iter(results)) for name in results}
    images = all("test_bpd" in r for runs in results.values() for r in runs)
    columns = [*COLUMNS[:2], *(["test bits/dim"] if images else []), *COLUMNS[2:]]

    def mean(name, key):
        return statistics.mean(r[key] for r in results[name])

    def nfe(name):
        return mean(name, "nfe_forward_mean") + mean(name, "nfe_backward_mean")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, runs in results.items():
        final_T = statistics.mean(statistics.mean(r["end_times"]) for r in runs)
        bpd = [f"{_mean_std([r['test_bpd'] for r in runs])}"] if images else []
        check = _check(runs, "test_bpd" if images else "test_nll")
        cells = [name, _mean_std([r["test_nll"] for r in runs]), *bpd, check, f"{mean(name, 'nfe_forward_mean'):.1f}",
                 f"{mean(name, 'nfe_backward_mean'):.1f}", f"{nfe(name) / nfe(base_of[name]):.2f}x",
                 f"{mean(name, 'time_per_iter_s'):.3f}",
                 f"{mean(name, 'time_per_iter_s') / mean(base_of[name], 'time_per_iter_s'):.2f}x",
                 f"{mean(name, 'wall_s'):.0f}", f"{final_T:.3f}",
                 f"{statistics.mean(r['sample_nfe'] for r in runs):.0f}" if all("sample_nfe" in r for r in runs)
                 else "n/a", str(len(runs))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _check(runs: list[dict], metric: str) -> str:
    changes = [abs(r["tolerance_check"][metric]) for r in runs if metric in r.get("tolerance_check", {})]
    return f"{max(changes):.0e}" if len(changes) == len(runs) else "n/a"


class Curve(NamedTuple):
    """A run's evaluations: each one's step and test metric, and the training time (the sum of
    step times: evaluation and stops left out) and the cumulative NFE (forward + backward) by then."""

    steps: list
    values: list
    seconds: list
    nfe: list


def curve(run: Path, metric: str = "nll", scalars: dict[str, list] | None = None) -> Curve:
    """``run``'s test ``metric`` (``nll`` or ``bpd``) as a :class:`Curve`, from its TensorBoard events
    (``scalars``, if already read)."""
    scalars = run_scalars(run) if scalars is None else scalars
    evaluations = scalars.get(f"test/{metric}", [])
    clock = training_clock(scalars.get("time/step_s", []))
    work = training_clock(nfe_per_step(scalars))
    steps = [e.step for e in evaluations]
    return Curve(steps, [e.value for e in evaluations], [clock(k) for k in steps], [work(k) for k in steps])


def first_reached(run: Curve, target: float) -> tuple[float, float] | None:
    """(training time, cumulative NFE) at the first evaluation at or below ``target`` (to float32's
    precision, as TensorBoard keeps it), or None if no evaluation is."""
    bound = target + 1e-6 * abs(target)
    return next(((s, n) for v, s, n in zip(run.values, run.seconds, run.nfe) if v <= bound), None)


def targets(study: StudyConfig, curves: dict[str, list[Curve]], finals: dict[str, list[float]],
            baseline: str | None = None) -> dict:
    """The study's targets by name: ``fixed_final`` (the ``baseline`` arm's final test metric, mean
    over seeds; default the study's baseline arm), ``fixed_half`` (its value at the evaluation
    nearest half its steps), ``best_final`` (the best final of any arm, mean over seeds), or numbers."""
    baseline = baseline or study.baseline or next(iter(curves))
    out = {}
    for target in study.targets:
        if target == "fixed_final":
            out[target] = statistics.mean(finals[baseline])
        elif target == "best_final":
            out[target] = min(statistics.mean(values) for values in finals.values())
        elif target == "fixed_half":
            halves = [c.values[min(range(len(c.steps)), key=lambda i: abs(c.steps[i] - c.steps[-1] / 2))]
                      for c in curves[baseline] if c.steps]
            if halves:
                out[target] = statistics.mean(halves)
        else:
            out[str(target)] = float(target)
    return out


def value_at(run: Curve, seconds: float) -> float | None:
    """The test metric of the last evaluation at or before ``seconds`` of training, or None."""
    reached = [v for v, s in zip(run.values, run.seconds) if s <= seconds]
    return reached[-1] if reached else None


def equal_time_table(curves: dict[str, list[Curve]], results: dict[str, list[dict]], seconds: float,
                     unit: str) -> str:
    """Per arm: its test metric after ``seconds`` of training (mean over the seeds that trained
    that long), the NFE per step of the objective's own steps (after a warm start's switch) and
    the sampling NFE."""
    lines = [f"| arm | test {unit} at {seconds:.0f} s | seeds | NFE per step after the switch | sampling NFE |",
             "|---|---|---|---|---|"]
    for name, runs in curves.items():
        values = [v for v in (value_at(c, seconds) for c in runs if c.seconds and c.seconds[-1] >= seconds)
                  if v is not None]
        summaries = results[name]
        after = [r["nfe_per_objective_step"] for r in summaries if "nfe_per_objective_step" in r]
        cells = [f"{statistics.mean(values):.4f}" if values else "not trained that long",
                 f"{len(values)} of {len(runs)}", f"{statistics.mean(after):.1f}" if after else "n/a",
                 f"{statistics.mean(r['sample_nfe'] for r in summaries):.0f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def quality_table(curves: dict[str, list[Curve]], goals: dict[str, dict], unit: str) -> str:
    """Per arm and target (``goals[arm]``: {name: value}): the training time and cumulative NFE at
    which the runs first reach it."""
    lines = [f"| arm | target ({unit}) | training time (s) | cumulative NFE | seeds that reach it |",
             "|---|---|---|---|---|"]
    for name, runs in curves.items():
        for goal, value in goals[name].items():
            reached = [r for r in (first_reached(c, value) for c in runs) if r is not None]
            if reached:
                seconds, nfe = statistics.mean(s for s, _ in reached), statistics.mean(n for _, n in reached)
                cells = [f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.2f}", f"{nfe:.0f}"]
            else:
                cells = ["not reached", "not reached"]
            lines.append(f"| {name} | {goal} = {value:.4f} | {cells[0]} | {cells[1]} | {len(reached)} of {len(runs)} |")
    return "\n".join(lines) + "\n"


def run_scalars(path: Path) -> dict[str, list]:
    """Every scalar a run logged, {tag: events}, read from its TensorBoard files once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # only where events are read

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags().get("scalars", [])}


def nfe_per_step(scalars: dict[str, list]) -> list:
    """Field evaluations per step, forward + backward, as events."""
    backward = {e.step: e.value for e in scalars.get("nfe/backward", [])}
    forward = scalars.get("nfe/forward", [])
    return [SimpleNamespace(step=e.step, value=e.value + backward.get(e.step, 0.0)) for e in forward]


def training_clock(step_times: list) -> Callable[[int], float]:
    """Seconds spent in training steps up to a step: the sum of the logged step times, so
    that the time a run spent stopped before a resume does not count."""
    by_step = {e.step: e.value for e in step_times}  # a step repeated after a resume counts once
    steps = sorted(by_step)
    elapsed = list(itertools.accumulate(by_step[k] for k in steps))
    return lambda step: elapsed[bisect.bisect_right(steps, step) - 1] if steps and step >= steps[0] else 0.0


def band(runs: list[Curve], axis: str) -> tuple[list, list, list, list]:
    """x (the mean over seeds), and the mean, lowest and highest metric over seeds, at the
    evaluations every seed has."""
    count = min(len(c.steps) for c in runs)
    xs = [statistics.mean(getattr(c, axis)[i] for c in runs) for i in range(count)]
    values = [[c.values[i] for c in runs] for i in range(count)]
    return xs, [statistics.mean(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def smooth(values: list) -> list:
    window = max(1, len(values) // 50)
    return [statistics.mean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def total_end_time(run: Path, scalars: dict[str, list] | None = None) -> list:
    """The flow's total integration time per step, sum over blocks of (T_b - t0), from ``run``'s
    events (``scalars``, if already read)."""
    config = run / "config.yaml"
    t0 = float(OmegaConf.load(config).time.t0) if config.is_file() else 0.0
    scalars = run_scalars(run) if scalars is None else scalars
    blocks = [{e.step: e.value for e in events} for tag, events in scalars.items() if tag.startswith("T/block")]
    steps = sorted(set.intersection(*(set(b) for b in blocks))) if blocks else []
    return [SimpleNamespace(step=k, value=sum(b[k] - t0 for b in blocks)) for k in steps]
