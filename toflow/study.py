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
from typing import Any, Callable, Dict, List, Optional

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
    baseline: Optional[str] = None  # the arm the table's ratios are against (default: the first)


@dataclass(frozen=True)
class Arm:
    name: str  # e.g. "time.mode=fixed,spatial=ot"
    overrides: tuple  # ("time.mode=fixed", "regularizers.kinetic=0.01", ...)


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple, ListConfig)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return str(v).lower() if isinstance(v, bool) else str(v)


def arms(grid: dict) -> list[Arm]:
    """The cartesian product of the grid's axes, in the order they are written."""
    axes = []
    for key, values in grid.items():
        if isinstance(values, (dict, DictConfig)):
            axes.append([(f"{key}={label}", tuple(f"{k}={_value(v)}" for k, v in bundle.items()))
                         for label, bundle in values.items()])
        elif isinstance(values, (list, tuple, ListConfig)):
            axes.append([(f"{key}={_value(v)}", (f"{key}={_value(v)}",)) for v in values])
        else:
            raise ConfigError(f"grid.{key}: give a list of values or a mapping of labelled bundles")
    if not axes:
        return [Arm("base", ())]
    return [Arm(",".join(label for label, _ in combo), tuple(o for _, bundle in combo for o in bundle))
            for combo in itertools.product(*axes)]


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
    names = [arm.name for arm in arms(study.grid)]
    if study.baseline is not None and study.baseline not in names:
        raise ConfigError(f"baseline: '{study.baseline}' is not an arm; one of {', '.join(names)}")
    for arm in arms(study.grid):  # refuse a bad arm before anything runs
        load_config(study.base, [*study.overrides, *arm.overrides])
    return study


def run_dir(study: StudyConfig, arm: Arm, seed: int) -> Path:
    return Path(study.out) / arm.name / f"seed{seed}"


def run_arm(study: StudyConfig, arm: Arm, seed: int) -> dict:
    """Train one (arm, seed) unless it has finished; resume it if it has a checkpoint."""
    where = run_dir(study, arm, seed)
    summary = finished_summary(where)
    if summary is not None:
        print(f"[study] {arm.name} seed {seed}: finished, skipped", flush=True)
        return summary
    resume = last_checkpoint(where).is_file()
    command = [sys.executable, "-m", "toflow.trainers.run", study.base, *study.overrides, *arm.overrides,
               f"seed={seed}", f"trainer.log_dir={where}", "trainer.progress_bar=false",
               f"trainer.resume={'true' if resume else 'false'}"]
    print(f"[study] {arm.name} seed {seed}: {'resuming' if resume else 'training'}", flush=True)
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
           "time to baseline's NLL (s)", "final T", "sampling NFE", "seeds")


def table(results: dict[str, list[dict]], baseline: str | None = None, to_target: dict | None = None) -> str:
    """One row per arm: means over seeds (the score with its spread), NFE and time per step also
    as ratios against the ``baseline`` arm (default: the first) of the same study; test
    bits/dim after the NLL where the data are images; ``to_target``: per arm, the training
    time of each seed's run to the baseline's final test NLL (None where not reached)."""
    baseline = baseline or next(iter(results))
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
                 f"{mean(name, 'nfe_backward_mean'):.1f}", f"{nfe(name) / nfe(baseline):.2f}x",
                 f"{mean(name, 'time_per_iter_s'):.3f}",
                 f"{mean(name, 'time_per_iter_s') / mean(baseline, 'time_per_iter_s'):.2f}x",
                 f"{mean(name, 'wall_s'):.0f}", _reached((to_target or {}).get(name)), f"{final_T:.3f}",
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


def _reached(times: list | None) -> str:
    if not times:
        return "n/a"
    reached = [t for t in times if t is not None]
    if not reached:
        return "not reached"
    seconds = statistics.mean(reached)
    text = f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.2f}"
    return text + (f" ({len(reached)} of {len(times)} seeds)" if len(reached) < len(times) else "")


