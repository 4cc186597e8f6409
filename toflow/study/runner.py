"""Running a study: every (arm, seed) through the command line, resumed or skipped as its run
directory says, two or more at a time, then the report."""

from __future__ import annotations

import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import load_config
from ..errors import TrainingFailed
from ..provenance import finished_summary, last_checkpoint, machine
from .figures import plots
from .grid import Arm, StudyConfig, arms, baselines, check_study, run_dir
from .results import curve, equal_time_table, quality_table, table, targets


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


def run_study(study: StudyConfig) -> dict[str, list[dict]]:
    """Run (or skip, or resume) every arm and seed, then write the tables and the figures.

    A run that fails is said when it does and the others go on; the study then stops naming it,
    before any table.

    Args:
        study: The study (:func:`~toflow.study.load_study`).

    Returns:
        Each arm's summaries, one per seed, by arm name.
    """
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
    text = report(study, arm_list, results)
    print(text)
    return results


def report(study: StudyConfig, arm_list: list, results: dict[str, list[dict]]) -> str:
    """Write ``<out>/results.md`` (the machine, the table, time to quality) and the figures.

    Args:
        study: The study.
        arm_list: Its arms.
        results: Each arm's summaries, one per seed.

    Returns:
        The text of ``results.md``.
    """
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
    if study.equal_time:
        baseline = base_of[next(iter(base_of))]
        seconds = statistics.mean(c.seconds[-1] for c in curves[baseline] if c.seconds)
        text += (f"\nAt equal training time: each arm's test {unit} after the baseline arm's mean training time "
                 "(both phases of a warm start counted).\n\n" + equal_time_table(curves, results, seconds, unit))
    (out / "results.md").write_text(text)
    plots(study, arm_list, curves, unit)
    return text
