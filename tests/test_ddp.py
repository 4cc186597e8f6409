"""Data-parallel training on CPU (gloo): 2 processes launched by torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SMALL = ["model.hidden=[16,16]", "data.batch_size=64", "data.test_size=200", "trainer.eval_every=4",
         "trainer.viz_every=100", "trainer.checkpoint_every=4", "trainer.progress_bar=false", "solver.atol=1e-4",
         "solver.rtol=1e-4", "trainer.accelerator=cpu", "trainer.num_threads=1"]


def torchrun(out: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "tests/ddp_worker.py", str(out), *args, *SMALL, "trainer.devices=2", "trainer.strategy=ddp"]
    return subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": "tests", **(env or {})})


def first_loss(run: Path) -> float:
    losses = []
    for events in sorted(run.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if "train/loss" in accumulator.Tags()["scalars"]:
            losses += [e for e in accumulator.Scalars("train/loss") if e.step == 0]
    return losses[0].value


def test_two_processes_stay_identical_write_once_and_resume(tmp_path: Path):
    run, out = tmp_path / "run", tmp_path / "out"
    done = torchrun(out, "trainer.max_steps=6", f"trainer.log_dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(out / f"state_rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert float(rank0["end_time.T"]) != 0.5  # T moved, identically on both

    summaries = [json.loads((out / f"summary_rank{r}.json").read_text()) for r in (0, 1)]
    assert summaries[0]["steps"] == 6 and summaries[1] == {}  # only the first process writes the summary
    assert json.loads((run / "summary.json").read_text())["steps"] == 6

    again = torchrun(out, "trainer.max_steps=8", "trainer.resume=true", f"trainer.log_dir={run}")
    assert again.returncode == 0, again.stderr[-3000:]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 8 and checkpoint["toflow"]["batches_done"] == 8
    assert float(checkpoint["optimizer_states"][1]["state"][0]["step"]) == 8


def test_a_ddp_step_has_the_single_process_loss(tmp_path: Path):
    single = tmp_path / "single"
    done = run_cli("trainer.max_steps=1", f"trainer.log_dir={single}", *SMALL)
    assert done.returncode == 0, done.stderr[-2000:]
    parallel = tmp_path / "parallel"
    done = torchrun(tmp_path / "out", "trainer.max_steps=1", f"trainer.log_dir={parallel}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert abs(first_loss(parallel) - first_loss(single)) < 1e-5


@pytest.mark.parametrize("mode", ["toflow", "steer"])
def test_data_parallel_training_equals_one_process_over_several_steps(mode, tmp_path: Path):
    # TO-FLOW's after-step dL/dT is averaged over the processes, STEER's draw is the same on each
    steps = [f"time.mode={mode}", "trainer.max_steps=5"]
    done = run_cli(*steps, f"trainer.log_dir={tmp_path / 'single'}", *SMALL)
    assert done.returncode == 0, done.stderr[-2000:]
    done = torchrun(tmp_path / "out", *steps, f"trainer.log_dir={tmp_path / 'parallel'}")
    assert done.returncode == 0, done.stderr[-3000:]
    single = torch.load(tmp_path / "single" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    parallel = torch.load(tmp_path / "out" / "state_rank0.pt")
    for name, value in parallel.items():  # each process solves its half of the batch: equal to the solver's error
        assert torch.allclose(value, single[f"flow.{name}"], atol=2e-4, rtol=0), name
    if mode == "toflow":
        assert float(parallel["end_time.T"]) != 0.5


def test_a_bad_batch_on_one_process_makes_every_process_skip(tmp_path: Path):
    run, out = tmp_path / "run", tmp_path / "out"
    done = torchrun(out, "trainer.max_steps=4", f"trainer.log_dir={run}", env={"POISON_RANK1_BATCH": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(out / f"state_rank{r}.pt") for r in (0, 1))
    for name in rank0:  # both skipped the same step: still identical
        assert torch.equal(rank0[name], rank1[name]), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["bad_steps"] == 1 and summary["steps"] == 4  # one batch more was drawn to make 4 steps


def test_the_command_line_trains_with_two_processes_into_one_unnamed_run(tmp_path: Path):
    root = Path.cwd()  # started in tmp_path, the processes still take this tree's toflow and config
    config = root / "configs" / "toy_checkerboard_toflow.yaml"
    done = subprocess.run([sys.executable, "-m", "toflow.trainers.run", str(config), *SMALL, "trainer.max_steps=2",
                           "trainer.devices=2", "trainer.strategy=ddp"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": str(root)})
    # no trainer.log_dir: runs/<name>-<time>, named once by the first process
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and json.loads((runs[0] / "summary.json").read_text())["steps"] == 2
    assert done.stdout.count("run: ") == 1  # the second process says nothing
