"""The run configuration's schema: one dataclass per section, read by OmegaConf, so an unknown
key or a value of the wrong type is refused with its dotted name before anything is built.

A setting left at None takes its component's default. The values a name may take (``solver.name``,
``time.mode``, ``model.trace``, ...) are those of the components' registries, checked when the
config is validated (:mod:`toflow.config.components`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Dict, List, Optional


@dataclass
class DataConfig:
    name: str = "checkerboard"
    root: str = "data"
    batch_size: int = 512
    test_size: int = 5000  # toy: size of the held-out set; images: the first test_size test images
    resize: Optional[int] = None  # images: side length to resize to (e.g. 14 for CPU runs)
    subset: Optional[int] = None  # images: train on the first `subset` training images only
    download: bool = True  # images: let torchvision fetch MNIST, Fashion-MNIST and CIFAR-10 into root


@dataclass
class ModelConfig:
    hidden: List[int] = field(default_factory=lambda: [64, 64, 64])
    activation: str = "tanh"
    trace: str = "auto"  # a registered trace estimator, or auto (exact at low dimension)
    probe: Optional[str] = None  # the Hutchinson probe's distribution
    num_blocks: Optional[int] = None  # images: CNF blocks per place in each scale (default 1, FFJORD's)
    logit_alpha: Optional[float] = None  # images: alpha of the logit transform (default 1e-6; RNODE on CIFAR-10: 0.05)
    scales: Optional[int] = None  # images: scales of the multiscale flow (default: halvings while the side >= 4)
    divergence: str = "auto"  # how the trace is taken: tangents where the field has them, else vjp
    compile: Optional[bool] = None  # torch.compile the dynamics; null: for runs of 100 steps or more


@dataclass
class TimeConfig:
    mode: str = "toflow"  # a registered time mode
    t0: float = 0.0
    T0: float = 0.5
    lr: float = 1.0e-2
    alpha: float = 0.1
    eps: float = 0.1
    grad: str = "after_step"  # where TO-FLOW's dL/dT comes from


@dataclass
class SolverConfig:
    name: str = "dopri5"
    sensitivity: Optional[str] = None  # the gradient method, for the solvers that offer a choice
    memory_budget_mb: Optional[float] = None  # sensitivity auto: memory a solve's gradient may hold (default 2048)
    atol: float = 1.0e-5
    rtol: float = 1.0e-5
    test_atol: Optional[float] = None  # evaluation tolerances; None: the training ones
    test_rtol: Optional[float] = None
    control: Optional[str] = None  # what training's error norm sees
    max_steps: int = 10000
    step_size: Optional[float] = None  # fixed-step solvers: the largest step


@dataclass
class ObjectiveConfig:
    name: str = "likelihood"  # a registered objective
    sigma: Optional[float] = None  # flow matching: noise added to the path (default 0)
    coupling: Optional[str] = None  # flow matching: a registered coupling of its pairs


@dataclass
class WarmStartConfig:
    steps: int = 0  # flow-matching steps before the objective's own (0: none)
    coupling: Optional[str] = None  # flow matching's coupling of its pairs in those steps
    sigma: Optional[float] = None  # flow matching's noise on the path in those steps


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
    init_from: Optional[str] = None  # start from the flow (weights and end times) of this run or checkpoint
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
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


CHOICES = {  # the trainer's choices (Lightning's); every other choice comes from a registry
    "trainer.accelerator": ("cpu", "gpu", "cuda", "auto"),
    "trainer.strategy": ("auto", "ddp", "ddp_spawn"),
    "trainer.tolerance_check": ("final", "every"),
}


def all_keys(schema: type, prefix: str = "") -> List[str]:
    keys = []
    for f in fields(schema):
        name = prefix + f.name
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            keys += all_keys(type(default), name + ".")
        else:
            keys.append(name)
    return keys


def field_type(schema: type, key: str):
    """The declared type of the dotted ``key`` in ``schema`` (a dataclass), or None if it has none."""
    current: object = schema
    for part in key.replace("[", ".[").split("."):
        origin, args = typing.get_origin(current), typing.get_args(current)
        if origin in (dict, Dict) or origin in (list, List) and part.startswith("["):
            current = args[-1]  # an entry of a section of names, an element of a list
        elif is_dataclass(current) and part in typing.get_type_hints(current):
            current = typing.get_type_hints(current)[part]
        else:
            return None
    return current


def describe_type(kind) -> str:
    """What a value of the declared type ``kind`` looks like, in words."""
    if is_dataclass(kind):
        return "a section of keys"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union and type(None) in args:
        inner = [a for a in args if a is not type(None)][0]
        return f"{describe_type(inner)} or null"
    if origin in (list, List):
        return f"a list of {describe_type(args[0]).removeprefix('a ').removeprefix('an ')}s, e.g. [64,64]"
    if origin in (dict, Dict):
        return "a section of name: number entries, e.g. {kinetic: 0.01}"
    words = {int: "a whole number", float: "a number", bool: "true or false", str: "a name"}
    return words.get(kind, getattr(kind, "__name__", str(kind)))
