"""The CLI end to end: a short run leaves its artefacts; resuming continues it."""

import json
from pathlib import Path

import torch
from helpers import run_cli

from toflow.trainers import SUMMARY_KEYS

SMALL = ["model.hidden=[16,16]", "data.batch_size=64", "data.test_size=200", "trainer.eval_every=10",
         "trainer.viz_every=10", "trainer.checkpoint_every=10", "trainer.progress_bar=false",
         "solver.atol=1e-4", "solver.rtol=1e-4"]


def has_hparams(events: Path) -> bool:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    try:
        return "_hparams_/session_start_info" in accumulator.PluginTagToContent("hparams")
    except KeyError:
        return False


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_run_leaves_its_artefacts_and_resumes(tmp_path: Path):
    run = tmp_path / "run"
    done = run_cli("trainer.max_steps=20", f"trainer.log_dir={run}", *SMALL)
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(run) in done.stdout.splitlines()[-1]
    assert list(run.glob("events.out.tfevents.*"))
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "config.yaml").is_file() and list((run / "plots").glob("*.png"))
    summary = json.loads((run / "summary.json").read_text())
    assert set(SUMMARY_KEYS) <= set(summary)
    assert summary["steps"] == 20 and len(summary["end_times"]) == 1
    assert summary["nfe_forward_mean"] > 0 and summary["nfe_backward_mean"] > 0

    assert any(has_hparams(events) for events in run.glob("events.out.tfevents.*"))

    first = load(run / "checkpoints" / "last.ckpt")
    assert first["global_step"] == 20
    T20 = float(first["state_dict"]["flow.end_time.T"])
    time_state = first["optimizer_states"][1]["state"][0]
    assert float(time_state["step"]) == 20
    assert abs(T20 - 0.5) > 0.02  # T has moved, so a restart at T0 would show

    again = run_cli("trainer.max_steps=21", "trainer.resume=true", f"trainer.log_dir={run}", *SMALL)
    assert again.returncode == 0, again.stderr[-2000:]
    second = load(run / "checkpoints" / "last.ckpt")
    assert second["global_step"] == 21
    assert float(second["optimizer_states"][1]["state"][0]["step"]) == 21  # Adam's state carried on
    assert second["toflow"]["batches_done"] == 21  # the data stream continued
    T21 = float(second["state_dict"]["flow.end_time.T"])
    assert 0 < abs(T21 - T20) <= 1.5e-2  # one Adam step of lr 1e-2 from the saved T
    assert json.loads((run / "summary.json").read_text())["steps"] == 21


def test_existing_run_is_not_overwritten(tmp_path: Path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    done = run_cli("trainer.max_steps=2", f"trainer.log_dir={run}", *SMALL)
    assert done.returncode == 2
    assert "trainer.log_dir" in done.stderr and "trainer.resume=true" in done.stderr


def test_bad_override_exits_2_with_one_line():
    done = run_cli("trainer.max_step=2")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "trainer.max_steps" in done.stderr


def test_every_solver_trains_from_a_config(tmp_path: Path):
    import toflow
    from toflow.study.results import run_scalars

    for name in ("aca", "mali", "rk4"):
        cfg = toflow.load_config("configs/toy_checkerboard_toflow.yaml", [
            f"solver.name={name}", *(["solver.step_size=0.1"] if name == "rk4" else ["solver.sensitivity=null"]),
            "trainer.max_steps=6", f"trainer.log_dir={tmp_path / name}", *SMALL, "trainer.eval_every=1",
            "optim.lr=1e-2"])
        summary = toflow.train(cfg)
        assert summary["steps"] == 6 and summary["solver"] == name
        assert summary["end_times"][0] != 0.5 and summary["nfe_backward_mean"] > 0
        test_nll = [e.value for e in run_scalars(tmp_path / name)["test/nll"]]
        assert test_nll[-1] < test_nll[0], (name, test_nll)  # it trains: the test NLL goes down


def test_bad_input_is_refused_before_the_heavy_imports():
    # what each answer had imported when it came: --help and a misspelt key nothing of torch, a bad
    # value torch and the models but not Lightning (nor torchdyn's model layer, which imports it)
    import subprocess
    import sys

    probe = ("import sys\nfrom {module} import main\ntry:\n    code = main({argv})\n"
             "except SystemExit as stop:\n    code = stop.code\n"
             "print(code, *(name in sys.modules for name in ('torch', 'pytorch_lightning', 'torchdyn.core')))")

    def imported(module: str, argv: list) -> list:
        done = subprocess.run([sys.executable, "-c", probe.format(module=module, argv=argv)], capture_output=True,
                              text=True, timeout=300)
        return done.stdout.split()[-4:]

    config = "configs/toy_checkerboard_quick.yaml"
    for module in ("toflow.trainers.run", "toflow.trainers.evaluate", "toflow.trainers.sample",
                   "toflow.trainers.animate", "toflow.study.__main__"):
        assert imported(module, ["--help"]) == ["0", "False", "False", "False"], module
    assert imported("toflow.trainers.run", [config, "trainer.max_step=5"]) == ["2", "False", "False", "False"]
    assert imported("toflow.trainers.run", [config, "time.eps=0.7"]) == ["2", "True", "False", "False"]
    assert imported("toflow.trainers.run", [config, "solver.name=dopri"]) == ["2", "True", "False", "False"]
