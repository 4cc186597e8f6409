"""Every bad input is one line and exit code 2: YAML, paths, resuming with another config,
DDP settings, where the data came from, an interrupted evaluation, and a config fuzzer."""

import collections
import json
import os
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


def untrained_checkpoint(path: Path, config=("model.hidden=[8]",), weights=("model.hidden=[8]",)) -> Path:
    """A toflow checkpoint of an untrained flow, written without training: the config ``config``, the
    weights of the flow ``weights`` describes."""
    import torch

    from toflow.config import to_dict
    from toflow.config.components import build_flow

    flow = build_flow(load_config(TOY_CONFIG, list(weights)))
    torch.save({"state_dict": {f"flow.{key}": value for key, value in flow.state_dict().items()}, "toflow": {},
                "hyper_parameters": {"config": to_dict(load_config(TOY_CONFIG, list(config)))}, "global_step": 0},
               path)
    return path


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


def test_a_run_directory_whose_config_cannot_be_written_is_one_line(tmp_path: Path):
    run = tmp_path / "run"
    (run / "config.yaml").mkdir(parents=True)  # a folder where the run writes its config
    with pytest.raises(toflow.ConfigError, match=rf"^trainer.log_dir: cannot write the run directory {run} "
                                                 rf"\(cannot write {run / 'config.yaml'} \(Is a directory\); "):
        toflow.train(load_config(TOY_CONFIG, [*SMALL, f"trainer.log_dir={run}"]))


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


def test_resuming_a_run_that_has_no_checkpoint_is_one_line(tmp_path: Path):
    run = tmp_path / "run"
    with pytest.raises(toflow.ConfigError, match=rf"^trainer.resume: no checkpoint to resume at "
                                                 rf"{run / 'checkpoints' / 'last.ckpt'}$"):
        toflow.train(load_config(TOY_CONFIG, [*SMALL, "trainer.resume=true", f"trainer.log_dir={run}"]))
    assert not run.exists()  # the run made the directory, and took it away again


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
    kinds = collections.Counter(m.kind for m in tried)
    assert len(tried) == 14 * len({m.config for m in tried})  # 14 mutations of each shipped config
    for kind in ("misspell", "wrong type"):  # never a valid config: every one is refused
        assert ends[(kind, "refused")] == kinds[kind] > 0, kind
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
        if outcome(mutation, tmp_path) == "refused":  # what the loader refuses, the command refuses
            one_line(done)
        elif mutation.kind == "path at a file":  # valid to the loader; the run finds the file where a folder is due
            assert done.returncode in (0, 2), (mutation.what, done.stderr[-2000:])
            if done.returncode == 2:
                one_line(done)
        else:
            assert done.returncode == 0, (mutation.what, done.stderr[-2000:])


@pytest.mark.parametrize("override", ["model.hidden=[32,", "model.hidden=[32,32", "model.hidden=[32,32]]"])
def test_a_malformed_list_override_is_one_line_everywhere(override, tmp_path: Path, capsys):
    expected = "model.hidden: cannot read the value"
    assert expected in one_line(call_main(run_command.main, [TOY_CONFIG, override], capsys))
    with pytest.raises(toflow.ConfigError, match=expected):
        toflow.load_config(TOY_CONFIG, [override])
    run = tmp_path / "run"
    toflow.train(load_config(TOY_CONFIG, [*SMALL, "trainer.max_steps=1", f"trainer.log_dir={run}"]))
    from toflow.trainers import evaluate as evaluate_command

    assert expected in one_line(call_main(evaluate_command.main, [run, override], capsys))


@pytest.mark.parametrize("override,message", [
    ("model.hidden=5", "model.hidden: expected a list of whole numbers, e.g. [64,64], got 5"),
    ("model.activation=null", "model.activation: expected a name, got null"),
    ("model=5", "model: expected a section of keys, got 5"),
    ("trainer.max_steps=many", "trainer.max_steps: expected a whole number, got many"),
    ("=5", "=5: an override needs a key before '='"),
])
def test_type_errors_are_said_in_plain_words(override, message, capsys):
    said = one_line(call_main(run_command.main, [TOY_CONFIG, override], capsys))
    assert said == f"error: {message}"
    assert not any(word in said for word in ("AnyNode", "ListConfig", "Merge error", "subclass", "Incompatible"))


def test_debug_shows_the_traceback_instead_of_one_line():
    with pytest.raises(toflow.ConfigError, match="^seed: an override must read key=value$"):
        run_command.main([TOY_CONFIG, "seed", "--debug"])


