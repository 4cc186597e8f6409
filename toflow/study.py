"""Studies: every arm of a grid of config changes, on the same budget, side by side.

    python -m toflow.study configs/study_toy.yaml [key=value ...] [--parallel N]

A study file names a base run config, overrides for every run, a grid and seeds::

    base: configs/toy_checkerboard_toflow.yaml
    overrides: [trainer.max_steps=1000]
    grid:
      time.mode: [fixed, steer, toflow]            # a config key and its values
      spatial:                                     # a named axis of labelled bundles
        none: {}
        ot: {regularizers.kinetic: 0.01, regularizers.jacobian_frobenius: 0.01}
    seeds: [0, 1, 2]
    out: runs/study_toy
    baseline: time.mode=fixed,spatial=none         # the arm the ratios are against (default: the first)

``baseline`` may also name only some axes' labels (``baseline: time.mode=fixed`` in a grid of
data sets and modes): each arm is then compared with the arm that has those labels and
agrees with it on every other axis, so a study over several data sets compares within each.

Each (arm, seed) trains in ``<out>/<arm>/seed<k>`` through the CLI, one after another
or ``parallel`` at a time. A run with a ``summary.json`` is skipped, one with only a
checkpoint is resumed, so a study that stops can be started again. The study writes
``<out>/results.md`` (the machine; test NLL, and bits/dim for images, mean +- std over
seeds; NFE forward and backward per step and time per step, also as ratios against the
baseline arm; wall time; final T), ``<out>/nll_vs_wall.png``, ``<out>/nfe_vs_step.png``;
every run logs its hyperparameters and final metrics for TensorBoard's HParams tab
(``tensorboard --logdir <out>``).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import ConfigError, load_config, one_line, read_yaml
from .trainers.reliability import TrainingFailed
from .trainers.train import finished_summary, last_checkpoint


@dataclass
class StudyConfig:
    base: str = "configs/toy_checkerboard_toflow.yaml"
    overrides: List[str] = field(default_factory=list)
    grid: Dict[str, Any] = field(default_factory=dict)
    seeds: List[int] = field(default_factory=lambda: [0])
    out: str = "runs/study"
    parallel: int = 1
    baseline: Optional[str] = None  # the arm (or some axes' labels) the ratios are against (default: the first arm)
    targets: List[Any] = field(default_factory=lambda: ["fixed_final", "fixed_half"])  # of the time-to-quality table


@dataclass(frozen=True)
class Arm:
    name: str  # e.g. "time.mode=fixed,spatial=ot"
    overrides: tuple  # ("time.mode=fixed", "regularizers.kinetic=0.01", ...)
    labels: tuple = ()  # (("time.mode", "fixed"), ("spatial", "ot"))


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple, ListConfig)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return str(v).lower() if isinstance(v, bool) else str(v)


def arms(grid: dict) -> list[Arm]:
    """The cartesian product of the grid's axes, in the order they are written."""
    axes = []
    for key, values in grid.items():
        if isinstance(values, (dict, DictConfig)):
            axes.append([((key, str(label)), tuple(f"{k}={_value(v)}" for k, v in bundle.items()))
                         for label, bundle in values.items()])
        elif isinstance(values, (list, tuple, ListConfig)):
            axes.append([((key, _value(v)), (f"{key}={_value(v)}",)) for v in values])
        else:
            raise ConfigError(f"grid.{key}: give a list of values or a mapping of labelled bundles")
    if not axes:
        return [Arm("base", ())]
    return [Arm(",".join(f"{key}={label}" for (key, label), _ in combo), tuple(o for _, bundle in combo for o in bundle),
                tuple(labels for labels, _ in combo))
            for combo in itertools.product(*axes)]


def baselines(arm_list: list[Arm], baseline: str | None) -> dict[str, str]:
    """Each arm's baseline arm: ``baseline`` if it names an arm (the first arm if None); if it names
    some axes' labels (``time.mode=fixed``), the arm with those labels that agrees with the arm on
    every other axis."""
    names = [arm.name for arm in arm_list]
    if baseline is None or baseline in names:
        return {name: baseline or names[0] for name in names}
    axes: dict[str, list] = {}
    for arm in arm_list:
        for key, label in arm.labels:
            if label not in axes.setdefault(key, []):
                axes[key].append(label)
    wanted: dict[str, str] = {}
    key = None
    for part in baseline.split(","):  # a label may hold commas ("[64,64]"): a part that names no axis continues it
        name, sep, label = part.partition("=")
        if sep and name in axes:
            key, wanted[name] = name, label
        elif key is None:
            break
        else:
            wanted[key] += "," + part
    if not wanted or any(label not in axes[k] for k, label in wanted.items()):
        raise ConfigError(f"baseline: '{baseline}' is neither an arm nor labels of the grid's axes; arms: "
                          f"{', '.join(names)}")
    by_labels = {arm.labels: arm.name for arm in arm_list}
    return {arm.name: by_labels[tuple((k, wanted.get(k, label)) for k, label in arm.labels)] for arm in arm_list}


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    loaded = read_yaml(Path(path), "study")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(StudyConfig), loaded, OmegaConf.from_dotlist(list(overrides)))
        study = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err, StudyConfig, "study")) from None
    return check_study(study)


