"""Faults provoked for real: bad configs, NaN batches, damaged checkpoints, solver blow-ups,
SIGKILL and SIGTERM mid-run, missing data, and determinism."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import RUN, TOY_CONFIG, run_cli

import toflow
from toflow.config import load_config
from toflow.data import DataError, make_source
from toflow.trainers import FlowModule
from toflow.trainers.module import NonFiniteTraining
from toflow.trainers.reliability import CheckpointError, load_checkpoint

SMALL = ["model.hidden=[16,16]", "data.batch_size=64", "data.test_size=200", "trainer.eval_every=5",
         "trainer.viz_every=1000", "trainer.checkpoint_every=5", "trainer.progress_bar=false", "solver.atol=1e-4",
         "solver.rtol=1e-4", "trainer.num_threads=1", "trainer.accelerator=cpu"]
CONFIG = TOY_CONFIG


def test_misspelt_key_exits_2_with_a_suggestion_and_no_traceback():
    done = run_cli("solver.tol=1e-3")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "solver.tol" in done.stderr


def test_out_of_range_and_missing_file():
    done = run_cli("time.eps=0.6")
    assert done.returncode == 2 and "time.eps" in done.stderr and done.stderr.strip().count("\n") == 0
    done = run_cli(config="configs/nope.yaml")
    assert done.returncode == 2 and "nope.yaml" in done.stderr


class PoisonedSource:
    """The toy source whose training batches number ``bad`` (0-based) hold a NaN."""

    def __init__(self, cfg, bad):
        self.inner = make_source(cfg.data.name, cfg.seed, test_size=cfg.data.test_size)
        self.bad = set(bad)
        for key in ("name", "event_shape", "test", "levels", "dim", "is_image"):
            setattr(self, key, getattr(self.inner, key))

    def train_batches(self, batch_size, batches_done=0, rank=0, world=1):
        inner, bad = self.inner.train_batches(batch_size, batches_done, rank, world), self.bad

        class Batches(torch.utils.data.IterableDataset):
            def __iter__(self):
                for k, x in enumerate(inner, start=batches_done):
                    if k in bad:
                        x = x.clone()
                        x[0, 0] = float("nan")
                    yield x

        return Batches()


def test_a_nan_batch_is_skipped_and_counted(tmp_path: Path):
    cfg = load_config(CONFIG, [*SMALL, "trainer.max_steps=6", f"trainer.log_dir={tmp_path / 'run'}"])
    states = []

    class Watch(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            states.append((batch_idx, trainer.global_step, float(module.flow.end_time.T),
                           module.flow.field.layers[0].layer.weight.detach().clone()))

    summary = toflow.train(cfg, callbacks=[Watch()], source=PoisonedSource(cfg, bad={2}))
    assert summary["bad_steps"] == 1 and summary["steps"] == 6
    before, poisoned = states[1], states[2]
    assert poisoned[1] == before[1]  # no optimizer step
    assert poisoned[2] == before[2] and torch.equal(poisoned[3], before[3])  # T and weights untouched
    assert states[3][1] == before[1] + 1  # training went on


def test_too_many_bad_steps_stop_the_run_with_the_checkpoint_intact(tmp_path: Path):
    run = tmp_path / "run"
    cfg = load_config(CONFIG, [*SMALL, "trainer.max_steps=30", "trainer.max_bad_steps=2", f"trainer.log_dir={run}"])
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(NonFiniteTraining, match="trainer.max_bad_steps=2"):
        toflow.train(cfg, source=PoisonedSource(cfg, bad=set(range(7, 100))))
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 5  # the last good checkpoint
    assert signal.getsignal(signal.SIGINT) is before  # a failed run leaves Ctrl-C as it found it


def test_undo_restores_weights_and_optimizer_state():
    module = FlowModule(load_config(CONFIG, SMALL))
    opt = module.configure_optimizers()[0]
    weights = module.weight_parameters()
    for p in weights:
        p.grad = torch.ones_like(p)
    opt.step()
    saved = ([p.detach().clone() for p in weights],
             {k: v["exp_avg"].clone() for k, v in opt.state_dict()["state"].items()})
    undo = module._snapshot(weights, opt)
    opt.step()
    undo()
    assert all(torch.equal(p, s) for p, s in zip(weights, saved[0]))
    assert all(torch.equal(opt.state_dict()["state"][k]["exp_avg"], v) for k, v in saved[1].items())
    assert all(int(v["step"]) == 1 for v in opt.state_dict()["state"].values())


def test_truncated_and_altered_checkpoints_are_refused(tmp_path: Path):
    run = tmp_path / "run"
    assert run_cli(*SMALL, "trainer.max_steps=5", f"trainer.log_dir={run}").returncode == 0
    last = run / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    done = run_cli(*SMALL, "trainer.max_steps=8", "trainer.resume=true", f"trainer.log_dir={run}")
    assert done.returncode == 2 and "truncated" in done.stderr and "Traceback" not in done.stderr
    torch.save({"state_dict": {}}, last)
    with pytest.raises(CheckpointError, match="not a toflow checkpoint"):
        load_checkpoint(last)
    evaluated = subprocess.run([sys.executable, "-m", "toflow.trainers.evaluate", str(last)], capture_output=True,
                               text=True)
    assert evaluated.returncode == 2 and evaluated.stderr.strip().count("\n") == 0


def test_a_checkpoint_with_code_in_it_is_not_run(tmp_path: Path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": Payload(), "toflow": {}, "hyper_parameters": {}}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_files_that_cannot_be_written_are_one_line_and_leave_no_scratch(tmp_path: Path, monkeypatch):
    import toflow.trainers.reliability as reliability
    from toflow.errors import WriteError

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(WriteError, match=rf"^cannot write the checkpoint {a_file}/last.ckpt \(File exists\)$"):
        reliability.AtomicCheckpointIO().save_checkpoint({"step": 1}, a_file / "last.ckpt")
    with pytest.raises(WriteError, match=rf"^cannot write {tmp_path}/missing/summary.json \(No such file or "
                                         r"directory\)$"):
        reliability.write_text_atomic(tmp_path / "missing" / "summary.json", "{}")
    (tmp_path / "summary.json").mkdir()  # a folder where the file goes: the rename fails
    with pytest.raises(WriteError, match=r"summary.json \(Is a directory\); the file is as it was$"):
        reliability.write_text_atomic(tmp_path / "summary.json", "{}")
    # in this process what test_bad_input's size-limited one shows: torch.save's failed write, the old file whole
    last = tmp_path / "last.ckpt"
    reliability.AtomicCheckpointIO().save_checkpoint({"step": 1}, last)
    before = last.read_bytes()

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file")

    monkeypatch.setattr(reliability.torch, "save", full_disk)
    with pytest.raises(WriteError, match=r"\(the write failed: a full disk\?\); the one before it is whole$"):
        reliability.AtomicCheckpointIO().save_checkpoint({"step": 2}, last)
    assert last.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "last.ckpt", "summary.json"]


def test_an_interrupt_in_the_middle_of_a_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch):
    import toflow.trainers.reliability as reliability

    last, summary = tmp_path / "last.ckpt", tmp_path / "summary.json"
    reliability.AtomicCheckpointIO().save_checkpoint({"step": 1}, last)
    summary.write_text("old")
    before = last.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reliability.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reliability.AtomicCheckpointIO().save_checkpoint({"step": 2}, last)
    monkeypatch.setattr(reliability.os, "chmod", interrupted)  # the text written, not yet renamed into place
    with pytest.raises(KeyboardInterrupt):
        reliability.write_text_atomic(summary, "new")
    monkeypatch.undo()
    assert last.read_bytes() == before and summary.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "summary.json"]  # no scratch file left


def test_solver_past_max_steps_names_the_block_and_T(tmp_path: Path):
    done = run_cli(*SMALL, "trainer.max_steps=2", "solver.max_steps=1", f"trainer.log_dir={tmp_path / 'run'}")
    assert done.returncode == 1
    assert "block 0 (T=0.5)" in done.stderr and "solver.max_steps" in done.stderr
    assert done.stderr.strip().count("\n") == 0


def wait_for_step(checkpoint: Path, step: int, process, limit=300) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        assert process.poll() is None, process.stderr.read()
        if checkpoint.is_file():
            try:
                if torch.load(checkpoint, weights_only=True)["global_step"] >= step:
                    return
            except Exception:
                pass
        time.sleep(0.2)
    raise TimeoutError


def start(run: Path, steps: int):
    return subprocess.Popen([*RUN, CONFIG, *SMALL, f"trainer.max_steps={steps}", f"trainer.log_dir={run}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_run_then_resume(tmp_path: Path):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    process = start(run, 40)
    wait_for_step(last, 10, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = load_checkpoint(last)  # complete, whatever moment the kill came
    step = saved["global_step"]
    assert step >= 10 and step % 5 == 0
    assert not list(last.parent.glob("*.tmp"))
    resumed = run_cli(*SMALL, "trainer.max_steps=40", "trainer.resume=true", f"trainer.log_dir={run}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = load_checkpoint(last)
    assert final["global_step"] == 40 and final["toflow"]["batches_done"] == 40
    assert float(final["optimizer_states"][0]["state"][0]["step"]) == 40  # weights' Adam continued
    assert float(final["optimizer_states"][1]["state"][0]["step"]) == 40  # T's Adam continued
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 40
    assert summary["wall_s"] > saved["toflow"]["totals"]["wall_s"] > 0  # the killed process's time carried over


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_and_exits(tmp_path: Path, signum):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    process = start(run, 400)
    wait_for_step(last, 5, process)
    time.sleep(1.0)  # a step or two past the periodic checkpoint
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    message = stderr.strip().splitlines()[-1]
    assert signal.Signals(signum).name in message and "trainer.resume=true" in message
    saved = load_checkpoint(last)
    assert f"at step {saved['global_step']};" in message  # saved at the step it stopped, not the last periodic one
    assert saved["toflow"]["batches_done"] == saved["global_step"]


def test_a_second_ctrl_c_stops_at_once_and_other_threads_leave_signals_alone(tmp_path: Path):
    from toflow.trainers.reliability import StopOnSignal

    elsewhere = StopOnSignal(tmp_path / "last.ckpt")
    thread = threading.Thread(target=elsewhere.on_train_start, args=(None, None))
    thread.start()
    thread.join()
    assert elsewhere._previous == {}  # a fit outside the main thread installs no handler
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    stop = StopOnSignal(tmp_path / "last.ckpt")
    before = signal.getsignal(signal.SIGINT)
    stop.on_train_start(None, None)
    try:
        os.kill(os.getpid(), signal.SIGINT)  # the first: noted; the step finishes and saves
        time.sleep(0.05)
        assert stop.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # the second: at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found, put back


def test_missing_and_corrupt_data(tmp_path: Path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        make_source("mnist", root=str(tmp_path), download=False)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(DataError, match="are not mnist's IDX files"):
        make_source("mnist", root=str(tmp_path))


def test_non_finite_data_is_refused():
    cfg = load_config(CONFIG, SMALL)
    source = make_source("checkerboard", test_size=50)
    source.test[3, 1] = float("inf")
    with pytest.raises(DataError, match="non-finite"):
        FlowModule(cfg, source)


def test_same_config_and_seed_give_the_same_summary(tmp_path: Path):
    summaries = []
    for name in ("a", "b"):
        cfg = load_config(CONFIG, [*SMALL, "trainer.max_steps=6", f"trainer.log_dir={tmp_path / name}"])
        summaries.append(toflow.train(cfg))
    for key in ("test_nll", "nfe_forward_mean", "nfe_backward_mean", "end_times", "steps"):
        assert summaries[0][key] == summaries[1][key], key


def test_a_non_finite_joint_T_gradient_skips_the_step(tmp_path: Path):
    cfg = load_config(CONFIG, [*SMALL, "time.mode=joint", "trainer.max_steps=5", f"trainer.log_dir={tmp_path / 'run'}"])
    states, hooks = [], []

    class PoisonT(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == 2:  # the third step's T gradient turns NaN, its weights' gradient stays finite
                hooks.append(module.flow.end_time.T.register_hook(lambda g: g * float("nan")))

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            for hook in hooks:
                hook.remove()
            hooks.clear()
            states.append((trainer.global_step, float(module.flow.end_time.T),
                           module.flow.field.layers[0].layer.weight.detach().clone()))

    summary = toflow.train(cfg, callbacks=[PoisonT()])
    assert summary["bad_steps"] == 1 and summary["steps"] == 5
    before, poisoned = states[1], states[2]
    assert poisoned[0] == before[0]  # no optimizer step
    assert poisoned[1] == before[1] and torch.equal(poisoned[2], before[2])  # T and weights untouched
    assert all(T == T for _, T, _ in states)  # T never became NaN


@pytest.mark.parametrize("poison", ["weights gradient", "after-step T gradient"])
def test_a_non_finite_gradient_skips_the_whole_step(poison, tmp_path: Path):
    cfg = load_config(CONFIG, [*SMALL, "trainer.max_steps=5", f"trainer.log_dir={tmp_path / 'run'}"])  # toflow
    states, hooks = [], []

    class Poison(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx != 2:
                return
            if poison == "weights gradient":
                hooks.append(module.flow.field.layers[0].layer.weight.register_hook(lambda g: g * float("nan")))
            else:  # TO-FLOW's dL/dT after the weights step
                module.flow.dloss_dT = lambda: torch.tensor(float("nan"), dtype=torch.float64)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            for hook in hooks:
                hook.remove()
            hooks.clear()
            module.flow.__dict__.pop("dloss_dT", None)
            states.append((float(module.flow.end_time.T), module.flow.field.layers[0].layer.weight.detach().clone()))

    summary = toflow.train(cfg, callbacks=[Poison()])
    assert summary["bad_steps"] == 1
    before, poisoned = states[1], states[2]
    assert poisoned[0] == before[0] and torch.equal(poisoned[1], before[1])  # T and the weights as they were
    assert states[3][0] != before[0]  # training went on


def test_max_grad_norm_clips_the_weights_gradient(tmp_path: Path):
    cfg = load_config(CONFIG, [*SMALL, "optim.max_grad_norm=1e-3", "trainer.max_steps=2",
                               f"trainer.log_dir={tmp_path / 'run'}"])
    norms = []

    class Watch(pl.Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer):
            norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in module.weight_parameters()])))

    toflow.train(cfg, callbacks=[Watch()])
    assert len(norms) == 2 and max(norms) <= 1e-3 * (1 + 1e-6)


def test_a_resumed_run_draws_what_the_uninterrupted_one_draws(tmp_path: Path):
    # Hutchinson probes come from torch's stream, and sensitivity auto chooses from the last solve:
    # a run stopped after 3 steps and resumed ends exactly where an uninterrupted one does
    args = [*SMALL, "model.trace=hutchinson", "solver.sensitivity=auto"]
    straight = toflow.train(load_config(CONFIG, [*args, "trainer.max_steps=6", f"trainer.log_dir={tmp_path / 'a'}"]))
    toflow.train(load_config(CONFIG, [*args, "trainer.max_steps=3", f"trainer.log_dir={tmp_path / 'b'}"]))
    resumed = toflow.train(load_config(CONFIG, [*args, "trainer.max_steps=6", "trainer.resume=true",
                                                f"trainer.log_dir={tmp_path / 'b'}"]))
    for key in ("test_nll", "end_times", "nfe_forward_mean", "nfe_backward_mean"):
        assert resumed[key] == straight[key], key


def test_a_non_finite_solve_is_skipped_and_too_many_end_the_command_in_one_line(tmp_path: Path, capsys, monkeypatch):
    from helpers import call_main

    from toflow.models.fields import ConcatSquashMLP
    from toflow.trainers import run as run_command

    run = tmp_path / "run"
    args = [CONFIG, *SMALL, "trainer.max_bad_steps=2", f"trainer.log_dir={run}"]
    assert call_main(run_command.main, [*args, "trainer.max_steps=5"], capsys).returncode == 0
    before = load_checkpoint(run / "checkpoints" / "last.ckpt")
    real = ConcatSquashMLP.forward_with_tangents

    def blows_up_in_training(self, t, z, tangents):  # the field turns NaN inside every training solve
        dz, jv = real(self, t, z, tangents)
        return (dz * float("nan") if torch.is_grad_enabled() else dz), jv

    monkeypatch.setattr(ConcatSquashMLP, "forward_with_tangents", blows_up_in_training)
    done = call_main(run_command.main, [*args, "trainer.max_steps=30", "trainer.resume=true"], capsys)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "3 steps in a row with a non-finite state (trainer.max_bad_steps=2)" in done.stderr
    after = load_checkpoint(run / "checkpoints" / "last.ckpt")  # whole: it loads
    assert after["global_step"] == before["global_step"] == 5  # no step was taken
    for key, value in before["state_dict"].items():  # the weights and T of the last good step (and extra state)
        if not torch.is_tensor(value):
            continue
        assert torch.equal(after["state_dict"][key], value), key


def test_an_unnamed_runs_processes_share_the_directory_the_first_named(tmp_path: Path, monkeypatch):
    from toflow.provenance import RUN_DIR_ENV, run_dir_of

    assert run_dir_of(None, "toy").parent == Path("runs")
    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path / "run"))  # what train() sets before DDP starts the others
    assert run_dir_of(None, "toy") == tmp_path / "run"
    assert run_dir_of(str(tmp_path / "given"), "toy") == tmp_path / "given"


def test_a_machine_without_git_records_no_commit(monkeypatch, tmp_path: Path):
    from toflow.provenance import git_commit

    monkeypatch.setenv("PATH", str(tmp_path))  # no git to be found
    assert git_commit() is None
