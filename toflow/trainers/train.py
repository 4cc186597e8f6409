"""``train(cfg)``: the whole run the CLI does, from a config to a summary."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import warnings
from datetime import datetime
from pathlib import Path

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ..config import ConfigError, RunConfig, changed_keys, from_dict, read_yaml, to_dict, to_yaml
from .callbacks import DensityPlots, SampleGrids, save_grid
from ..data import DataSource
from .module import FlowModule
from .reliability import AtomicCheckpointIO, Interrupted, StopOnSignal, load_checkpoint, write_text_atomic
from .plots import figure_2d

# Lightning notices that say nothing about this run
QUIET = (".*manual optimization and every_n_train_steps.*", ".*`weights_only` was not set.*",
         ".*isinstance\\(treespec, LeafSpec\\).*", ".*does not have many workers.*",
         ".*litlogger.*")

HPARAM_METRICS = ("test_nll", "test_bpd", "nfe_forward_mean", "nfe_backward_mean", "time_per_iter_s", "wall_s",
                  "sample_nfe")
SUMMARY_KEYS = ("test_nll", "nfe_forward_mean", "nfe_backward_mean", "time_per_iter_s", "wall_s", "steps",
                "end_times", "params", "sample_nfe")


RUN_DIR_ENV = "TOFLOW_RUN_DIR"  # hands an unnamed run's directory to the processes DDP launches


def run_dir_of(cfg: RunConfig) -> Path:
    """``trainer.log_dir``, or ``runs/<config name>-<timestamp>`` when it is not set."""
    if cfg.trainer.log_dir:
        return Path(cfg.trainer.log_dir)
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    return Path("runs") / f"{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}"


def last_checkpoint(run_dir: str | Path) -> Path:
    """Where a run keeps its latest checkpoint (the one ``trainer.resume`` continues from)."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def finished_summary(run_dir: str | Path) -> dict | None:
    """The summary of the run in ``run_dir`` if it finished, else None."""
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def saved_config(run_dir: Path) -> RunConfig:
    """The config a run was trained with (its ``config.yaml``)."""
    from omegaconf import OmegaConf

    return from_dict(OmegaConf.to_container(read_yaml(Path(run_dir) / "config.yaml", "trainer.resume")))


def _checkpoint_path(run_dir: Path, cfg: RunConfig) -> Path | None:
    last = last_checkpoint(run_dir)
    if cfg.trainer.resume:
        if not last.is_file():
            raise ConfigError(f"trainer.resume: no checkpoint to resume at {last}")
        load_checkpoint(last)  # refuse a damaged file before anything starts
        if (run_dir / "config.yaml").is_file():
            changed = changed_keys(saved_config(run_dir), cfg)
            if changed:
                raise ConfigError(f"trainer.resume: {run_dir} was trained with another model or method; "
                                  + "; ".join(changed))
        return last
    if last.exists():
        raise ConfigError(f"trainer.log_dir: {run_dir} already holds a run; pass trainer.resume=true to "
                          "continue it or choose another trainer.log_dir")
    return None


def train(cfg: RunConfig, callbacks: list | None = None, source: DataSource | None = None) -> dict:
    """Train the flow ``cfg`` describes; leave a run directory; return its summary.

    The run directory holds TensorBoard event files, ``checkpoints/last.ckpt`` and
    ``best.ckpt``, ``config.yaml``, ``plots/`` and ``summary.json``. With several
    processes (``trainer.devices``, ``trainer.num_nodes``) every process trains and only
    the first writes; the others return an empty summary. ``callbacks``: extra Lightning
    callbacks; ``source``: data to train on instead of the config's data set.
    """
    run_dir = run_dir_of(cfg)
    ckpt_path = _checkpoint_path(run_dir, cfg)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", to_yaml(cfg))
    except OSError as err:
        raise ConfigError(f"trainer.log_dir: cannot write the run directory {run_dir} ({err.strerror or err})") \
            from None
    module = _module(cfg, source)
    trainer = _trainer(cfg, run_dir, module, callbacks)
    _fit(trainer, module, ckpt_path, run_dir, distributed=cfg.trainer.devices * cfg.trainer.num_nodes > 1)
    if not trainer.is_global_zero:
        return {}
    scores = {**module.test_scores(), "sample_nfe": module.sample_nfe()}
    _final_pictures(module, trainer, scores, run_dir)
    summary = _summary(cfg, module, trainer.global_step, scores, run_dir)
    trainer.logger.log_hyperparams(flat_config(cfg), {f"hparams/{key}": summary[key] for key in HPARAM_METRICS
                                                      if key in summary})
    trainer.logger.experiment.flush()
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _module(cfg: RunConfig, source: DataSource | None) -> FlowModule:
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    pl.seed_everything(cfg.seed, verbose=False)
    module = FlowModule(cfg, source)
    blocks = module.flow.blocks()
    print(f"data: {module.source.name}, {getattr(module.source, 'origin', '') or 'given'}", flush=True)
    print(f"{cfg.name}: {sum(p.numel() for p in module.flow.parameters()):,} parameters in {len(blocks)} CNF "
          f"block{'s' if len(blocks) > 1 else ''}; divergence by {blocks[0].dynamics.path}", flush=True)
    return module


