"""The Lightning module: one training step is one round of coordinate descent.

1. The objective's loss (``objective.name``): the likelihood solves the flow ODE,
   L = -mean log p(x) (eq. 4 / 10) plus the spatial regularisers; flow matching regresses the
   field on straight paths without a solve. Weights step on grad_theta L.
2. In ``toflow`` mode, end-time step on dL/dT + alpha sign(T), then clip (sec. 3.1-3.2),
   by :func:`~toflow.trainers.temporal_step`.

Optimisation is manual: the weights' optimizer (Adam, with T in it for ``joint``) and
the end times' own optimizer (Adam) are both configured here so Lightning saves and
restores their states. The T step calls the wrapped optimizer directly, so that a
training step advances Lightning's ``global_step`` by exactly one.
"""

from __future__ import annotations

import copy
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ..config import RunConfig, changed_keys, from_dict, to_dict
from ..config.components import build_flow, warm_start_objective
from ..data import DataSource, bits_per_dim, make_source
from ..errors import ConfigError, DataError, TrainingFailed
from ..objectives import OBJECTIVES
from ..solvers import NonFiniteError
from ..solvers.auto import footprint_of
from .checkpoints import find_checkpoint
from .evaluation import EVAL_SEED, checked_scores, evaluating, mean_nll, tightened
from .load import flow_state
from .reliability import load_checkpoint
from .temporal import TimeStep, temporal_step, time_optimizer


class NonFiniteTraining(TrainingFailed):
    """Too many training steps in a row were skipped for non-finite values."""


