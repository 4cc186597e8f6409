"""A trained flow in the user's hands: load it, sample it, watch it move."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from helpers import call_main

import toflow
from toflow.config import load_config
from toflow.models import CNF, EndTime, LinearField
from toflow.solvers import Dopri5
from toflow.trainers import mean_nll
from toflow.trainers.animation import frames, write_gif
from toflow.trainers.reliability import CheckpointError

SMALL = ["model.hidden=[16,16]", "data.batch_size=64", "data.test_size=200", "trainer.eval_every=3",
         "trainer.viz_every=1000", "trainer.checkpoint_every=3", "trainer.progress_bar=false", "solver.atol=1e-4",
         "solver.rtol=1e-4", "trainer.num_threads=1", "trainer.accelerator=cpu", "trainer.max_steps=3"]
IMAGES = ["data.name=mnist", "data.resize=8", "data.batch_size=16", "data.test_size=16", "model.hidden=[8]",
          "trainer.max_steps=3", "trainer.eval_every=3", "trainer.viz_every=3", "trainer.checkpoint_every=3",
          "trainer.progress_bar=false", "solver.atol=1e-3", "solver.rtol=1e-3"]


def train_keeping_the_flow(cfg):
    kept = {}

    class Keep(pl.Callback):
        def on_train_end(self, trainer, module):
            kept["flow"] = module.flow

    return toflow.train(cfg, callbacks=[Keep()]), kept["flow"]


def run_module(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"toflow.trainers.{name}", *args], capture_output=True, text=True,
                          timeout=600)


def test_load_flow_gives_the_trained_flow_of_a_2d_run(tmp_path: Path):
    summary, trained = train_keeping_the_flow(load_config("configs/toy_checkerboard_toflow.yaml",
                                                          [*SMALL, f"trainer.log_dir={tmp_path / 'run'}"]))
    flow, cfg = toflow.load_flow(summary["log_dir"], which="last")
    assert not flow.training and cfg.name == "toy_checkerboard_toflow"
    assert float(flow.end_time.T) == summary["end_times"][0] != 0.5  # its trained end time
    test = toflow.data.toy_test_set("checkerboard", 200)
    assert mean_nll(flow, test) == summary["test_nll"]
    x = torch.randn(32, 2)
    trained.eval()
    with torch.no_grad():
        assert torch.equal(flow.log_prob(x), trained.log_prob(x))
    provenance = summary["provenance"]
    assert provenance["config_sha256"] and provenance["torch"] == torch.__version__ and provenance["threads"] == 1


def test_load_flow_gives_the_trained_flow_of_an_image_run(fake_mnist: Path, tmp_path: Path):
    cfg = load_config("configs/digits_toflow.yaml", [*IMAGES, f"data.root={fake_mnist}",
                                                     f"trainer.log_dir={tmp_path / 'run'}"])
    summary, trained = train_keeping_the_flow(cfg)
    flow, _ = toflow.load_flow(tmp_path / "run" / "checkpoints" / "last.ckpt")
    x = torch.rand(4, 1, 8, 8) * 0.9 + 0.05
    trained.eval()
    with torch.no_grad():
        torch.manual_seed(1)  # the same Hutchinson probes for both
        loaded_logp = flow.log_prob(x)
        torch.manual_seed(1)
        assert torch.equal(loaded_logp, trained.log_prob(x))
    assert [float(et.T) for et in flow.end_times()] == summary["end_times"]

    drawn = run_module("sample", str(tmp_path / "run"), "--n", "9", "--out", str(tmp_path / "grid.png"))
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert (tmp_path / "grid.png").is_file() and "NFE" in drawn.stdout and "step 3" in drawn.stdout


def test_sample_writes_each_format_the_same_for_the_same_seed(tmp_path: Path, capsys):
    from toflow.trainers import sample

    toflow.train(load_config("configs/toy_checkerboard_toflow.yaml", [*SMALL, f"trainer.log_dir={tmp_path / 'run'}"]))
    run = str(tmp_path / "run")
    outputs = {}
    for name, seed in (("a.pt", 3), ("b.pt", 3), ("c.pt", 4), ("d.npy", 3), ("e.png", 3)):
        args = [run, "--n", "50", "--seed", str(seed), "--out", str(tmp_path / name)]
        if name == "a.pt":  # the command line, in a process of its own
            done = run_module("sample", *args)
            assert done.returncode == 0, done.stderr[-2000:]
            said = done.stdout
        else:  # in this one: the same draws whatever the process did before
            done = call_main(sample.main, args, capsys)
            assert done.returncode == 0, done.stderr[-2000:]
            said = done.stdout
        assert f"-> {tmp_path / name}" in said and "NFE" in said
        outputs[name] = tmp_path / name
    a, b, c = (torch.load(outputs[k]) for k in ("a.pt", "b.pt", "c.pt"))
    assert a.shape == (50, 2) and torch.equal(a, b) and not torch.equal(a, c)
    assert np.array_equal(np.load(outputs["d.npy"]), a.numpy())
    assert outputs["e.png"].stat().st_size > 1000


def test_animate_runs_from_the_data_density_to_the_gaussian(tmp_path: Path):
    # a linear field: z(T) = exp(A (T - t)) y, so p_t(y) = N(exp(A (T - t)) y) exp((T - t) tr A)
    A = torch.tensor([[-0.4, 0.9], [-0.6, 0.1]], dtype=torch.float64)
    T = 0.8
    flow = CNF(LinearField(A), EndTime(0.0, T), Dopri5(atol=1e-9, rtol=1e-9), trace="exact").double()
    shots = frames(flow, k=5, grid=12, particles=40)
    assert [shot.t for shot in shots] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    axis = torch.linspace(-4, 4, 12, dtype=torch.float64)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    y = torch.stack([xs.flatten(), ys.flatten()], 1)

    def gaussian(z):
        return torch.exp(-0.5 * z.pow(2).sum(1)) / (2 * math.pi)

    for shot in shots:
        z = y @ torch.matrix_exp(A * (T - shot.t)).T
        expected = gaussian(z) * math.exp((T - shot.t) * float(torch.trace(A)))
        assert torch.allclose(shot.density.flatten(), expected, rtol=1e-6, atol=1e-12)
    assert torch.allclose(shots[-1].density.flatten(), gaussian(y))  # at T: the Gaussian itself
    assert shots[0].particles.shape == (40, 2)
    write_gif(shots, tmp_path / "flow.gif")
    from PIL import Image

    assert Image.open(tmp_path / "flow.gif").n_frames == 5


def test_animate_from_the_command_line(tmp_path: Path):
    toflow.train(load_config("configs/toy_checkerboard_toflow.yaml", [*SMALL, "trainer.animate_frames=3",
                                                                     f"trainer.log_dir={tmp_path / 'run'}"]))
    assert (tmp_path / "run" / "flow.gif").is_file()  # left by the run itself
    done = run_module("animate", str(tmp_path / "run"), "--frames", "4", "--out", str(tmp_path / "again.gif"))
    assert done.returncode == 0, done.stderr[-2000:]
    from PIL import Image

    assert Image.open(tmp_path / "again.gif").n_frames == 4


def test_a_damaged_or_missing_checkpoint_is_one_line(tmp_path: Path, capsys):
    from toflow.trainers import animate, sample

    with pytest.raises(CheckpointError, match="no checkpoints/best.ckpt or last.ckpt"):
        toflow.load_flow(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated, altered or not a checkpoint"):
        toflow.load_flow(tmp_path)
    done = run_module("sample", str(tmp_path))  # the command line, in a process of its own
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    done = call_main(animate.main, [tmp_path], capsys)  # the same entry point, in this process
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "truncated, altered or not a checkpoint" in done.stderr
    missing = call_main(sample.main, [tmp_path / "nowhere"], capsys)
    assert missing.returncode == 2 and "no such run directory" in missing.stderr


def test_a_run_directory_gives_the_checkpoint_asked_for_and_falls_back_to_the_other(tmp_path: Path):
    from toflow.trainers.checkpoints import find_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"last")
    assert find_checkpoint(tmp_path) == folder / "last.ckpt"  # no best yet: the last
    assert find_checkpoint(tmp_path, "last") == folder / "last.ckpt"
    (folder / "best.ckpt").write_bytes(b"best")
    assert find_checkpoint(tmp_path) == folder / "best.ckpt"
    assert find_checkpoint(tmp_path, "last") == folder / "last.ckpt"
    (folder / "last.ckpt").unlink()
    assert find_checkpoint(tmp_path, "last") == folder / "best.ckpt"
    assert find_checkpoint(folder / "best.ckpt", "last") == folder / "best.ckpt"  # a file is read as it is
    with pytest.raises(CheckpointError) as refused:
        find_checkpoint(tmp_path, "first")
    assert str(refused.value) == "checkpoint: which='first' is not one of best, last"
    with pytest.raises(CheckpointError) as missing:
        find_checkpoint(tmp_path / "nowhere")
    assert str(missing.value) == f"checkpoint: no such run directory or checkpoint: {tmp_path / 'nowhere'}"


def test_a_run_keeps_best_and_last_only_last_every_checkpoint_every_steps_and_across_a_resume(tmp_path: Path):
    from toflow.trainers.reliability import load_checkpoint

    run = tmp_path / "run"
    folder = run / "checkpoints"
    seen = {}

    class Watch(pl.Callback):  # the steps last.ckpt held as the run went
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if (folder / "last.ckpt").is_file():
                seen.setdefault(load_checkpoint(folder / "last.ckpt")["global_step"], trainer.global_step)

    steps = [*SMALL, "trainer.checkpoint_every=2", "trainer.eval_every=2", f"trainer.log_dir={run}"]
    toflow.train(load_config("configs/toy_checkerboard_toflow.yaml", [*steps, "trainer.max_steps=5"]),
                 callbacks=[Watch()])
    assert sorted(seen) == [2, 4]  # written after steps 2 and 4 (and at the end, step 5)
    toflow.train(load_config("configs/toy_checkerboard_toflow.yaml",
                             [*steps, "trainer.max_steps=9", "trainer.resume=true"]))
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]  # no versions, no others
    assert load_checkpoint(folder / "last.ckpt")["global_step"] == 9


def test_best_ckpt_is_the_lowest_test_nll_and_load_flow_and_evaluate_reproduce_it(tmp_path: Path, capsys):
    from toflow.study.results import run_scalars
    from toflow.trainers import evaluate as evaluate_command
    from toflow.trainers.reliability import load_checkpoint

    run = tmp_path / "run"
    # a learning rate that overshoots, so that the last evaluation is not the best one
    toflow.train(load_config("configs/toy_checkerboard_toflow.yaml",
                             [*SMALL, "trainer.max_steps=12", "trainer.eval_every=2", "optim.lr=0.05",
                              f"trainer.log_dir={run}"]))
    evaluations = {e.step: e.value for e in run_scalars(run)["test/nll"] if e.step < 12}  # not the final score
    best_step = min(evaluations, key=evaluations.get)
    assert best_step != max(evaluations), "the run should have got worse after its best evaluation"
    assert load_checkpoint(run / "checkpoints" / "best.ckpt")["global_step"] == best_step + 1
    flow, cfg = toflow.load_flow(run)
    test = toflow.data.toy_test_set("checkerboard", cfg.data.test_size)
    assert mean_nll(flow, test) == pytest.approx(evaluations[best_step], rel=1e-6)
    done = call_main(evaluate_command.main, [run], capsys)
    assert done.returncode == 0 and f"test NLL {evaluations[best_step]:.4f} nats" in done.stdout


def test_a_score_that_moves_under_the_check_is_reported_at_the_tighter_tolerance():
    from toflow.trainers.evaluation import checked_scores, describe

    scores = checked_scores({"test_nll": 3.0}, {"test_nll": 3.01}, (1e-5, 1e-5), "test_nll")
    assert scores["test_nll"] == 3.01 and scores["unconverged"] == {"test_nll": 3.0}
    assert describe(scores) == ("test NLL 3.0100 nats at atol=rtol=1e-06, 10x tighter than the evaluation's "
                                "atol=rtol=1e-05, where it read 3.0000 (+1.0e-02: not converged)")
    converged = checked_scores({"test_nll": 3.0}, {"test_nll": 3.0002}, (1e-5, 1e-4), "test_nll")
    assert "unconverged" not in converged
    assert describe(converged) == "test NLL 3.0000 nats at atol=1e-05, rtol=1e-04 (10x tighter: +2.0e-04)"


def test_evaluate_with_overrides_evaluates_what_they_say(tmp_path: Path, capsys):
    import json

    from toflow.trainers import evaluate as evaluate_command

    run = tmp_path / "run"
    toflow.train(load_config("configs/toy_checkerboard_toflow.yaml", [*SMALL, f"trainer.log_dir={run}"]))
    flow, _ = toflow.load_flow(run)
    fewer = toflow.data.toy_test_set("checkerboard", 50)
    assert call_main(evaluate_command.main, [run, "data.test_size=50"], capsys).returncode == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_nll"] == pytest.approx(mean_nll(flow, fewer), rel=1e-6)  # on the 50 points only
    assert call_main(evaluate_command.main, [run, "solver.test_atol=1e-2", "solver.test_rtol=1e-2"],
                     capsys).returncode == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["eval_tolerance"] == {"atol": 1e-2, "rtol": 1e-2}
    assert summary["tolerance_check"]["atol"] == pytest.approx(1e-3)


def test_the_tensorboard_tags_the_readme_lists_are_written_and_agree_with_the_run(tmp_path: Path):
    from toflow.study.results import run_scalars
    from toflow.trainers.reliability import load_checkpoint

    run = tmp_path / "run"
    summary = toflow.train(load_config("configs/toy_checkerboard_toflow.yaml",
                                       [*SMALL, "trainer.max_steps=4", "trainer.checkpoint_every=4",
                                        "regularizers.kinetic=0.01", "trainer.tolerance_check=every",
                                        f"trainer.log_dir={run}"]))
    scalars = run_scalars(run)
    for tag in ("train/loss", "train/nll", "test/nll", "test/nll_change", "nfe/forward", "nfe/backward", "T/block0",
                "T_grad/block0", "train/grad_norm", "time/step_s", "reg/kinetic", "reg/temporal", "sample/nfe"):
        assert tag in scalars, tag
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert scalars["T/block0"][-1].value == pytest.approx(float(checkpoint["state_dict"]["flow.end_time.T"]))
    assert scalars["T/block0"][-1].value == pytest.approx(summary["end_times"][0])
    nfe = [e.value + b.value for e, b in zip(scalars["nfe/forward"], scalars["nfe/backward"])]
    assert sum(nfe) / len(nfe) == pytest.approx(summary["nfe_forward_mean"] + summary["nfe_backward_mean"])
    assert sum(e.value for e in scalars["time/step_s"]) / 4 == pytest.approx(summary["time_per_iter_s"], rel=1e-4)
    assert [e.step for e in scalars["train/loss"]] == [0, 1, 2, 3]
