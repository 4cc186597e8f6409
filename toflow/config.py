"""Typed run configuration: schema, YAML loading, ``key=value`` overrides, validation.

The schema is a tree of dataclasses read by OmegaConf, so an unknown key or a value of
the wrong type is refused with its dotted name. Checks that go beyond types (ranges,
choices, the clip interval of eq. 17) live in :func:`validate`. Every refusal is a
:class:`ConfigError` whose message is one line that names the key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

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
    probe: str = "rademacher"  # Hutchinson probe: rademacher | gaussian
    num_blocks: int = 1  # images: CNF blocks per place in each scale (FFJORD: 1)
    logit_alpha: float = 1.0e-6  # images: alpha of the logit transform (RNODE on CIFAR-10: 0.05)


@dataclass
class TimeConfig:
    mode: str = "toflow"  # fixed | joint | steer | toflow
    t0: float = 0.0
    T0: float = 0.5
    lr: float = 1.0e-2
    alpha: float = 0.1
    eps: float = 0.1
    grad: str = "alternating"  # alternating | joint


@dataclass
class SolverConfig:
    name: str = "dopri5"
    sensitivity: str = "adjoint"  # adjoint | autograd
    atol: float = 1.0e-5
    rtol: float = 1.0e-5
    test_atol: Optional[float] = None  # evaluation tolerances; None: the training ones
    test_rtol: Optional[float] = None
    max_steps: int = 10000
    step_size: Optional[float] = None  # fixed-step solvers (rk4, euler): the largest step


@dataclass
class RegularizersConfig:
    kinetic: float = 0.0  # coefficient of int 0.5 ||f||^2 / D dt
    jacobian_frobenius: float = 0.0  # coefficient of int ||df/dz||_F^2 / D dt


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


@dataclass
class RunConfig:
    seed: int = 0
    name: str = "toflow"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    time: TimeConfig = field(default_factory=TimeConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    regularizers: RegularizersConfig = field(default_factory=RegularizersConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


CHOICES = {
    "data.name": ("swissroll", "circles", "rings", "moons", "8gaussians", "pinwheel", "2spirals", "checkerboard",
                  "mnist", "fashion_mnist", "cifar10", "digits"),
    "model.activation": ("tanh", "softplus", "elu", "relu", "swish"),
    "model.trace": ("auto", "exact", "hutchinson"),
    "model.probe": ("rademacher", "gaussian"),
    "time.mode": ("fixed", "joint", "steer", "toflow"),
    "time.grad": ("alternating", "joint"),
    "solver.name": ("dopri5", "aca", "mali", "rk4", "euler"),
    "solver.sensitivity": ("adjoint", "autograd"),
    "trainer.accelerator": ("cpu", "gpu", "cuda", "auto"),
    "trainer.strategy": ("auto", "ddp", "ddp_spawn"),
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


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML file (optional), apply dotted ``key=value`` overrides, validate.

    Returns a :class:`RunConfig`. Raises :class:`ConfigError` with a one-line message
    naming the offending key.
    """
    schema = OmegaConf.structured(RunConfig)
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config: file not found: {path}")
            loaded = OmegaConf.load(path)
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
    """Build a validated config from a nested dict (e.g. a checkpoint's ``hparams``)."""
    try:
        cfg = _to_config(OmegaConf.merge(OmegaConf.structured(RunConfig), values))
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err)) from None
    validate(cfg)
    return cfg


def to_dict(cfg: RunConfig) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Range and choice checks that types alone cannot express."""
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

    for key in ("data.batch_size", "data.test_size", "solver.atol", "solver.rtol", "solver.max_steps",
                "time.lr", "optim.lr", "trainer.max_steps", "trainer.eval_every", "trainer.viz_every",
                "trainer.checkpoint_every"):
        positive(key)
    for key in ("solver.test_atol", "solver.test_rtol", "solver.step_size", "optim.max_grad_norm",
                "trainer.num_threads", "data.resize", "data.subset"):
        positive(key, allow_none=True)
    for key in ("time.alpha", "time.eps", "optim.weight_decay", "regularizers.kinetic",
                "regularizers.jacobian_frobenius"):
        positive(key, allow_zero=True)
    positive("model.num_blocks")
    positive("trainer.devices")
    positive("trainer.num_nodes")
    positive("trainer.sample_temperature")
    if not 0 <= cfg.model.logit_alpha < 0.5:
        raise ConfigError(f"model.logit_alpha: must lie in [0, 0.5), got {cfg.model.logit_alpha}")
    if cfg.data.resize is not None and cfg.data.resize % 2:
        raise ConfigError(f"data.resize: must be even (the multiscale flow squeezes by 2), got {cfg.data.resize}")
    if not cfg.model.hidden or any(h <= 0 for h in cfg.model.hidden):
        raise ConfigError(f"model.hidden: must be a non-empty list of positive widths, got {cfg.model.hidden}")
    if cfg.solver.name in ("rk4", "euler") and cfg.solver.step_size is None:
        raise ConfigError(f"solver.step_size: {cfg.solver.name} is a fixed-step solver and needs one (e.g. 0.25)")
    t = cfg.time
    if t.T0 <= t.t0:
        raise ConfigError(f"time.T0: must exceed time.t0 = {t.t0}, got {t.T0}")
    if t.eps >= t.T0 - t.t0:
        raise ConfigError(f"time.eps: must be below T0 - t0 = {t.T0 - t.t0:g} so the clip interval "
                          f"[t0+eps, 2*T0-t0-eps] is not empty, got {t.eps}")