def test_run_without_a_config_says_what_to_give(capsys):
    assert one_line(call_main(run_command.main, [], capsys)) == "error: config: give a YAML config, or --resume RUN_DIR"


def test_an_empty_or_directory_config_and_a_misplaced_resume_are_one_line(tmp_path: Path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert "is empty" in one_line(call_main(run_command.main, [empty], capsys))
    assert "is a directory, not a YAML file" in one_line(call_main(run_command.main, [tmp_path], capsys))
    run = tmp_path / "run"
    toflow.train(load_config(TOY_CONFIG, [*SMALL, "trainer.max_steps=1", f"trainer.log_dir={run}"]))
    said = one_line(call_main(run_command.main, [TOY_CONFIG, "--resume", run], capsys))
    assert "continues with its own config; leave configs/toy_checkerboard_toflow.yaml out" in said
    if not __import__("torch").cuda.is_available():
        said = one_line(call_main(run_command.main, [TOY_CONFIG, "trainer.accelerator=gpu"], capsys))
        assert said.startswith("error: trainer.accelerator: gpu asked for, but torch finds no GPU")


def test_resume_and_evaluate_compare_with_the_checkpoints_own_config(tmp_path: Path, capsys):
    run = tmp_path / "run"
    toflow.train(load_config(TOY_CONFIG, [*SMALL, "trainer.max_steps=2", f"trainer.log_dir={run}"]))
    from omegaconf import OmegaConf

    edited = OmegaConf.load(run / "config.yaml")
    edited.model.hidden = [8, 8]
    OmegaConf.save(edited, run / "config.yaml")  # another width, written into the run's own config file
    said = one_line(call_main(run_command.main, ["--resume", run, "trainer.max_steps=4"], capsys))
    assert "model.hidden: [16, 16] in the run, [8, 8] given" in said
    from toflow.trainers import evaluate as evaluate_command

    said = one_line(call_main(evaluate_command.main, [run, "model.hidden=[8]"], capsys))
    assert "model.hidden: [16, 16] in the run, [8] given" in said and "solver.*" in said
    assert call_main(evaluate_command.main, [run, "solver.test_atol=1e-6"], capsys).returncode == 0


def test_a_checkpoint_that_is_not_one_is_plain(tmp_path: Path):
    from toflow.errors import CheckpointError
    from toflow.trainers.reliability import load_checkpoint

    foreign = tmp_path / "foreign.ckpt"
    foreign.write_text("seed: 0\n")  # a config given where a checkpoint is asked for
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(foreign)
    assert str(info.value) == f"checkpoint: {foreign} is truncated, altered or not a checkpoint (it cannot be read)"
    import torch

    with_code = tmp_path / "with_code.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "toflow": Path("a/path")}, with_code)  # an object of code
    with pytest.raises(CheckpointError, match="holds Python objects besides tensors and plain values"):
        load_checkpoint(with_code)


def test_a_checkpoint_that_does_not_fit_its_config_is_one_line(tmp_path: Path):
    from toflow.errors import CheckpointError

    checkpoint = untrained_checkpoint(tmp_path / "flow.ckpt", config=["model.hidden=[8]"],
                                      weights=["model.hidden=[16]"])
    with pytest.raises(CheckpointError, match=rf"^checkpoint: {checkpoint} does not fit the flow its config describes "
                                              r"\(Error\(s\) in loading state_dict for CNF:\)$"):
        toflow.load_flow(checkpoint)


def test_sample_and_animate_refuse_their_arguments_in_one_line(tmp_path: Path, capsys):
    from toflow.trainers import animate, sample

    checkpoint = untrained_checkpoint(tmp_path / "flow.ckpt")
    said = one_line(call_main(sample.main, [checkpoint, "--out", tmp_path / "samples.gif"], capsys))
    assert said == f"error: --out: {tmp_path / 'samples.gif'} should end in .png, .pt, .npy"
    said = one_line(call_main(sample.main, [checkpoint, "--n", "0"], capsys))
    assert said == "error: --n and --temperature: must be positive, got 0 and 1.0"
    said = one_line(call_main(sample.main, [checkpoint, "--temperature", "0"], capsys))
    assert said == "error: --n and --temperature: must be positive, got 2000 and 0.0"
    said = one_line(call_main(animate.main, [checkpoint, "--frames", "1"], capsys))
    assert said == "error: --frames: at least 2, got 1"


def test_a_file_a_command_cannot_use_is_named_in_one_line(tmp_path: Path, capsys):
    from toflow.trainers import sample

    checkpoint = untrained_checkpoint(tmp_path / "flow.ckpt")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    said = one_line(call_main(sample.main, [checkpoint, "--n", "5", "--out", a_file / "samples.pt"], capsys))
    assert said == f"error: cannot use {a_file} (File exists)"


def test_an_empty_grid_axis_is_one_line(tmp_path: Path):
    from toflow.study import load_study

    study = tmp_path / "study.yaml"
    study.write_text(f"base: {TOY_CONFIG}\ngrid:\n  time.mode: []\n")
    with pytest.raises(toflow.ConfigError, match=r"^grid.time.mode: give at least one value"):
        load_study(study)


def test_sample_refuses_more_than_memory_holds(tmp_path: Path, capsys):
    from toflow.trainers import sample as sample_command

    run = tmp_path / "run"
    toflow.train(load_config(TOY_CONFIG, [*SMALL, "trainer.max_steps=1", f"trainer.log_dir={run}"]))
    said = one_line(call_main(sample_command.main, [run, "--n", "100000000000"], capsys))
    assert said.startswith("error: --n: 100,000,000,000 samples need about") and "GiB" in said


def test_a_second_run_into_a_directory_in_use_is_refused_and_a_crash_frees_it(tmp_path: Path):
    run = tmp_path / "run"
    first = subprocess.Popen([*RUN, TOY_CONFIG, *SMALL, "trainer.max_steps=100000", f"trainer.log_dir={run}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().startswith("data: ")  # the first run holds its directory
        second = run_cli(*SMALL, "trainer.max_steps=1", f"trainer.log_dir={run}")
        said = one_line(second)
        assert f"trainer.log_dir: {run} is in use by another run (process {first.pid})" in said
        for _ in range(600):  # until it has a checkpoint to resume from
            if (run / "checkpoints" / "last.ckpt").exists():
                break
            time.sleep(0.5)
    finally:
        first.kill()  # a crash: no clean exit, the lock is not let go of by hand
        first.communicate(timeout=60)
    resumed = run_cli(*SMALL, "trainer.max_steps=3", f"trainer.log_dir={run}", "trainer.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_a_failed_run_leaves_no_directory_without_a_checkpoint(tmp_path: Path, capsys):
    run = tmp_path / "run"
    done = call_main(run_command.main, [TOY_CONFIG, *SMALL, "solver.max_steps=1", f"trainer.log_dir={run}"], capsys)
    assert done.returncode == 1 and "solver.max_steps" in done.stderr
    assert not run.exists()


def test_a_write_that_fails_midway_is_one_line_and_leaves_the_last_checkpoint_whole(tmp_path: Path):
    import resource

    run = tmp_path / "run"
    toflow.train(load_config(TOY_CONFIG, [*SMALL, "trainer.max_steps=2", f"trainer.log_dir={run}"]))
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def small_files():  # a file-size limit stands in for a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, len(before) // 2))

    # without line coverage in that process: its data file would meet the same limit
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    done = subprocess.run([*RUN, TOY_CONFIG, *SMALL, "trainer.max_steps=4", "trainer.resume=true",
                           f"trainer.log_dir={run}"], capture_output=True, text=True, timeout=600,
                          preexec_fn=small_files, env=env)
    said = one_line(done)
    assert "cannot write" in said and ("last.ckpt" in said or "best.ckpt" in said or "cannot use" in said), said
    assert last.read_bytes() == before  # the last good state is whole
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]  # no scratch file left behind


def test_the_commands_are_quiet(tmp_path: Path):
    run = tmp_path / "run"
    done = run_cli(*SMALL, "trainer.max_steps=2", f"trainer.log_dir={run}")
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = run_cli(*SMALL, "trainer.max_steps=3", f"trainer.log_dir={run}", "trainer.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for said in (done.stdout + done.stderr, resumed.stdout + resumed.stderr):
        for banner in ("GPU available", "TPU available", "Tip:", "weights_only", "is not empty", "LOCAL_RANK"):
            assert banner not in said, (banner, said[-2000:])
    verbose = run_cli(*SMALL, "trainer.max_steps=1", f"trainer.log_dir={tmp_path / 'loud'}", "--verbose")
    assert "GPU available" in verbose.stdout + verbose.stderr
