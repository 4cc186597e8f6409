"""A study's grid: its file, its arms (the product of the grid's axes) and each arm's baseline."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import load_config, one_line, read_yaml
from ..config.loading import parse_overrides
from ..errors import ConfigError


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
    equal_time: bool = False  # also tabulate each arm at the baseline arm's training time


@dataclass(frozen=True)
class Arm:
    name: str  # e.g. "time.mode=fixed,spatial=ot"
    overrides: tuple  # ("time.mode=fixed", "regularizers.kinetic=0.01", ...)
    labels: tuple = ()  # (("time.mode", "fixed"), ("spatial", "ot"))


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple, ListConfig)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    if v is None:
        return "null"
    return str(v).lower() if isinstance(v, bool) else str(v)


def arms(grid: dict) -> list[Arm]:
    """The cartesian product of the grid's axes, in the order they are written."""
    axes = []
    for key, values in grid.items():
        if isinstance(values, (dict, DictConfig, list, tuple, ListConfig)) and not len(values):
            raise ConfigError(f"grid.{key}: give at least one value or labelled bundle")
        if isinstance(values, (dict, DictConfig)):
            axes.append([((key, str(label)), tuple(f"{k}={_value(v)}" for k, v in bundle.items()))
                         for label, bundle in values.items()])
        elif isinstance(values, (list, tuple, ListConfig)):
            axes.append([((key, _value(v)), (f"{key}={_value(v)}",)) for v in values])
        else:
            raise ConfigError(f"grid.{key}: give a list of values or a mapping of labelled bundles")
    if not axes:
        return [Arm("base", ())]
    return [Arm(",".join(f"{key}={label}" for (key, label), _ in combo),
                tuple(o for _, bundle in combo for o in bundle), tuple(labels for labels, _ in combo))
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
    wanted = _labels(baseline, axes)
    if not wanted or any(label not in axes[k] for k, label in wanted.items()):
        raise ConfigError(f"baseline: '{baseline}' is neither an arm nor labels of the grid's axes; arms: "
                          f"{', '.join(names)}")
    by_labels = {arm.labels: arm.name for arm in arm_list}
    return {arm.name: by_labels[tuple((k, wanted.get(k, label)) for k, label in arm.labels)] for arm in arm_list}


def _labels(baseline: str, axes: dict[str, list]) -> dict[str, str]:
    """``axis=label,...`` read against the grid's axes; a label may hold commas (``[64,64]``): a
    part that names no axis continues the label before it."""
    wanted: dict[str, str] = {}
    key = None
    for part in baseline.split(","):
        name, sep, label = part.partition("=")
        if sep and name in axes:
            key, wanted[name] = name, label
        elif key is None:
            break
        else:
            wanted[key] += "," + part
    return wanted


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    """A study file with ``key=value`` overrides of its own keys, checked (:func:`check_study`).

    Args:
        path: The YAML study file.
        overrides: E.g. ``["seeds=[0,1]", "parallel=2"]``.

    Returns:
        The study.
    """
    loaded = read_yaml(Path(path), "study")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(StudyConfig), loaded, parse_overrides(overrides))
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
        if target not in ("fixed_final", "fixed_half", "best_final") and not isinstance(target, (int, float)):
            raise ConfigError(f"targets: '{target}' is neither fixed_final, fixed_half, best_final nor a number")
    baselines(arms(study.grid), study.baseline)  # refuses a baseline that names no arm
    for arm in arms(study.grid):  # refuse a bad arm before anything runs
        load_config(study.base, [*study.overrides, *arm.overrides])
    return study


def run_dir(study: StudyConfig, arm: Arm, seed: int) -> Path:
    """Where the study keeps the run of ``arm`` with ``seed``: ``<out>/<arm>/seed<k>``."""
    return Path(study.out) / arm.name / f"seed{seed}"
