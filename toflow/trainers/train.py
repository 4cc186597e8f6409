"""``train(cfg)``: the whole run the CLI does, from a config to a summary."""

from __future__ import annotations

import json
import logging
import os
import signal
import warnings
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ..config import RunConfig, changed_keys, from_dict, to_dict, to_yaml
from ..data import DataSource
from ..errors import ConfigError, Interrupted
from ..provenance import RUN_DIR_ENV, last_checkpoint, machine, provenance, run_dir_of
from .animation import animate
from .callbacks import DensityPlots, SampleGrids, save_grid
from .checkpoints import checkpoint_callbacks
from .module import FlowModule
from .plots import figure_2d
from .reliability import AtomicCheckpointIO, StopOnSignal, load_checkpoint, run_directory, write_text_atomic

# Lightning notices that say nothing about this run
QUIET = (".*manual optimization and every_n_train_steps.*", ".*`weights_only` was not set.*",
         ".*isinstance\\(treespec, LeafSpec\\).*", ".*does not have many workers.*",
         ".*litlogger.*", ".*exists and is not empty.*")

HPARAM_METRICS = ("test_nll", "test_bpd", "nfe_forward_mean", "nfe_backward_mean", "time_per_iter_s", "wall_s",
                  "sample_nfe")
SUMMARY_KEYS = ("test_nll", "nfe_forward_mean", "nfe_backward_mean", "time_per_iter_s", "wall_s", "steps",
                "end_times", "params", "sample_nfe")


def _checkpoint_path(run_dir: Path, cfg: RunConfig) -> Path | None:
    last = last_checkpoint(run_dir)
    if cfg.trainer.resume:
        if not last.is_file():
            raise ConfigError(f"trainer.resume: no checkpoint to resume at {last}")
        checkpoint = load_checkpoint(last)  # refuses a damaged file before anything starts
        changed = changed_keys(from_dict(checkpoint["hyper_parameters"]["config"]), cfg)  # the checkpoint's own
        if changed:
            raise ConfigError(f"trainer.resume: {run_dir} was trained with another model or method; "
                              + "; ".join(changed))
        return last
    if last.exists():
        raise ConfigError(f"trainer.log_dir: {run_dir} already holds a run; pass trainer.resume=true to "
                          "continue it or choose another trainer.log_dir")
    return None


LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")


@contextmanager
def quiet(verbose: bool = False):
    """Within: Lightning's banners, tips and notices that say nothing about the run held back
    (its loggers at WARNING, :data:`QUIET`'s warnings ignored), unless ``verbose``."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for message in QUIET:
            warnings.filterwarnings("ignore", message=message)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def train(cfg: RunConfig, callbacks: list | None = None, source: DataSource | None = None,
          verbose: bool = False) -> dict:
    """Train the flow ``cfg`` describes, leaving a run directory.

    The run directory holds TensorBoard event files, ``checkpoints/last.ckpt`` and
    ``best.ckpt``, ``config.yaml``, ``plots/`` and ``summary.json``. With several
    processes (``trainer.devices``, ``trainer.num_nodes``) every process trains and only
    the first writes.

    Args:
        cfg: The run's config (:func:`~toflow.load_config`).
        callbacks: Extra Lightning callbacks.
        source: Data to train on instead of the config's data set.
        verbose: Let Lightning's own banners, tips and notices through.

    Returns:
        The summary (also ``summary.json``); empty on a data-parallel process other than the first.

    Example:
        >>> summary = train(load_config("configs/toy_checkerboard_quick.yaml", ["trainer.max_steps=100"]))
        >>> summary["test_nll"], summary["log_dir"]
    """
    with quiet(verbose):
        return _train(cfg, callbacks, source)


def _train(cfg: RunConfig, callbacks: list | None, source: DataSource | None) -> dict:
    with run_directory(run_dir_of(cfg.trainer.log_dir, cfg.name)) as run_dir:
        ckpt_path = _checkpoint_path(run_dir, cfg)
        try:
            write_text_atomic(run_dir / "config.yaml", to_yaml(cfg))
        except OSError as err:
            raise ConfigError(f"trainer.log_dir: cannot write the run directory {run_dir} "
                              f"({err.strerror or err})") from None
        return _run(cfg, run_dir, ckpt_path, callbacks, source)


def _run(cfg: RunConfig, run_dir: Path, ckpt_path: Path | None, callbacks: list | None,
         source: DataSource | None) -> dict:
    module = _module(cfg, source)
    if cfg.trainer.init_from and ckpt_path is None:  # a resumed run has its weights in its own checkpoint
        print(f"init_from: the flow of {module.start_from(cfg.trainer.init_from)}", flush=True)
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
        *checkpoint_callbacks(checkpoints, t.checkpoint_every),
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
        try:
            trainer.fit(module, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
        except SIGTERMException:  # Lightning stops between two steps on SIGTERM
            trainer.save_checkpoint(last, weights_only=False)  # the whole state, to resume from
            raise Interrupted(signal.SIGTERM, trainer.global_step, last) from None
        trainer.save_checkpoint(last, weights_only=False)  # the whole state, to resume from
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
        animate(flow, run_dir / "flow.gif", module.cfg.trainer.animate_frames, f"{module.cfg.name}, step {step}")
    if module.source.is_image:
        save_grid(flow, run_dir / "samples.png", module.cfg.trainer.sample_temperature, trainer.logger, step)
        return
    fig = figure_2d(flow, module.test_data, title=f"{module.cfg.name}: test NLL {scores['test_nll']:.3f} nats, "
                                                  f"step {step}")
    fig.savefig(run_dir / "density.png", dpi=100)
    board.add_figure("density", fig, step)
    plt.close(fig)


def _device(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine().split(",")[0]
    return f"{device.type}: {name}"


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
        **({"nfe_per_objective_step": totals["objective_nfe"] / max(totals["objective_steps"], 1)}
           if module.warm_start is not None else {}),
        "log_dir": str(run_dir),
        "provenance": provenance(to_yaml(cfg), _device(module.device), torch.get_num_threads()),
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


__all__ = ["SUMMARY_KEYS", "train"]