class FlowModule(pl.LightningModule):
    """Trains ``build_flow(cfg)`` with the config's objective on ``source`` (default: the config's data set).

    The likelihood loss is the NLL in nats per sample for 2-D data and in bits per dimension
    for images (eq. 18, as FFJORD), plus the spatial regularisers; flow matching's is its
    regression error. Evaluation is always the test NLL (and bits/dim) of the same flow.

    Args:
        cfg: The run's config.
        source: Data to train on instead of the config's data set.
    """

    def __init__(self, cfg: RunConfig, source: DataSource | None = None):
        super().__init__()
        self._wall_origin = time.perf_counter()  # moved back by the wall time before a resume
        self.cfg = cfg
        self.save_hyperparameters({"config": to_dict(cfg)}, logger=False)
        d = cfg.data
        self.source = source or make_source(d.name, cfg.seed, d.root, d.test_size, d.resize, d.subset, d.download)
        self.flow = build_flow(cfg)
        self.objective = OBJECTIVES.build(**asdict(cfg.objective))
        self.warm_start = warm_start_objective(cfg)  # flow matching for the first warm_start.steps, or None
        self.automatic_optimization = False
        self.batches_done = 0
        # running totals over the whole run (kept across resumes)
        self.totals = {"steps": 0, "nfe_forward": 0, "nfe_backward": 0, "step_time": 0.0, "bad_steps": 0,
                       "wall_s": 0.0, "objective_steps": 0, "objective_nfe": 0.0}
        self.bad_in_a_row = 0
        self.test_data = self.source.test
        if not torch.isfinite(self.test_data).all():
            raise DataError(f"data.name={self.source.name}: the test set holds non-finite values")
        # end times stepped after the solve take no part in its backward pass: DDP must not wait for them
        ignored = [name for name, p in self.named_parameters()
                   if name.endswith("end_time.T") and p.requires_grad and not self._end_time_of(name).grad_from_solve]
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, ignored)
        self._validation = ExitStack()
        self._resumed_rng: torch.Tensor | None = None
        self._val_sum, self._val_tight_sum, self._val_count = 0.0, 0.0, 0

    def start_from(self, target: str) -> Path:
        """Take the flow of another run (``trainer.init_from``): its weights and end times, from its
        ``best.ckpt`` (else ``last.ckpt``) or the checkpoint file named; the optimizers and the step
        count start afresh. A flow of another shape is refused in one line naming the keys that differ.

        Args:
            target: A run directory or a ``.ckpt`` file.

        Returns:
            The checkpoint read.
        """
        path = find_checkpoint(target)
        checkpoint = load_checkpoint(path)
        try:
            self.flow.load_state_dict(flow_state(checkpoint))
        except RuntimeError:
            source = from_dict(checkpoint["hyper_parameters"]["config"])
            differ = [change for change in changed_keys(source, self.cfg, allowed=())
                      if change.startswith(("data.name", "data.resize", "model."))]
            what = "; ".join(differ) if differ else "its weights do not fit this config's flow"
            raise ConfigError(f"trainer.init_from: {path} holds a flow of another shape; {what}") from None
        return path

    def _end_time_of(self, parameter_name: str):
        return self.get_submodule(parameter_name.rsplit(".", 1)[0])

    def reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over data-parallel processes (the tensor itself in a single process)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return tensor
        return self.trainer.strategy.reduce(tensor, reduce_op="mean")

    # ---------------------------------------------------------------- optimizers
    def weight_parameters(self) -> list:
        end_time_params = {id(et.T) for et in self.flow.end_times()}
        return [p for p in self.flow.parameters() if id(p) not in end_time_params and p.requires_grad]

    def joint_end_times(self) -> list:
        """The end-time parameters the weights' optimizer trains (``time.mode: joint``)."""
        return [et.T for et in self.flow.end_times() if et.trained_by_weights_optimizer]

    def configure_optimizers(self):
        o = self.cfg.optim
        groups = [{"params": self.weight_parameters(), "weight_decay": o.weight_decay}]
        if self.joint_end_times():
            groups.append({"params": self.joint_end_times(), "weight_decay": 0.0})
        optimizers = [torch.optim.Adam(groups, lr=o.lr), time_optimizer(self.flow)]
        return [opt for opt in optimizers if opt is not None]

    def _optimizers(self) -> tuple:
        """The wrapped weights' optimizer, and the end times' optimizer itself (or None)."""
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        return optimizers, (optimizers[1].optimizer if len(optimizers) > 1 else None)

    # ---------------------------------------------------------------- data
    def train_dataloader(self):
        world, rank = self.trainer.world_size, self.trainer.global_rank
        if self.cfg.data.batch_size % world:
            raise ValueError(f"data.batch_size: {self.cfg.data.batch_size} (the global batch) does not split "
                             f"evenly over {world} processes")
        batches = self.source.train_batches(self.cfg.data.batch_size, self.batches_done, rank, world)
        return DataLoader(batches, batch_size=None)

    @property
    def eval_batch_size(self) -> int:
        return 200 if self.source.is_image else 1000

    def val_dataloader(self):
        return DataLoader(self.test_data, batch_size=self.eval_batch_size)

    def bits_per_dim(self, nll_nats):
        return bits_per_dim(nll_nats, self.source.dim, self.source.levels)

    def scores(self, nll: float) -> dict:
        """``test_nll`` (nats), and ``test_bpd`` for images."""
        return {"test_nll": nll, **({"test_bpd": float(self.bits_per_dim(nll))} if self.source.is_image else {})}

    @property
    def metric(self) -> str:
        """The score a run is judged by: ``test_bpd`` for images, ``test_nll`` otherwise."""
        return "test_bpd" if self.source.is_image else "test_nll"

    def test_scores(self) -> dict:
        """:meth:`scores` over the whole test set at the evaluation tolerances, checked at tolerances
        10x tighter (:func:`~toflow.trainers.evaluation.checked_scores`)."""
        data = self.test_data.to(self.flow.end_times()[0].T)
        scores = self.scores(mean_nll(self.flow, data, self.eval_batch_size))
        with tightened(self.flow):
            tighter = self.scores(mean_nll(self.flow, data, self.eval_batch_size))
        return checked_scores(scores, tighter, self.flow.blocks()[0].solver.evaluation_tolerances, self.metric)

    # ---------------------------------------------------------------- training
    def training_step(self, x: torch.Tensor, batch_idx: int):
        """Coordinate descent: the weights step, then the T step; a non-finite batch, loss,
        gradient or T gradient skips the whole step (weights, T and optimizers unchanged)."""
        started = time.perf_counter()
        if self._resumed_rng is not None:
            torch.set_rng_state(self._resumed_rng)
            self._resumed_rng = None
            # Lightning logs at its count of batches that stepped, which a checkpoint saved after a
            # step (at the end of fit, on a signal) restores one ahead: log where the curves left off
            self.trainer.fit_loop.epoch_loop._batches_that_stepped = self.trainer.global_step
        optimizers, time_opt = self._optimizers()
        warming = self.warming_up
        if self.warm_start is not None and self.trainer.global_step == self.cfg.warm_start.steps:
            optimizers[0].optimizer.state.clear()  # the switch: Adam's moments belong to the other loss
        time_opt = None if warming else time_opt  # T stays at T0 until the objective's own steps
        self.flow.reset_nfe()
        self.batches_done += 1
        loss, parts, problem = self._loss(x, self.warm_start if warming else self.objective)
        if self._any_process(problem is not None):
            return self._skip(problem or "another process's step", optimizers)
        grad_norm, problem = self._backward(loss, optimizers[0])
        if problem:
            return self._skip(problem, optimizers)
        undo = self._snapshot(self.weight_parameters(), optimizers[0]) if time_opt is not None else None
        optimizers[0].step()
        step = temporal_step(self.flow, time_opt, self.reduce_mean)
        if not step.finite:
            undo()
            return self._skip("T gradient", optimizers)
        self.bad_in_a_row = 0
        self._log_step(loss, parts, grad_norm, step, time.perf_counter() - started, warming)
        return loss.detach()

    @property
    def warming_up(self) -> bool:
        """Whether this step is one of the warm start's (flow matching before the objective's own)."""
        return self.warm_start is not None and self.trainer.global_step < self.cfg.warm_start.steps

    def _loss(self, x: torch.Tensor, objective) -> tuple:
        """``(loss, parts, None)``, or ``(None, None, what)`` when the batch, the state or the loss is not finite."""
        if not torch.isfinite(x).all():
            return None, None, "batch"
        try:
            loss, parts = objective(self.flow, x, self.source.dim, self.source.levels)
        except NonFiniteError:
            return None, None, "state"
        return loss, parts, (None if torch.isfinite(loss) else "loss")

    def _backward(self, loss: torch.Tensor, weights_opt) -> tuple:
        """Gradients of the weights (and of jointly trained end times), clipped if asked:
        ``(weights' gradient norm, None)``, or ``(norm, what)`` when one is not finite."""
        weights_opt.zero_grad()
        self.manual_backward(loss)
        weights = self.weight_parameters()
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in weights if p.grad is not None])
        if not torch.isfinite(grad_norm):
            return grad_norm, "gradient"
        if not all(torch.isfinite(T.grad).all() for T in self.joint_end_times() if T.grad is not None):
            return grad_norm, "T gradient"
        if self.cfg.optim.max_grad_norm:
            torch.nn.utils.clip_grads_with_norm_(weights, self.cfg.optim.max_grad_norm, grad_norm)
        return grad_norm, None

    def _log_step(self, loss, parts: dict, grad_norm, step: TimeStep, step_time: float, warming: bool) -> None:
        nfe = self.flow.nfe
        # NFE differ between processes (each solves its own shard): keep their mean
        counts = torch.tensor([nfe["forward"], nfe["backward"], step_time], dtype=torch.float64, device=loss.device)
        nfe_forward, nfe_backward, step_time = self.reduce_mean(counts).tolist()
        for key, value in (("steps", 1), ("nfe_forward", nfe_forward), ("nfe_backward", nfe_backward),
                           ("step_time", step_time)):
            self.totals[key] += value
        if not warming:  # the objective's own steps: after a warm start's switch
            self.totals["objective_steps"] += 1
            self.totals["objective_nfe"] += nfe_forward + nfe_backward
        log = {"train/loss": loss.detach(), "nfe/forward": nfe_forward, "nfe/backward": nfe_backward,
               "train/grad_norm": grad_norm.detach(), "time/step_s": step_time}
        self._log_parts(parts)
        temporal = [et.regularization().detach() for et in self.flow.end_times() if et.has_own_optimizer]
        if temporal:
            log["reg/temporal"] = sum(temporal)
        log.update({f"T/block{index}": float(et.T.detach()) for index, et in enumerate(self.flow.end_times())})
        log.update({f"T_grad/block{index}": grad for index, grad in step.items()})
        self.log_dict(log, on_step=True, on_epoch=False, sync_dist=self.trainer.world_size > 1)
        self.log("T", float(self.flow.end_times()[0].T.detach()), prog_bar=True, logger=False)
        self.log("nfe", nfe_forward + nfe_backward, prog_bar=True, logger=False)
        self.log("loss", loss.detach(), prog_bar=True, logger=False)

    def _log_parts(self, parts: dict) -> None:
        """The objective's parts (``train/nll``, ``train/fm_mse``, ``reg/<name>``...), written for this
        step only: Lightning would log a part again at every later step, and a warm start's parts
        change at its switch."""
        if not parts or self._trainer is None:
            return
        regularizers = {r.name for r in self.flow.regularizers}
        values = self.reduce_mean(torch.stack([value.detach().double() for value in parts.values()])).tolist()
        if self.trainer.is_global_zero and self.logger is not None:
            step = self.trainer.fit_loop.epoch_loop._batches_that_stepped  # where Lightning logs this step
            for name, value in zip(parts, values):
                self.logger.experiment.add_scalar(f"{'reg' if name in regularizers else 'train'}/{name}", value, step)

    # ---------------------------------------------------------------- non-finite steps
    def _any_process(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any data-parallel process (so all skip together)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return flag
        return bool(self.reduce_mean(torch.tensor(float(flag), device=self.device)) > 0)

    def _snapshot(self, weights: list, optimizer):
        """A closure that puts the weights and the optimizer's state back as they are now."""
        values = [p.detach().clone() for p in weights]
        state = copy.deepcopy(optimizer.state_dict())

        def undo() -> None:
            with torch.no_grad():
                for p, value in zip(weights, values):
                    p.copy_(value)
            optimizer.load_state_dict(state)

        return undo

    def _skip(self, what: str, optimizers) -> None:
        """Leave weights, T and both optimizers as they were; count; stop after too many in a row."""
        for opt in optimizers:
            opt.zero_grad()
        for end_time in self.flow.end_times():
            end_time.T.grad = None
        self.bad_in_a_row += 1
        self.totals["bad_steps"] += 1
        self.log("train/bad_steps", float(self.totals["bad_steps"]), on_step=True, on_epoch=False)
        limit = self.cfg.trainer.max_bad_steps
        if self.bad_in_a_row > limit:
            raise NonFiniteTraining(f"{self.bad_in_a_row} steps in a row with a non-finite {what} "
                                    f"(trainer.max_bad_steps={limit}); stopped at step {self.trainer.global_step}, "
                                    "the last good checkpoint is intact")
        return None

    # ---------------------------------------------------------------- evaluation
    @property
    def checks_every_evaluation(self) -> bool:
        return self.cfg.trainer.tolerance_check == "every"

    def on_validation_epoch_start(self):
        self._val_sum, self._val_tight_sum, self._val_count = 0.0, 0.0, 0
        self._validation.enter_context(evaluating(self.flow, EVAL_SEED))

    def validation_step(self, x: torch.Tensor, batch_idx: int):
        self._val_sum += float(-self.flow.log_prob(x).sum())
        self._val_count += x.shape[0]
        if self.checks_every_evaluation:
            with tightened(self.flow):
                self._val_tight_sum += float(-self.flow.log_prob(x).sum())

    def on_validation_epoch_end(self):
        self.flow.reset_nfe()
        self.flow.sample(self.eval_batch_size)  # still evaluating: the evaluation tolerances, a seeded draw
        self.last_sample_nfe = float(self.flow.nfe["forward"])
        self._validation.close()
        sums = [self._val_sum, self._val_tight_sum, float(self._val_count)]
        total, tight_total, count = self.reduce_mean(torch.tensor(sums, dtype=torch.float64,
                                                                  device=self.device)).tolist()
        if count:
            scores = self.scores(total / count)
            if self.checks_every_evaluation:
                tolerances = self.flow.blocks()[0].solver.evaluation_tolerances
                scores = checked_scores(scores, self.scores(tight_total / count), tolerances, self.metric)
                for key in ("test_nll", "test_bpd"):
                    if key in scores:
                        self.log(f"test/{key[5:]}_change", scores["tolerance_check"][key])
            self.log("test/nll", scores["test_nll"], prog_bar=not self.source.is_image)
            if "test_bpd" in scores:
                self.log("test/bpd", scores["test_bpd"], prog_bar=True)
        self.log("sample/nfe", self.last_sample_nfe)

    def sample_nfe(self) -> float:
        """NFE to draw one evaluation batch of samples at the evaluation tolerances."""
        with evaluating(self.flow):
            self.flow.reset_nfe()
            self.flow.sample(self.eval_batch_size)
            return float(self.flow.nfe["forward"])

    def wall_s(self) -> float:
        """Wall-clock seconds of this run, summed over its resumes: neither the time it stood
        stopped nor the work lost after its last checkpoint counts."""
        return time.perf_counter() - self._wall_origin

    # ---------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.totals["wall_s"] = self.wall_s()
        checkpoint["toflow"] = {"batches_done": self.batches_done, "totals": dict(self.totals),
                                "torch_rng": torch.get_rng_state(),
                                "footprints": [footprint_of(block.ode.vf).state_dict() for block in self.flow.blocks()]}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("toflow")
        if state is None:
            return
        self.batches_done = int(state["batches_done"])
        self.totals = {**self.totals, **state["totals"]}
        self._wall_origin = time.perf_counter() - self.totals["wall_s"]
        # set at the first step: Lightning draws from the stream in between (its data loader's seed)
        self._resumed_rng = state["torch_rng"]
        for block, footprint in zip(self.flow.blocks(), state.get("footprints", [])):
            footprint_of(block.ode.vf).load_state_dict(footprint)
