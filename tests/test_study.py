"""The study runner: a grid of arms, a table with every column, finished arms skipped."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import call_main

from toflow.config import ConfigError
from toflow.study import (
    COLUMNS,
    Curve,
    StudyConfig,
    arms,
    baselines,
    curve,
    first_reached,
    load_study,
    run_study,
    targets,
    total_end_time,
    training_clock,
)

SMALL = ["trainer.max_steps=5", "model.hidden=[8]", "data.batch_size=32", "data.test_size=64",
         "trainer.eval_every=5", "trainer.viz_every=5", "trainer.checkpoint_every=5", "solver.atol=1e-3",
         "solver.rtol=1e-3"]


def write_study(tmp_path: Path, grid: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(f"base: configs/toy_checkerboard_toflow.yaml\noverrides: {SMALL}\ngrid:\n{grid}\n"
                    f"seeds: [0]\nout: {tmp_path / 'out'}\n")
    return path


def test_grid_expands_keys_and_labelled_bundles():
    grid = {"time.mode": ["fixed", "toflow"], "spatial": {"none": {}, "ot": {"regularizers.kinetic": 0.01}}}
    names = [arm.name for arm in arms(grid)]
    assert names == ["time.mode=fixed,spatial=none", "time.mode=fixed,spatial=ot",
                     "time.mode=toflow,spatial=none", "time.mode=toflow,spatial=ot"]
    assert arms(grid)[1].overrides == ("time.mode=fixed", "regularizers.kinetic=0.01")


def test_a_baseline_of_some_labels_compares_within_the_other_axes():
    grid = {"data.name": ["moons", "rings"], "time.mode": ["fixed", "toflow"], "model.hidden": [[8, 8], [16]]}
    of = baselines(arms(grid), "time.mode=fixed")
    rings, moons = "data.name=rings,time.mode=", "data.name=moons,time.mode="
    assert of[rings + "toflow,model.hidden=[8,8]"] == rings + "fixed,model.hidden=[8,8]"
    assert of[moons + "fixed,model.hidden=[16]"] == moons + "fixed,model.hidden=[16]"
    assert set(baselines(arms(grid), "time.mode=fixed,model.hidden=[8,8]").values()) == {
        "data.name=moons,time.mode=fixed,model.hidden=[8,8]", "data.name=rings,time.mode=fixed,model.hidden=[8,8]"}
    whole = "data.name=moons,time.mode=toflow,model.hidden=[16]"
    assert set(baselines(arms(grid), whole).values()) == {whole}  # a whole arm's name: every arm against it
    assert set(baselines(arms(grid), None).values()) == {arms(grid)[0].name}
    for bad in ("time.mode=steer", "solver.name=rk4", "fixed"):
        with pytest.raises(ConfigError, match=f"baseline: '{bad}' is neither an arm"):
            baselines(arms(grid), bad)


def test_a_grid_without_axes_is_the_base_and_an_axis_must_be_a_list_or_bundles():
    from toflow.study.grid import Arm

    assert arms({}) == [Arm("base", ())]
    with pytest.raises(ConfigError, match=r"^grid.time.mode: give a list of values or a mapping of labelled bundles$"):
        arms({"time.mode": "fixed"})


@pytest.mark.parametrize("text,message", [
    ("sedes: [0]\n", r"^sedes: unknown key \(did you mean 'seeds'\?\)$"),
    ("parallel: 0\n", r"^parallel: must be at least 1, got 0$"),
    ("seeds: []\n", r"^seeds: give at least one seed$"),
])
def test_a_bad_study_file_is_one_line(text, message, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_study(path)


def test_the_shipped_studies_load_with_every_arm_valid():
    for path in Path("configs").glob("study*.yaml"):
        study = load_study(path)  # refuses a study with an arm whose config does not load
        assert len(arms(study.grid)) >= 2, path


def test_training_clock_sums_step_times_and_counts_a_redone_step_once():
    # steps 1-3 at 0.5 s; killed after step 3, resumed from the step-2 checkpoint: step 3 redone at 0.25 s
    logged = [(1, 0.5), (2, 0.5), (3, 0.5), (3, 0.25), (4, 0.25)]
    clock = training_clock([SimpleNamespace(step=step, value=value) for step, value in logged])
    assert [clock(step) for step in (0, 1, 2, 3, 4, 9)] == [0.0, 0.5, 1.0, 1.25, 1.5, 1.5]


def test_two_arm_study_writes_the_table_and_skips_finished_arms(tmp_path: Path, capsys):
    study = load_study(write_study(tmp_path, "  time.mode: [fixed, toflow]"))
    results = run_study(study)
    assert list(results) == ["time.mode=fixed", "time.mode=toflow"]
    table = (tmp_path / "out" / "results.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| arm"))
    assert all(column in header for column in COLUMNS)
    rows = [line for line in table.split("Time to quality")[0].splitlines() if line.startswith("| time.mode=")]
    assert len(rows) == 2 and all(row.count("|") == len(COLUMNS) + 1 for row in rows)
    quality = [line for line in table.splitlines() if line.startswith("| time.mode=fixed | fixed_final")]
    assert len(quality) == 1 and quality[0].endswith("| 1 of 1 |")  # the baseline reaches its own final NLL
    # the other arm's ratios and time to quality, from its own summary and events
    fixed, toflow = results["time.mode=fixed"][0], results["time.mode=toflow"][0]
    row = next(r for r in rows if r.startswith("| time.mode=toflow |")).split("|")
    columns = ["", *COLUMNS, ""]

    def nfe(summary):
        return summary["nfe_forward_mean"] + summary["nfe_backward_mean"]

    assert row[columns.index("NFE vs baseline")].strip() == f"{nfe(toflow) / nfe(fixed):.2f}x"
    assert row[columns.index("time vs baseline")].strip() == \
        f"{toflow['time_per_iter_s'] / fixed['time_per_iter_s']:.2f}x"
    goal = fixed["test_nll"]
    reached = first_reached(curve(tmp_path / "out" / "time.mode=toflow" / "seed0"), goal)
    line = next(line for line in table.splitlines() if line.startswith("| time.mode=toflow | fixed_final"))
    if reached is None:
        assert "not reached" in line
    else:
        seconds, work = reached
        assert f"| {seconds:.0f} |" in line or f"| {seconds:.2f} |" in line
        assert f"| {work:.0f} |" in line
    assert (tmp_path / "out" / "nll_vs_nfe.png").is_file()
    assert (tmp_path / "out" / "nll_vs_wall.png").is_file() and (tmp_path / "out" / "nfe_vs_step.png").is_file()
    assert (tmp_path / "out" / "panels.png").is_file()
    fixed_T = total_end_time(tmp_path / "out" / "time.mode=fixed" / "seed0")
    assert [e.step for e in fixed_T] == list(range(5)) and all(e.value == pytest.approx(0.5) for e in fixed_T)
    summary = tmp_path / "out" / "time.mode=fixed" / "seed0" / "summary.json"
    stamp = summary.stat().st_mtime_ns

    capsys.readouterr()
    again = run_study(study)
    assert "finished, skipped" in capsys.readouterr().out
    assert summary.stat().st_mtime_ns == stamp
    assert again["time.mode=toflow"][0]["test_nll"] == results["time.mode=toflow"][0]["test_nll"]

    study.overrides, study.grid = [*study.overrides, "trainer.max_steps=7"], {"time.mode": ["toflow"]}
    longer = run_study(study)  # the study now asks for more steps: the finished run continues to them
    assert "time.mode=toflow seed 0: extending to 7 steps" in capsys.readouterr().out
    assert longer["time.mode=toflow"][0]["steps"] == 7
    assert [e.step for e in total_end_time(tmp_path / "out" / "time.mode=toflow" / "seed0")] == list(range(7))


def test_a_failed_run_does_not_stop_the_others(tmp_path: Path, monkeypatch, capsys):
    import toflow.study.runner as runner
    from toflow.errors import TrainingFailed

    study = load_study(write_study(tmp_path, "  time.mode: [fixed, toflow]"))
    real = runner.run_arm

    def fixed_fails(study, arm, seed):
        if arm.name == "time.mode=fixed":
            raise TrainingFailed(f"{arm.name} seed {seed} failed: DataError: cannot read the files")
        return real(study, arm, seed)

    monkeypatch.setattr(runner, "run_arm", fixed_fails)
    with pytest.raises(TrainingFailed, match=r"^1 of 2 runs failed \(time.mode=fixed seed 0 failed: DataError"):
        run_study(study)
    assert "[study] time.mode=fixed seed 0 failed" in capsys.readouterr().out  # said when it happened
    assert (tmp_path / "out" / "time.mode=toflow" / "seed0" / "summary.json").is_file()  # the other one ran
    assert not (tmp_path / "out" / "results.md").exists()  # no table with a run missing


def test_a_run_that_fails_names_the_arm_and_its_last_line(tmp_path, monkeypatch):
    import toflow.study.runner as runner
    from toflow.errors import TrainingFailed

    study = load_study(write_study(tmp_path, "  time.mode: [fixed]"))
    failed = subprocess.CompletedProcess([], 2, "", "a warning\nerror: data.root: cannot read it\n")
    monkeypatch.setattr(runner.subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(TrainingFailed, match=r"^time.mode=fixed seed 0 failed: error: data.root: cannot read it$"):
        runner.run_arm(study, arms(study.grid)[0], 0)
    monkeypatch.setattr(runner.subprocess, "run", lambda *args, **kwargs: subprocess.CompletedProcess([], 1, "", ""))
    with pytest.raises(TrainingFailed, match=r"failed: no output$"):
        runner.run_arm(study, arms(study.grid)[0], 0)


def test_the_report_adds_the_table_at_equal_training_time(tmp_path, monkeypatch):
    import toflow.study.runner as runner

    study = load_study(write_study(tmp_path, "  time.mode: [fixed, toflow]"))
    study.equal_time = True
    curves = {"time.mode=fixed": Curve([5, 10], [3.0, 2.5], [1.0, 2.0], [50, 100]),
              "time.mode=toflow": Curve([5, 10], [2.9, 2.4], [1.5, 2.5], [40, 80])}
    monkeypatch.setattr(runner, "curve", lambda where, metric: curves[where.parent.name])
    monkeypatch.setattr(runner, "plots", lambda *args: None)
    summary = {"test_nll": 2.5, "end_times": [0.5], "nfe_forward_mean": 10.0, "nfe_backward_mean": 20.0,
               "time_per_iter_s": 0.1, "wall_s": 5.0, "sample_nfe": 30}
    text = runner.report(study, arms(study.grid), {name: [summary] for name in curves})
    assert "At equal training time" in text and "| arm | test NLL (nats) at 2 s |" in text
    assert "| time.mode=toflow | 2.9000 | 1 of 1 | n/a | 30 |" in text  # its last evaluation by 2 s (the baseline's)
    assert (tmp_path / "out" / "results.md").read_text() == text


def test_the_study_command_runs_the_study_its_file_and_overrides_describe(tmp_path, monkeypatch, capsys):
    import toflow.study.__main__ as study_command

    path = write_study(tmp_path, "  time.mode: [fixed, toflow]")
    ran = []
    monkeypatch.setattr(study_command, "run_study", ran.append)
    assert call_main(study_command.main, [path, "seeds=[0,1]"], capsys).returncode == 0
    assert ran[0].seeds == [0, 1] and [arm.name for arm in arms(ran[0].grid)] == ["time.mode=fixed", "time.mode=toflow"]
    said = call_main(study_command.main, [path, "parallel=0"], capsys)
    assert said.returncode == 2 and said.stderr == "error: parallel: must be at least 1, got 0\n"


def test_python_m_toflow_study_refuses_a_bad_study_in_one_line(tmp_path):
    path = write_study(tmp_path, "  time.mode: [fixed]")
    done = subprocess.run([sys.executable, "-m", "toflow.study", str(path), "parallel=0"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == "error: parallel: must be at least 1, got 0\n"


def test_a_bad_arm_is_refused_before_anything_runs(tmp_path: Path):
    with pytest.raises(ConfigError, match="time.mode"):
        load_study(write_study(tmp_path, "  time.mode: [fixed, sometimes]"))
    assert not (tmp_path / "out").exists()


def test_time_to_quality_on_curves_computed_by_hand():
    # evaluations at steps 10, 20, 30 with the training time (evaluations left out) and the NFE by then
    run = Curve(steps=[10, 20, 30], values=[5.0, 4.0, 3.0], seconds=[1.5, 3.0, 4.5], nfe=[100, 220, 360])
    assert first_reached(run, 3.5) == (4.5, 360)  # reached between the second and third: counted at the third
    assert first_reached(run, 5.0) == (1.5, 100)  # reached at the first
    assert first_reached(run, 2.0) is None  # never reached
    assert first_reached(run, 4.0 - 1e-7) == (3.0, 220)  # within float32's precision of the logged value
    clock = training_clock([SimpleNamespace(step=s, value=0.15) for s in range(1, 31)])
    assert clock(10) == pytest.approx(1.5) and clock(30) == pytest.approx(4.5)  # step times only


def test_several_seeds_give_a_mean_and_spread_and_a_target_may_be_missed():
    from toflow.study.results import quality_table, table

    def summary(nll):
        return {"test_nll": nll, "end_times": [0.5], "nfe_forward_mean": 10.0, "nfe_backward_mean": 20.0,
                "time_per_iter_s": 0.1, "wall_s": 5.0}

    row = table({"a": [summary(1.0), summary(2.0), summary(3.0)]}).splitlines()[2]
    assert row.startswith("| a | 2.000 +- 1.000 | n/a |") and row.endswith("| 3 |")
    never = Curve(steps=[10, 20], values=[5.0, 4.5], seconds=[1.0, 2.0], nfe=[100, 200])
    text = quality_table({"a": [never]}, {"a": {"fixed_final": 4.0}}, "NLL (nats)")
    assert "| a | fixed_final = 4.0000 | not reached | not reached | 0 of 1 |" in text


def test_the_metric_figure_draws_the_seeds_as_a_band():
    from matplotlib.collections import PolyCollection

    from toflow.study.figures import Drawn, metric_figure

    runs = [Curve([10, 20], [5.0, 4.0], [1.0, 2.0], [100, 200]), Curve([10, 20], [5.5, 3.5], [1.2, 2.2], [110, 210])]
    fig = metric_figure([Drawn("a", runs, [], [], [])], "steps", "step", "title", "NLL (nats)")
    ax, = fig.axes
    assert [line.get_ydata().tolist() for line in ax.get_lines()] == [[5.25, 3.75]]
    assert any(isinstance(c, PolyCollection) for c in ax.collections)  # the band from the lowest to the highest


def test_targets_come_from_the_baseline_arm():
    study = StudyConfig(targets=["fixed_final", "fixed_half", 2.5], baseline="fixed")
    curves = {"other": [], "fixed": [Curve([100, 200, 300, 400], [6.0, 5.0, 4.0, 3.5], [1, 2, 3, 4], [1, 2, 3, 4]),
                                      Curve([100, 200, 300, 400], [6.0, 4.6, 4.2, 3.3], [1, 2, 3, 4], [1, 2, 3, 4])]}
    goals = targets(study, curves, {"fixed": [3.5, 3.3], "other": [9.0]})
    assert goals == pytest.approx({"fixed_final": 3.4, "fixed_half": 4.8, "2.5": 2.5})
    with pytest.raises(ConfigError, match="targets: 'best'"):
        from toflow.study import check_study

        check_study(StudyConfig(targets=["best"], grid={"time.mode": ["fixed", "toflow"]}))


def test_the_time_to_quality_studies_name_their_arms():
    expected = {
        "configs/study_digits.yaml": ["arm=fixed", "arm=steer", "arm=toflow", "arm=toflow_ot", "arm=rnode",
                                      "arm=fm_ot"],
        "configs/study_fashion_mnist_8.yaml": ["arm=fixed", "arm=steer", "arm=toflow", "arm=toflow_ot", "arm=rnode",
                                               "arm=fm_ot"],
        "configs/study_alpha.yaml": ["time.alpha=0.0", "time.alpha=0.01", "time.alpha=0.1", "time.alpha=1.0"],
        "configs/study_eps.yaml": ["time.eps=0.05", "time.eps=0.1", "time.eps=0.3", "time.eps=0.5"],
        "configs/study_spatial.yaml": [f"time.mode={m},spatial={c}" for m in ("fixed", "toflow")
                                       for c in ("0", "0.01", "0.1", "1")],
    }
    for path, names in expected.items():
        study = load_study(path)
        assert [arm.name for arm in arms(study.grid)] == names, path
        assert len(study.seeds) >= (2 if "digits" in path or "fashion" in path else 1)
    fig1 = load_study("configs/study_fig1.yaml")
    assert len(arms(fig1.grid)) == 16


def test_figure_1_draws_data_and_each_modes_density(tmp_path: Path):
    import toflow

    sys.path.insert(0, "bench")
    from fig1 import runs_of

    from toflow.trainers.plots import figure_1

    for mode in ("fixed", "toflow"):
        toflow.train(load_study_free_config(mode, tmp_path / f"data.name=moons,time.mode={mode}" / "seed0"))
    runs = runs_of(tmp_path)
    assert list(runs) == ["moons"] and set(runs["moons"]) == {"fixed", "toflow"}
    fig = figure_1(runs, grid=20)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 3 and titles[0] == "moons: data" and titles[1].startswith("fixed: ")
    assert titles[2].startswith("toflow: ") and titles[2].endswith(" nats")
    fig = figure_1({**runs, "rings": {"fixed": runs["moons"]["fixed"]}}, grid=20)  # rings has no toflow run
    assert len(fig.axes) == 6 and [ax.get_title() for ax in fig.axes][1] == "rings: data"
    assert not fig.axes[5].axison and fig.axes[5].get_title() == ""  # rings, toflow: left blank


def load_study_free_config(mode: str, run: Path):
    from toflow.config import load_config

    return load_config("configs/toy_checkerboard_quick.yaml", [
        "data.name=moons", f"time.mode={mode}", "trainer.max_steps=2", "trainer.eval_every=2", "trainer.viz_every=100",
        "trainer.animate_frames=0", "model.hidden=[8]", "data.batch_size=64", "data.test_size=100",
        "trainer.progress_bar=false", f"trainer.log_dir={run}"])


def test_a_bundle_may_set_a_key_to_null_and_targets_include_the_best_final():
    [arm] = arms({"arm": {"multiscale": {"model.scales": None}}})
    assert arm.overrides == ("model.scales=null",)
    study = StudyConfig(targets=["best_final"], baseline="a")
    assert targets(study, {"a": [], "b": []}, {"a": [3.0, 3.2], "b": [2.9, 3.5]}) == pytest.approx({"best_final": 3.1})


def test_the_equal_time_table_reads_each_curve_at_the_baselines_time():
    from toflow.study.results import equal_time_table, value_at

    run = Curve(steps=[10, 20, 30], values=[5.0, 4.0, 3.0], seconds=[1.0, 2.0, 3.0], nfe=[0, 0, 0])
    assert value_at(run, 2.5) == 4.0 and value_at(run, 3.0) == 3.0 and value_at(run, 0.5) is None
    short = Curve(steps=[10], values=[6.0], seconds=[1.0], nfe=[0])
    text = equal_time_table({"warm": [run, run], "short": [short]},
                            {"warm": [{"sample_nfe": 20, "nfe_per_objective_step": 30.0},
                                      {"sample_nfe": 22, "nfe_per_objective_step": 34.0}],
                             "short": [{"sample_nfe": 9}]}, 2.5, "bits/dim")
    assert "| warm | 4.0000 | 2 of 2 | 32.0 | 21 |" in text
    assert "| short | not trained that long | 0 of 1 | n/a | 9 |" in text
