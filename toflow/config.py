"""Typed run configuration: schema, YAML loading, ``key=value`` overrides, validation.

The schema is a tree of dataclasses read by OmegaConf, so an unknown key or a value of
the wrong type is refused with its dotted name. Each section then builds its component
with its own fields (``solver`` -> ``build_solver(**section)``, ``time`` -> ``EndTime``,
``regularizers`` -> ``build_regularizers``, ``model`` -> the flow, ``data`` -> ``check_data``),
so the allowed values are the registries' and the range checks are the constructors':
:func:`validate` runs them and turns their refusal into a :class:`ConfigError`, one line
that names the key. A setting left at None takes the component's own default; a setting
the chosen component does not take (``solver.step_size`` with dopri5,
``solver.sensitivity`` with aca, ``model.probe`` with the exact trace) is refused.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration value or key was refused. The message is one line."""


@dataclass
class DataConfig:
    name: str = "checkerboard"
    root: str = "data"
    batch_size: int = 512
    test_size: int = 5000  # toy: size of the held-out set; images: the first test_size test images
    resize: Optional[int] = None  # images: side length to resize to (e.g. 14 for CPU runs)
    subset: Optional[int] = None  # images: train on the first `subset` training images only


@dataclass
class ModelConfig:
    hidden: List[int] = field(default_factory=lambda: [64, 64, 64])
    activation: str = "tanh"
    trace: str = "auto"  # exact | hutchinson | auto (exact for dim <= 8)
    probe: Optional[str] = None  # Hutchinson probe: rademacher (default) | gaussian
    num_blocks: Optional[int] = None  # images: CNF blocks per place in each scale (default 1, FFJORD's)
    logit_alpha: Optional[float] = None  # images: alpha of the logit transform (default 1e-6; RNODE on CIFAR-10: 0.05)
    scales: Optional[int] = None  # images: scales of the multiscale flow (default: halvings while the side >= 4)
    divergence: str = "auto"  # auto | tangents (first order) | vjp (vector-Jacobian products)
    compile: Optional[bool] = None  # torch.compile the dynamics; null: for runs of 100 steps or more


@dataclass
class TimeConfig:
    mode: str = "toflow"  # fixed | joint | steer | toflow
    t0: float = 0.0
    T0: float = 0.5
    lr: float = 1.0e-2
    alpha: float = 0.1
    eps: float = 0.1
    grad: str = "after_step"  # after_step | same_pass


@dataclass
class SolverConfig:
    name: str = "dopri5"
    sensitivity: Optional[str] = None  # adjoint (default) | autograd | auto, for the solvers that offer the choice
    memory_budget_mb: Optional[float] = None  # sensitivity auto: memory a solve's gradient may hold (default 2048)
    atol: float = 1.0e-5
    rtol: float = 1.0e-5
    test_atol: Optional[float] = None  # evaluation tolerances; None: the training ones
    test_rtol: Optional[float] = None
    control: Optional[str] = None  # training's error norm: all (z and the integrals; default) | state (z only)
    max_steps: int = 10000
    step_size: Optional[float] = None  # fixed-step solvers (rk4, euler): the largest step


@dataclass
class ObjectiveConfig:
    name: str = "likelihood"  # likelihood | flow_matching
    sigma: Optional[float] = None  # flow matching: noise added to the path (default 0)
    coupling: Optional[str] = None  # flow matching: independent (default) | ot


@dataclass
class OptimConfig:
    lr: float = 1.0e-3
    weight_decay: float = 1.0e-5
    max_grad_norm: Optional[float] = None