def check_study(study: StudyConfig) -> StudyConfig:
    """``study`` if every arm's config loads and its settings are in range, else a :class:`ConfigError`."""
    if study.parallel < 1:
        raise ConfigError(f"parallel: must be at least 1, got {study.parallel}")
    if not study.seeds:
        raise ConfigError("seeds: give at least one seed")
    for target in study.targets:
        if target not in ("fixed_final", "fixed_half") and not isinstance(target, (int, float)):
            raise ConfigError(f"targets: '{target}' is neither fixed_final, fixed_half nor a number")
    baselines(arms(study.grid), study.baseline)  # refuses a baseline that names no arm
    for arm in arms(study.grid):  # refuse a bad arm before anything runs
        load_config(study.base, [*study.overrides, *arm.overrides])
    return study


def run_dir(study: StudyConfig, arm: Arm, seed: int) -> Path:
    return Path(study.out) / arm.name / f"seed{seed}"


def run_arm(study: StudyConfig, arm: Arm, seed: int) -> dict:
    """Train one (arm, seed) unless it has finished; resume it if it has a checkpoint (a finished
    run whose arm now asks for more steps continues to them)."""
    where = run_dir(study, arm, seed)
    summary = finished_summary(where)
    steps = load_config(study.base, [*study.overrides, *arm.overrides]).trainer.max_steps
    if summary is not None and summary["steps"] >= steps:
        print(f"[study] {arm.name} seed {seed}: finished, skipped", flush=True)
        return summary
    resume = last_checkpoint(where).is_file()
    command = [sys.executable, "-m", "toflow.trainers.run", study.base, *study.overrides, *arm.overrides,
               f"seed={seed}", f"trainer.log_dir={where}", "trainer.progress_bar=false",
               f"trainer.resume={'true' if resume else 'false'}"]
    doing = f"extending to {steps} steps" if summary is not None else "resuming" if resume else "training"
    print(f"[study] {arm.name} seed {seed}: {doing}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TrainingFailed(f"{arm.name} seed {seed} failed: {tail[0]}")
    return finished_summary(where)


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


COLUMNS = ("arm", "test NLL (nats)", "NFE fwd", "NFE bwd", "NFE vs baseline", "s/step", "time vs baseline", "wall (s)",
           "final T", "sampling NFE", "seeds")


def table(results: dict[str, list[dict]], baseline: str | dict | None = None) -> str:
    """One row per arm: means over seeds (the score with its spread), NFE and time per step also
    as ratios against the ``baseline`` arm (default: the first; a dict gives each arm its own) of
    the same study; test bits/dim after the NLL where the data are images."""
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
        cells = [name, _mean_std([r["test_nll"] for r in runs]), *bpd, f"{mean(name, 'nfe_forward_mean'):.1f}",
                 f"{mean(name, 'nfe_backward_mean'):.1f}", f"{nfe(name) / nfe(base_of[name]):.2f}x",
                 f"{mean(name, 'time_per_iter_s'):.3f}",
                 f"{mean(name, 'time_per_iter_s') / mean(base_of[name], 'time_per_iter_s'):.2f}x",
                 f"{mean(name, 'wall_s'):.0f}", f"{final_T:.3f}",
                 f"{statistics.mean(r['sample_nfe'] for r in runs):.0f}" if all("sample_nfe" in r for r in runs)
                 else "n/a", str(len(runs))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine() -> str:
    """The processor (or GPU), its cores, torch and Python: the line a timing is reported with."""
    import os
    import platform

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


class Curve(NamedTuple):
    """A run's evaluations: each one's step and test metric, and the training time (the sum of
    step times: evaluation and stops left out) and the cumulative NFE (forward + backward) by then."""

    steps: list
    values: list
    seconds: list
    nfe: list


def curve(run: Path, metric: str = "nll") -> Curve:
    """``run``'s test ``metric`` (``nll`` or ``bpd``) as a :class:`Curve`, from its TensorBoard events."""
    scalars = _run_scalars(run)
    evaluations = scalars.get(f"test/{metric}", [])
    clock = training_clock(scalars.get("time/step_s", []))
    work = training_clock(_nfe_per_step(scalars))
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
    nearest half its steps), or numbers."""
    baseline = baseline or study.baseline or next(iter(curves))
    out = {}
    for target in study.targets:
        if target == "fixed_final":
            out[target] = statistics.mean(finals[baseline])
        elif target == "fixed_half":
            halves = [c.values[min(range(len(c.steps)), key=lambda i: abs(c.steps[i] - c.steps[-1] / 2))]
                      for c in curves[baseline] if c.steps]
            if halves:
                out[target] = statistics.mean(halves)
        else:
            out[str(target)] = float(target)
    return out


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


def _run_scalars(path: Path) -> dict[str, list]:
    """Every scalar a run logged, {tag: events}, read from its TensorBoard files once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags().get("scalars", [])}