def _trainer(cfg: RunConfig, run_dir: Path, module: FlowModule, callbacks: list | None) -> pl.Trainer:
    t = cfg.trainer
    checkpoints = run_dir / "checkpoints"
    callbacks = list(callbacks or []) + [
        ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="test/nll", mode="min", save_top_k=1,
                        auto_insert_metric_name=False, enable_version_counter=False),
        ModelCheckpoint(dirpath=checkpoints, filename="last", every_n_train_steps=t.checkpoint_every,
                        save_top_k=1, enable_version_counter=False),
        (SampleGrids(t.viz_every, run_dir / "plots", t.sample_temperature) if module.source.is_image
         else DensityPlots(t.viz_every, run_dir / "plots", module.test_data)),
        StopOnSignal(last_checkpoint(run_dir)),
    ]
    if t.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    return pl.Trainer(
        max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=t.strategy, plugins=[AtomicCheckpointIO()], logger=TensorBoardLogger(
            save_dir=str(run_dir), name="", version="", default_hp_metric=False),
        callbacks=callbacks, val_check_interval=t.eval_every, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, inference_mode=False, enable_progress_bar=t.progress_bar,
        enable_model_summary=False, log_every_n_steps=1, default_root_dir=str(run_dir),
    )


def _fit(trainer: pl.Trainer, module: FlowModule, ckpt_path: Path | None, run_dir: Path, distributed: bool) -> None:
    """Lightning's fit, quiet, saving ``last.ckpt`` at the end and on SIGTERM."""
    last = last_checkpoint(run_dir)
    if distributed:
        os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        with warnings.catch_warnings():
            for message in QUIET:
                warnings.filterwarnings("ignore", message=message)
            try:
                trainer.fit(module, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
            except SIGTERMException:  # Lightning stops between two steps on SIGTERM
                trainer.save_checkpoint(last)
                raise Interrupted(signal.SIGTERM, trainer.global_step, last) from None
        trainer.save_checkpoint(last)
    finally:
        if distributed:
            os.environ.pop(RUN_DIR_ENV, None)


def _final_pictures(module: FlowModule, trainer: pl.Trainer, scores: dict, run_dir: Path) -> None:
    """``samples.png`` (images) or ``density.png`` (2-D), also to TensorBoard, and the test scores there."""
    flow, step, board = module.flow, trainer.global_step, trainer.logger.experiment
    for key, value in scores.items():
        if isinstance(value, (int, float)):
            board.add_scalar(key.replace("_", "/", 1), value, step)
    if module.cfg.trainer.animate_frames:
        from .animate import animate

        animate(flow, run_dir / "flow.gif", module.cfg.trainer.animate_frames, f"{module.cfg.name}, step {step}")
    if module.source.is_image:
        save_grid(flow, run_dir / "samples.png", module.cfg.trainer.sample_temperature, trainer.logger, step)
        return
    fig = figure_2d(flow, module.test_data, title=f"{module.cfg.name}: test NLL {scores['test_nll']:.3f} nats, "
                                                  f"step {step}")
    fig.savefig(run_dir / "density.png", dpi=100)
    board.add_figure("density", fig, step)
    plt.close(fig)


def provenance(cfg: RunConfig, device: torch.device) -> dict:
    """What it takes to run it again: the command, the config's hash, the code and its versions, the machine."""
    import shlex
    import subprocess
    import sys

    import torchdyn

    from .. import __version__
    from ..study import machine

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine().split(",")[0]
    return {"command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "config_sha256": hashlib.sha256(to_yaml(cfg).encode()).hexdigest(), "toflow": __version__,
            "git_commit": commit, "torch": torch.__version__, "torchdyn": torchdyn.__version__,
            "lightning": pl.__version__, "device": f"{device.type}: {name}", "threads": torch.get_num_threads()}


def _summary(cfg: RunConfig, module: FlowModule, step: int, scores: dict, run_dir: Path) -> dict:
    totals, flow = module.totals, module.flow
    steps = max(totals["steps"], 1)
    return {
        "name": cfg.name,
        "mode": cfg.time.mode,
        "solver": cfg.solver.name,
        "objective": cfg.objective.name,
        **scores,
        "nfe_forward_mean": totals["nfe_forward"] / steps,
        "nfe_backward_mean": totals["nfe_backward"] / steps,
        "time_per_iter_s": totals["step_time"] / steps,
        "wall_s": module.wall_s(),
        "steps": int(step),
        "end_times": [float(et.T.detach()) for et in flow.end_times()],  # a drawing mode's T stays T0
        "params": sum(p.numel() for p in flow.parameters()),
        "bad_steps": int(totals["bad_steps"]),
        "log_dir": str(run_dir),
        "provenance": provenance(cfg, module.device),
    }


def flat_config(cfg: RunConfig) -> dict:
    """The config as dotted keys with TensorBoard-friendly values (lists as text)."""
    flat = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}{key}.", inner)
        else:
            flat[prefix[:-1]] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk("", to_dict(cfg))
    return flat


__all__ = ["train", "SUMMARY_KEYS", "finished_summary", "last_checkpoint", "run_dir_of"]