@dataclass
class TrainerConfig:
    max_steps: int = 10000
    eval_every: int = 100
    viz_every: int = 500
    checkpoint_every: int = 100
    log_dir: Optional[str] = None  # None: runs/<config name>-<timestamp>
    resume: bool = False
    accelerator: str = "auto"  # auto: CUDA where present, else CPU
    devices: int = 1  # processes (GPUs) per node
    num_nodes: int = 1
    strategy: str = "auto"  # auto (ddp when devices * num_nodes > 1), ddp, ddp_spawn
    num_threads: Optional[int] = None  # CPU threads for torch; None: torch's default
    progress_bar: bool = True
    max_bad_steps: int = 10  # non-finite steps skipped in a row before the run stops
    sample_temperature: float = 1.0  # images: temperature of the sample grids
    animate_frames: int = 0  # at the end, flow.gif with this many frames from t0 to T (0: none)
    tolerance_check: str = "final"  # evaluate again 10x tighter: the final score only | every evaluation


@dataclass
class RunConfig:
    seed: int = 0
    name: str = "toflow"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    time: TimeConfig = field(default_factory=TimeConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    regularizers: Dict[str, float] = field(default_factory=dict)  # registered name -> coefficient
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


CHOICES = {  # the trainer's choices (Lightning's); every other choice comes from a registry
    "trainer.accelerator": ("cpu", "gpu", "cuda", "auto"),
    "trainer.strategy": ("auto", "ddp", "ddp_spawn"),
    "trainer.tolerance_check": ("final", "every"),
}


def _all_keys(schema: type, prefix: str = "") -> List[str]:
    keys = []
    for f in fields(schema):
        name = prefix + f.name
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            keys += _all_keys(type(default), name + ".")
        else:
            keys.append(name)
    return keys


def one_line(err: OmegaConfBaseException, schema: type | None = None, what: str = "config") -> str:
    """An OmegaConf error as one line naming the key; an unknown key gets the closest key
    of ``schema`` (default :class:`RunConfig`) suggested."""
    key = getattr(err, "full_key", None) or what
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "not in" in first or "Missing key" in first or "Key '" in first:
        close = difflib.get_close_matches(key, _all_keys(schema or RunConfig), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{key}: unknown key{hint}"
    return f"{key}: {first}"


def _to_config(cfg: DictConfig) -> RunConfig:
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def read_yaml(path: Path, what: str = "config"):
    """The YAML file ``path``, or a one-line :class:`ConfigError` naming the file, line and column."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"{what}: file not found: {path}")
    try:
        return OmegaConf.load(path)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
        raise ConfigError(f"{what}: {where}: not valid YAML ({problem})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what}: cannot read {path} ({err})") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML file (optional), apply dotted ``key=value`` overrides, validate.

    Returns a :class:`RunConfig`. Raises :class:`ConfigError` with a one-line message
    naming the offending key.
    """
    schema = OmegaConf.structured(RunConfig)
    try:
        if path is not None:
            path = Path(path)
            loaded = read_yaml(path)
            if not isinstance(loaded, DictConfig):
                raise ConfigError(f"config: {path} does not hold a mapping of keys")
            schema = OmegaConf.merge(schema, loaded)
            if "name" not in loaded:
                schema.name = path.stem
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"{item}: an override must read key=value")
        if overrides:
            schema = OmegaConf.merge(schema, OmegaConf.from_dotlist(list(overrides)))
        cfg = _to_config(schema)
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err)) from None
    validate(cfg)
    return cfg


def from_dict(values: dict) -> RunConfig:
    """Build a validated config from a nested dict (e.g. a checkpoint's ``hparams``, :func:`upgrade`\ d)."""
    try:
        cfg = _to_config(OmegaConf.merge(OmegaConf.structured(RunConfig), upgrade(values)))
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err)) from None
    validate(cfg)
    return cfg


def to_dict(cfg: RunConfig) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def _numbers(values: dict, prefix: str = ""):
    """(dotted key, value) for every float in a nested dict."""
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, float):
            yield f"{prefix}{key}", value


# what a resumed run may change: how long and how it is watched, not what or how it learns
RESUMABLE = ("trainer.", "optim.", "data.root", "data.batch_size", "data.test_size", "name")


