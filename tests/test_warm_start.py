"""A warm start: flow matching first, then the objective's own steps on the same field, in one run;
and a run started from another run's flow (``trainer.init_from``)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import TOY_CONFIG, call_main

import toflow
from toflow.config import load_config
from toflow.data import ToyStream
from toflow.objectives import likelihood_loss
from toflow.study.results import run_scalars
from toflow.trainers import run as run_command

SMALL = ["model.hidden=[16,16]", "data.batch_size=64", "data.test_size=200", "trainer.eval_every=2",
         "trainer.viz_every=1000", "trainer.checkpoint_every=2", "trainer.progress_bar=false", "solver.atol=1e-4",
         "solver.rtol=1e-4", "trainer.num_threads=1", "trainer.accelerator=cpu", "model.compile=false"]
WARM = ["warm_start.steps=4", "warm_start.coupling=ot"]


def train(run: Path, *overrides: str) -> dict:
    return toflow.train(load_config(TOY_CONFIG, [*SMALL, *overrides, f"trainer.log_dir={run}"]))


def test_a_run_from_another_runs_flow_starts_with_its_flow(tmp_path: Path):
    train(tmp_path / "source", "trainer.max_steps=3")
    source, _ = toflow.load_flow(tmp_path / "source")
    cfg = load_config(TOY_CONFIG, [*SMALL, f"trainer.init_from={tmp_path / 'source'}"])
    from toflow.trainers.module import FlowModule

    module = FlowModule(cfg)
    module.start_from(cfg.trainer.init_from)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    module.flow.eval()
    with torch.no_grad():
        assert torch.equal(module.flow.log_prob(x), source.log_prob(x))  # weights and end times, to the bit
    assert float(module.flow.end_time.T) == float(source.end_time.T) != 0.5
    started = train(tmp_path / "new", "trainer.max_steps=2", f"trainer.init_from={tmp_path / 'source'}")
    assert started["steps"] == 2  # the step count starts afresh


def test_a_mismatched_init_from_is_one_line(tmp_path: Path, capsys):
    train(tmp_path / "source", "trainer.max_steps=1")
    done = call_main(run_command.main, [TOY_CONFIG, *SMALL, "model.hidden=[8]", "trainer.max_steps=1",
                                        f"trainer.log_dir={tmp_path / 'new'}",
                                        f"trainer.init_from={tmp_path / 'source'}"], capsys)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "trainer.init_from:" in done.stderr and "model.hidden: [16, 16] in the run, [8] given" in done.stderr


def test_the_warm_start_switches_at_its_step_without_a_gap(tmp_path: Path):
    run = tmp_path / "run"
    train(run, *WARM, "trainer.max_steps=4")  # the flow-matching steps only, checkpointed at the switch
    switch = tmp_path / "at_switch.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", switch)
    summary = train(run, *WARM, "trainer.max_steps=6", "trainer.resume=true")
    scalars = run_scalars(run)
    assert [e.step for e in scalars["train/fm_mse"]] == [0, 1, 2, 3]
    assert [e.step for e in scalars["train/nll"]] == [4, 5]
    assert [e.step for e in scalars["train/loss"]] == list(range(6))  # one curve, no gap, no restart
    assert [e.value for e in scalars["nfe/forward"]][:4] == [0.0] * 4  # flow matching solves nothing
    T = [e.value for e in scalars["T/block0"]]
    assert T[:4] == [0.5] * 4 and T[4] != 0.5  # TO-FLOW trains T from T0, from the switch on (T after each step)
    assert summary["steps"] == 6
    nfe = {e.step: e.value for e in scalars["nfe/forward"]}
    backward = {e.step: e.value for e in scalars["nfe/backward"]}
    after_switch = [nfe[k] + backward[k] for k in (4, 5)]
    assert summary["nfe_per_objective_step"] == pytest.approx(sum(after_switch) / 2)
    # the first likelihood loss is that of the last flow-matching weights, on the stream's fifth batch
    flow, cfg = toflow.load_flow(switch)
    flow.train()
    batch = ToyStream("checkerboard", cfg.seed).take(4 * 64, 64)
    with torch.no_grad():
        first, _ = likelihood_loss(flow, batch)
    assert float(first) == pytest.approx(scalars["train/nll"][0].value, rel=1e-5)


def test_resuming_in_the_second_phase_continues_it_exactly(tmp_path: Path):
    straight = train(tmp_path / "straight", *WARM, "trainer.max_steps=8")
    train(tmp_path / "stopped", *WARM, "trainer.max_steps=6")
    resumed = train(tmp_path / "stopped", *WARM, "trainer.max_steps=8", "trainer.resume=true")
    for key in ("test_nll", "end_times", "nfe_forward_mean", "steps"):
        assert resumed[key] == straight[key], key
    assert json.loads((tmp_path / "stopped" / "summary.json").read_text())["steps"] == 8


def test_a_warm_start_is_refused_where_it_cannot_apply():
    with pytest.raises(toflow.ConfigError, match="warm_start.steps: must be non-negative"):
        load_config(TOY_CONFIG, ["warm_start.steps=-1"])
    with pytest.raises(toflow.ConfigError, match="warm_start.coupling: not used without warm_start.steps"):
        load_config(TOY_CONFIG, ["warm_start.coupling=ot"])
    with pytest.raises(toflow.ConfigError, match="warm_start.steps: flow matching trains one vector field"):
        load_config("configs/digits_toflow.yaml", ["warm_start.steps=10"])  # the multiscale flow
    assert load_config("configs/digits_single_scale_toflow.yaml", ["warm_start.steps=10"]).warm_start.steps == 10
