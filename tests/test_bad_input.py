"""Every bad input is one line and exit code 2: YAML, paths, resuming with another config,
DDP settings, where the data came from, an interrupted evaluation, and a config fuzzer."""

import collections
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuzz import mutations, outcome
from helpers import RUN, TOY_CONFIG, call_main, run_cli

import toflow
from toflow.config import load_config
from toflow.trainers import run as run_command

SMALL = ["model.hidden=[16,16]", "data.batch_size=64", "data.test_size=200", "trainer.eval_every=5",
         "trainer.viz_every=1000", "trainer.checkpoint_every=2", "trainer.progress_bar=false", "solver.atol=1e-4",
         "solver.rtol=1e-4", "trainer.num_threads=1", "trainer.accelerator=cpu"]


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stderr.strip()


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\ndata: {name: checkerboard\n")
    message = one_line(run_cli(config=str(bad)))
    assert f"{bad}:" in message and "not valid YAML" in message
    line, column = message.split(f"{bad}:")[1].split(":")[:2]
    assert int(line) >= 2 and int(column) >= 1


def test_a_log_dir_that_cannot_be_made_names_the_key_and_the_path(tmp_path: Path, capsys):
    message = one_line(run_cli("trainer.log_dir=/proc/toflow/run", "trainer.max_steps=1", *SMALL))
    assert message.startswith("error: trainer.log_dir:") and "/proc/toflow/run" in message
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    done = call_main(run_command.main, [TOY_CONFIG, f"trainer.log_dir={a_file}", "trainer.max_steps=1", *SMALL], capsys)
    assert str(a_file) in one_line(done)


def test_resuming_with_another_model_names_each_changed_key(tmp_path: Path, capsys):
    run = tmp_path / "run"
    toflow.train(load_config(TOY_CONFIG, [*SMALL, "trainer.max_steps=2", f"trainer.log_dir={run}"]))
    message = one_line(run_cli("trainer.max_steps=4", "trainer.resume=true", f"trainer.log_dir={run}", *SMALL,
                               "model.hidden=[8,8]", "time.mode=fixed", "optim.lr=1e-4"))
    assert "model.hidden: [16, 16] in the run, [8, 8] given" in message
    assert "time.mode: 'toflow' in the run, 'fixed' given" in message
    assert "optim.lr" not in message  # the learning rate may change on resuming
    done = call_main(run_command.main, [TOY_CONFIG, "trainer.max_steps=3", "trainer.resume=true",
                                        f"trainer.log_dir={run}", *SMALL, "optim.lr=1e-4", "trainer.eval_every=1"],
                        capsys)
    assert done.returncode == 0, done.stderr[-2000:]


def test_resume_takes_the_runs_own_config(tmp_path: Path, capsys):
    straight = toflow.train(load_config(TOY_CONFIG, [*SMALL, "trainer.max_steps=4",
                                                     f"trainer.log_dir={tmp_path / 'a'}"]))
    run = tmp_path / "b"
    toflow.train(load_config(TOY_CONFIG, [*SMALL, "trainer.max_steps=2", f"trainer.log_dir={run}"]))
    done = subprocess.run([*RUN, "--resume", str(run), "trainer.max_steps=4"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = json.loads((run / "summary.json").read_text())
    for key in ("test_nll", "end_times", "steps", "nfe_forward_mean"):
        assert resumed[key] == straight[key], key
    assert "holds no run" in one_line(call_main(run_command.main, ["--resume", tmp_path / "none"], capsys))


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_any_starts():
    message = one_line(run_cli("trainer.devices=3", "trainer.accelerator=cpu"))
    assert "data.batch_size: 512 (the global batch) does not split evenly over 3 processes" in message


def test_the_run_says_where_its_data_came_from(fake_mnist: Path, tmp_path: Path, capsys):
    done = run_cli("data.name=mnist", f"data.root={fake_mnist}", "data.resize=8", "data.batch_size=16",
                   "data.test_size=16", "model.hidden=[8]", "trainer.max_steps=1", "trainer.progress_bar=false",
                   f"trainer.log_dir={tmp_path / 'run'}", "solver.atol=1e-3", "solver.rtol=1e-3",
                   config="configs/digits_toflow.yaml")
    assert done.returncode == 0, done.stderr[-2000:]
    first = done.stdout.splitlines()[0]
    assert first == f"data: mnist, 48 training and 16 test images from {fake_mnist / 'MNIST' / 'raw'}"
    toy = call_main(run_command.main,
                    [TOY_CONFIG, "trainer.max_steps=1", f"trainer.log_dir={tmp_path / 'toy'}", *SMALL],
                    capsys)
    assert toy.stdout.splitlines()[0].startswith("data: checkerboard, generated: training stream from seed 0")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_evaluation_leaves_the_summary_whole(signum, tmp_path: Path):
    run = tmp_path / "run"
    toflow.train(load_config(TOY_CONFIG, [*SMALL, "trainer.max_steps=2", f"trainer.log_dir={run}"]))
    before = (run / "summary.json").read_bytes()
    evaluating = subprocess.Popen([sys.executable, "-m", "toflow.trainers.evaluate", str(run),
                                   "data.test_size=2000000"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert evaluating.stdout.readline().startswith("evaluating ")  # its signal handlers are in place
    time.sleep(2)  # inside the long evaluation
    evaluating.send_signal(signum)
    _, stderr = evaluating.communicate(timeout=120)
    assert evaluating.returncode == 128 + signum, stderr[-2000:]
    assert stderr.strip().count("\n") == 0 and signal.Signals(signum).name in stderr
    assert (run / "summary.json").read_bytes() == before


def test_mutated_configs_are_accepted_or_refused_in_one_line(tmp_path: Path, capsys):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    tried = mutations(a_file=a_file)
    ends = collections.Counter()
    for mutation in tried:
        end = outcome(mutation, tmp_path)
        assert not end.startswith("failed"), (mutation.config.name, mutation.what, end)
        ends[(mutation.kind, end)] += 1
    assert len(tried) >= 300 and ends[("misspell", "refused")] > 40 and ends[("unreadable", "refused")] > 40
    # the command line's entry point, on a sample: it runs one step, or exits with 2 and one line
    small = ["trainer.max_steps=1", "data.test_size=32", "data.batch_size=32", "trainer.progress_bar=false",
             "model.hidden=[8]", f"trainer.log_dir={tmp_path / 'runs'}"]
    sample = [m for m in tried if m.kind in ("path at a file", "unreadable", "out of range", "wrong type")
              and "toy" in m.config.name and not any(k in m.what for k in ("max_steps", "test_size", "batch_size",
                                                                          "hidden", "log_dir"))][::9][:5]
    sample += [m for m in tried if m.kind == "path at a file" and "trainer.log_dir" in m.what][:1]
    for index, mutation in enumerate(sample):
        path = tmp_path / f"cli{index}.yaml"
        path.write_text(mutation.text)
        overrides = [o if "log_dir" not in o else f"trainer.log_dir={tmp_path / f'run{index}'}" for o in small]
        if "trainer.log_dir" in mutation.what:
            overrides = overrides[:-1]
        done = call_main(run_command.main, [path, *overrides], capsys)
        assert done.returncode in (0, 2), (mutation.what, done.stderr[-2000:])
        if done.returncode == 2:
            one_line(done)