def time_to(run: Path, target: float) -> float | None:
    """Training time (the sum of step times) at the first evaluation of ``run`` whose test NLL is
    at most ``target`` (to float32's precision, as TensorBoard keeps it); None if none is."""
    clock = training_clock(_scalars(run, "time/step_s"))
    bound = target + 1e-6 * abs(target)
    return next((clock(e.step) for e in _scalars(run, "test/nll") if e.value <= bound), None)


def _scalars(path: Path, tag: str) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    return events.Scalars(tag) if tag in events.Tags().get("scalars", []) else []


def training_clock(step_times: list) -> Callable[[int], float]:
    """Seconds spent in training steps up to a step: the sum of the logged step times, so
    that the time a run spent stopped before a resume does not count."""
    by_step = {e.step: e.value for e in step_times}  # a step repeated after a resume counts once
    steps = sorted(by_step)
    elapsed = list(itertools.accumulate(by_step[k] for k in steps))
    return lambda step: elapsed[bisect.bisect_right(steps, step) - 1] if steps and step >= steps[0] else 0.0


def plots(study: StudyConfig, arm_list: list[Arm]) -> list[Path]:
    """Test NLL against training time and NFE per step against step, one line per arm (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(study.out)
    fig_nll, ax_nll = plt.subplots(figsize=(7, 4.5))
    fig_nfe, ax_nfe = plt.subplots(figsize=(7, 4.5))
    seed = study.seeds[0]
    for arm in arm_list:
        where = run_dir(study, arm, seed)
        nll = _scalars(where, "test/nll")
        forward, backward = _scalars(where, "nfe/forward"), _scalars(where, "nfe/backward")
        if nll:
            clock = training_clock(_scalars(where, "time/step_s"))
            ax_nll.plot([clock(e.step) for e in nll], [e.value for e in nll], marker="o", label=arm.name)
        if forward:
            steps = [e.step for e in forward]
            total = [f.value + b.value for f, b in zip(forward, backward)] if backward else [f.value for f in forward]
            window = max(1, len(total) // 50)
            smooth = [statistics.mean(total[max(0, i - window + 1): i + 1]) for i in range(len(total))]
            ax_nfe.plot(steps, smooth, label=arm.name)
    ax_nll.set(xlabel="training time (s, sum of step times)", ylabel="test NLL (nats)",
               title=f"test NLL against training time (seed {seed})")
    ax_nfe.set(xlabel="step", ylabel="NFE per step (forward + backward)", title=f"NFE against step (seed {seed})")
    paths = []
    for fig, ax, name in ((fig_nll, ax_nll, "nll_vs_wall.png"), (fig_nfe, ax_nfe, "nfe_vs_step.png")):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        paths.append(out / name)
    return paths


def run_study(study: StudyConfig) -> dict[str, list[dict]]:
    """Run (or skip) every arm and seed, then write the table and the plots."""
    arm_list = arms(check_study(study).grid)
    jobs = [(arm, seed) for seed in study.seeds for arm in arm_list]
    with ThreadPoolExecutor(max_workers=study.parallel) as pool:
        summaries = list(pool.map(lambda job: run_arm(study, *job), jobs))
    results: dict[str, list[dict]] = {arm.name: [] for arm in arm_list}
    for (arm, _), summary in zip(jobs, summaries):
        results[arm.name].append(summary)
    out = Path(study.out)
    out.mkdir(parents=True, exist_ok=True)
    baseline = study.baseline or arm_list[0].name
    target = statistics.mean(r["test_nll"] for r in results[baseline])
    to_target = {arm.name: [time_to(run_dir(study, arm, seed), target) for seed in study.seeds] for arm in arm_list}
    pace = "one after another" if study.parallel == 1 else f"{study.parallel} at a time"
    text = (f"Study of `{study.base}` with {' '.join(study.overrides) or 'no overrides'}; "
            f"seeds {', '.join(map(str, study.seeds))}; runs {pace} on {machine()}. "
            f"Ratios against `{baseline}`; its final test NLL, {target:.4f}, is the target of the time-to "
            f"column (training time only, first evaluation at or below it).\n\n"
            + table(results, study.baseline, to_target))
    (out / "results.md").write_text(text)
    plots(study, arm_list)
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
