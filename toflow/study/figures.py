"""A study's figures, one function each: the test metric against training time, cumulative NFE
and step (the seeds as a band), NFE per step and the gradient norm against step (first seed), and
``panels.png``, the paper's ablation figures (its Figs. 6-9)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .grid import Arm, StudyConfig, run_dir  # noqa: E402
from .results import Curve, band, nfe_per_step, run_scalars, smooth, total_end_time  # noqa: E402


@dataclass
class Drawn:
    """What the figures draw of one arm: its seeds' curves, and its first seed's NFE per step,
    gradient norms and total end time (events). An arm trained without a solve (flow matching)
    has no NFE."""

    name: str
    runs: list
    nfe: list
    grad: list
    end_time: list


def drawn(study: StudyConfig, arm: Arm, curves: list[Curve]) -> Drawn:
    """:class:`Drawn` for ``arm``, its first seed's events read once."""
    where = run_dir(study, arm, study.seeds[0])
    scalars = run_scalars(where)
    nfe = nfe_per_step(scalars)
    return Drawn(arm.name, [c for c in curves if c.steps], nfe if any(e.value for e in nfe) else [],
                 scalars.get("train/grad_norm", []), total_end_time(where, scalars))


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def metric_figure(arms: list[Drawn], axis: str, xlabel: str, title: str, unit: str):
    """The test metric against ``axis`` (``seconds``, ``nfe`` or ``steps``): one line per arm, the
    mean over seeds, and the band from the lowest to the highest seed."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm in arms:
        if arm.runs and (arm.nfe or axis != "nfe"):
            xs, mean, low, high = band(arm.runs, axis)
            line, = ax.plot(xs, mean, marker="o", markersize=3, label=arm.name)
            if len(arm.runs) > 1:
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
    _finish(ax, xlabel, f"test {unit}", title)
    return fig


def per_step_figure(arms: list[Drawn], what: str, ylabel: str, title: str):
    """The first seed's ``what`` (``nfe`` or ``grad``) against step, smoothed, one line per arm."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm in arms:
        events = getattr(arm, what)
        if events:
            ax.plot([e.step for e in events], smooth([e.value for e in events]), label=arm.name)
    _finish(ax, "step", ylabel, title)
    return fig


def panels_figure(arms: list[Drawn], unit: str, seed: int):
    """The paper's ablation panels: gradient norm, NFE per step and the test metric over training,
    and the flow's total end time sum_b (T_b - t0) beside them (first seed)."""
    fig, panels = plt.subplots(1, 4, figsize=(17, 3.8))
    for arm in arms:
        for ax, events in ((panels[0], arm.grad), (panels[1], arm.nfe), (panels[3], arm.end_time)):
            if events:
                ax.plot([e.step for e in events], smooth([e.value for e in events]), label=arm.name)
        if arm.runs:
            panels[2].plot(arm.runs[0].steps, arm.runs[0].values, marker="o", markersize=3, label=arm.name)
    for ax, (ylabel, title) in zip(panels, (("gradient norm", "grad norm"), ("NFE per step", "NFE"),
                                            (f"test {unit}", "test loss"), ("sum over blocks of T - t0", "end time"))):
        ax.set(xlabel="step", ylabel=ylabel, title=f"{title} (seed {seed})")
        ax.grid(alpha=0.3)
    panels[-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plots(study: StudyConfig, arm_list: list[Arm], curves: dict[str, list[Curve]], unit: str) -> list[Path]:
    """Every figure of the study, saved into its ``out`` directory; returns their paths."""
    arms = [drawn(study, arm, curves[arm.name]) for arm in arm_list]
    first = study.seeds[0]
    seeds = f"seeds {', '.join(map(str, study.seeds))}" if len(study.seeds) > 1 else f"seed {first}"
    figures = {
        "nll_vs_wall.png": metric_figure(arms, "seconds", "training time (s, sum of step times)",
                                         f"test {unit} against training time ({seeds})", unit),
        "nll_vs_nfe.png": metric_figure(arms, "nfe", "field evaluations so far (forward + backward)",
                                        f"test {unit} against cumulative NFE ({seeds})", unit),
        "nll_vs_step.png": metric_figure(arms, "steps", "step", f"test {unit} over training ({seeds})", unit),
        "nfe_vs_step.png": per_step_figure(arms, "nfe", "NFE per step (forward + backward)",
                                           f"NFE against step (seed {first})"),
        "grad_vs_step.png": per_step_figure(arms, "grad", "the weights' gradient norm (before clipping)",
                                            f"gradient norm over training (seed {first})"),
        "panels.png": panels_figure(arms, unit, first),
    }
    paths = []
    for name, fig in figures.items():
        if name != "panels.png":
            fig.tight_layout()
        fig.savefig(Path(study.out) / name, dpi=100)
        plt.close(fig)
        paths.append(Path(study.out) / name)
    return paths