def _nfe_per_step(scalars: dict[str, list]) -> list:
    """Field evaluations per step, forward + backward, as events."""
    backward = {e.step: e.value for e in scalars.get("nfe/backward", [])}
    return [SimpleNamespace(step=e.step, value=e.value + backward.get(e.step, 0.0)) for e in scalars.get("nfe/forward", [])]


def training_clock(step_times: list) -> Callable[[int], float]:
    """Seconds spent in training steps up to a step: the sum of the logged step times, so
    that the time a run spent stopped before a resume does not count."""
    by_step = {e.step: e.value for e in step_times}  # a step repeated after a resume counts once
    steps = sorted(by_step)
    elapsed = list(itertools.accumulate(by_step[k] for k in steps))
    return lambda step: elapsed[bisect.bisect_right(steps, step) - 1] if steps and step >= steps[0] else 0.0


def _band(runs: list[Curve], axis: str) -> tuple[list, list, list, list]:
    """x (the mean over seeds), and the mean, lowest and highest metric over seeds, at the
    evaluations every seed has."""
    count = min(len(c.steps) for c in runs)
    xs = [statistics.mean(getattr(c, axis)[i] for c in runs) for i in range(count)]
    values = [[c.values[i] for c in runs] for i in range(count)]
    return xs, [statistics.mean(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def _smooth(values: list) -> list:
    window = max(1, len(values) // 50)
    return [statistics.mean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def plots(study: StudyConfig, arm_list: list[Arm], curves: dict[str, list[Curve]], unit: str) -> list[Path]:
    """The test metric against training time, cumulative NFE and step (one line per arm, the seeds
    as a band), NFE per step and the gradient norm against step (first seed), and ``panels.png``,
    the paper's ablation figures (its Figs. 6-9): gradient norm, NFE per step and test metric
    over training side by side, with the flow's total end time sum_b (T_b - t0) beside them. An arm
    trained without a solve (flow matching) has no NFE and stays out of the NFE plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(study.out)
    figures = {name: plt.subplots(figsize=(7, 4.5)) for name in ("nll_vs_wall.png", "nll_vs_nfe.png", "nll_vs_step.png",
                                                                   "nfe_vs_step.png", "grad_vs_step.png")}
    panel_figure, panels = plt.subplots(1, 4, figsize=(17, 3.8))
    for arm in arm_list:
        runs = [c for c in curves[arm.name] if c.steps]
        where = run_dir(study, arm, study.seeds[0])
        scalars = _run_scalars(where)
        nfe, grad = _nfe_per_step(scalars), scalars.get("train/grad_norm", [])
        if not any(e.value for e in nfe):  # trained without a solve (flow matching): no NFE to plot
            nfe = []
        for name, axis in (("nll_vs_wall.png", "seconds"), ("nll_vs_nfe.png", "nfe"), ("nll_vs_step.png", "steps")):
            if runs and (nfe or axis != "nfe"):
                xs, mean, low, high = _band(runs, axis)
                line, = figures[name][1].plot(xs, mean, marker="o", markersize=3, label=arm.name)
                if len(runs) > 1:
                    figures[name][1].fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
        for ax, events in ((figures["nfe_vs_step.png"][1], nfe), (figures["grad_vs_step.png"][1], grad),
                           (panels[0], grad), (panels[1], nfe), (panels[3], _total_end_time(where, scalars))):
            if events:
                ax.plot([e.step for e in events], _smooth([e.value for e in events]), label=arm.name)
        if runs:
            panels[2].plot(runs[0].steps, runs[0].values, marker="o", markersize=3, label=arm.name)
    seeds = f"seeds {', '.join(map(str, study.seeds))}" if len(study.seeds) > 1 else f"seed {study.seeds[0]}"
    labels = {"nll_vs_wall.png": ("training time (s, sum of step times)", f"test {unit}",
                                  f"test {unit} against training time ({seeds})"),
              "nll_vs_nfe.png": ("field evaluations so far (forward + backward)", f"test {unit}",
                                 f"test {unit} against cumulative NFE ({seeds})"),
              "nll_vs_step.png": ("step", f"test {unit}", f"test {unit} over training ({seeds})"),
              "nfe_vs_step.png": ("step", "NFE per step (forward + backward)",
                                  f"NFE against step (seed {study.seeds[0]})"),
              "grad_vs_step.png": ("step", "the weights' gradient norm (before clipping)",
                                   f"gradient norm over training (seed {study.seeds[0]})")}
    for ax, (ylabel, title) in zip(panels, (("gradient norm", "grad norm"), ("NFE per step", "NFE"),
                                            (f"test {unit}", "test loss"), ("sum over blocks of T - t0", "end time"))):
        ax.set(xlabel="step", ylabel=ylabel, title=f"{title} (seed {study.seeds[0]})")
        ax.grid(alpha=0.3)
    panels[-1].legend(fontsize=7)
    panel_figure.tight_layout()
    figures["panels.png"] = (panel_figure, None)
    paths = []
    for name, (fig, ax) in figures.items():
        if ax is not None:
            ax.set(xlabel=labels[name][0], ylabel=labels[name][1], title=labels[name][2])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        paths.append(out / name)
    return paths


def _total_end_time(run: Path, scalars: dict[str, list] | None = None) -> list:
    """The flow's total integration time per step, sum over blocks of (T_b - t0), from ``run``'s
    events (``scalars``, if already read)."""
    config = run / "config.yaml"
    t0 = float(OmegaConf.load(config).time.t0) if config.is_file() else 0.0
    scalars = _run_scalars(run) if scalars is None else scalars
    blocks = [{e.step: e.value for e in events} for tag, events in scalars.items() if tag.startswith("T/block")]
    steps = sorted(set.intersection(*(set(b) for b in blocks))) if blocks else []
    return [SimpleNamespace(step=k, value=sum(b[k] - t0 for b in blocks)) for k in steps]


def run_study(study: StudyConfig) -> dict[str, list[dict]]:
    """Run (or skip) every arm and seed, then write the tables and the plots. A run that fails is
    said when it does and the others go on; the study then stops naming it, before any table."""
    arm_list = arms(check_study(study).grid)
    jobs = [(arm, seed) for seed in study.seeds for arm in arm_list]

    def attempt(job):  # a failed run is said at once and does not stop the others
        try:
            return run_arm(study, *job)
        except TrainingFailed as failure:
            print(f"[study] {failure}", flush=True)
            return failure

    with ThreadPoolExecutor(max_workers=study.parallel) as pool:
        summaries = list(pool.map(attempt, jobs))
    failed = [str(s) for s in summaries if isinstance(s, TrainingFailed)]
    if failed:
        raise TrainingFailed(f"{len(failed)} of {len(jobs)} runs failed ({'; '.join(failed)}); the others are kept, "
                             "run the study again to retry these")
    results: dict[str, list[dict]] = {arm.name: [] for arm in arm_list}
    for (arm, _), summary in zip(jobs, summaries):
        results[arm.name].append(summary)
    images = all("test_bpd" in r for runs in results.values() for r in runs)
    metric, unit = ("bpd", "bits/dim") if images else ("nll", "NLL (nats)")
    curves = {arm.name: [curve(run_dir(study, arm, seed), metric) for seed in study.seeds] for arm in arm_list}
    base_of = baselines(arm_list, study.baseline)
    finals = {name: [r[f"test_{metric}"] for r in runs] for name, runs in results.items()}
    goals = {name: targets(study, curves, finals, base_of[name]) for name in results}
    out = Path(study.out)
    out.mkdir(parents=True, exist_ok=True)
    pace = "one after another" if study.parallel == 1 else f"{study.parallel} at a time"
    text = (f"Study of `{study.base}` with {' '.join(study.overrides) or 'no overrides'}; "
            f"seeds {', '.join(map(str, study.seeds))}; runs {pace} on {machine()}. "
            f"Ratios against `{study.baseline or arm_list[0].name}`"
            + (" with the same other labels" if len(set(base_of.values())) > 1 else "") + ".\n\n"
            + table(results, base_of)
            + "\nTime to quality: the training time (step times only, evaluation left out) and the field "
              "evaluations at the first evaluation at or below each target; `fixed_final` and `fixed_half` are "
              f"the baseline arm's final test {unit} and its value at half its steps.\n\n"
            + quality_table(curves, goals, unit))
    (out / "results.md").write_text(text)
    plots(study, arm_list, curves, unit)
    print(text)
    return results


def main(argv: list[str] | None = None) -> int:
    from .trainers.commands import run_command

    parser = argparse.ArgumentParser(prog="python -m toflow.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="YAML study file, e.g. configs/study_toy.yaml")
    parser.add_argument("overrides", nargs="*", help="study keys, e.g. seeds=[0,1] out=runs/mine parallel=2")
    return run_command(parser, _study, argv)


def _study(args: argparse.Namespace) -> int:
    run_study(load_study(args.study, args.overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