def changed_keys(saved: RunConfig, given: RunConfig) -> list[str]:
    """The keys, with both values, where ``given`` changes what the run ``saved`` learns or how."""
    before, after = dict(_flat(to_dict(saved))), dict(_flat(to_dict(given)))
    keys = sorted(before.keys() | after.keys())
    return [f"{key}: {before.get(key)!r} in the run, {after.get(key)!r} given" for key in keys
            if not key.startswith(RESUMABLE) and before.get(key) != after.get(key)]


def _flat(values: dict, prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict) and value and key != "regularizers":
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _components(cfg: RunConfig) -> None:
    """Build every section's component with its own fields; a refusal is a ValueError naming the key."""
    import torch

    from .data import check_data
    from .models import build_flow
    from .models.end_time import EndTime

    from .trainers.objective import build_objective

    check_data(**asdict(cfg.data))
    cfg.time.grad = EndTime(**asdict(cfg.time)).grad  # the current spelling of a former name
    with torch.device("meta"):  # every constructor runs, nothing is allocated
        build_objective(**asdict(cfg.objective)).check(build_flow(cfg))


def validate(cfg: RunConfig) -> None:
    """The components' own checks (:func:`_components`), then the optimizer's and the trainer's ranges."""
    for key, value in _numbers(to_dict(cfg)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: must be a finite number, got {value}")
    try:
        _components(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}: '{value}' is not one of {', '.join(allowed)}")

    def positive(key: str, allow_none: bool = False, allow_zero: bool = False) -> None:
        value = _get(cfg, key)
        if value is None and allow_none:
            return
        if value is None or value < 0 or (value == 0 and not allow_zero):
            need = "non-negative" if allow_zero else "positive"
            raise ConfigError(f"{key}: must be {need}, got {value}")

    for key in ("optim.lr", "trainer.max_steps", "trainer.eval_every", "trainer.viz_every", "trainer.checkpoint_every",
                "trainer.devices", "trainer.num_nodes", "trainer.sample_temperature"):
        positive(key)
    for key in ("optim.max_grad_norm", "trainer.num_threads"):
        positive(key, allow_none=True)
    positive("optim.weight_decay", allow_zero=True)
    positive("trainer.max_bad_steps", allow_zero=True)
    positive("seed", allow_zero=True)
    processes = cfg.trainer.devices * cfg.trainer.num_nodes
    if cfg.data.batch_size % processes:
        raise ConfigError(f"data.batch_size: {cfg.data.batch_size} (the global batch) does not split evenly over "
                          f"{processes} processes (trainer.devices x trainer.num_nodes)")
    if cfg.trainer.animate_frames == 1 or cfg.trainer.animate_frames < 0:
        raise ConfigError(f"trainer.animate_frames: 0 (none) or at least 2, got {cfg.trainer.animate_frames}")


# Settings a config saved before the schema took each component's own fields named at their
# former defaults, whether the component used them or not: dropped when it does not.
FORMER_DEFAULTS = {"solver": {"sensitivity": "adjoint"}, "model": {"probe": "rademacher", "num_blocks": 1,
                                                                    "logit_alpha": 1.0e-6}}


def upgrade(values: dict) -> dict:
    """``values`` (a saved config) with the former defaults its components do not take removed."""
    from .data import IMAGE_SETS
    from .solvers import solver_settings

    values = {key: dict(v) if isinstance(v, dict) else v for key, v in values.items()}
    solver, model = values.get("solver", {}), values.get("model", {})
    if solver.get("sensitivity") == "adjoint" and "sensitivity" not in solver_settings(solver.get("name", "dopri5")):
        del solver["sensitivity"]
    image = values.get("data", {}).get("name") in IMAGE_SETS
    for key, former in FORMER_DEFAULTS["model"].items():
        unused = key != "probe" and not image or key == "probe" and model.get("trace") == "exact"
        if model.get(key) == former and unused:
            del model[key]
    if "regularizers" in values:
        values["regularizers"] = {k: v for k, v in values["regularizers"].items() if v}
    return values
