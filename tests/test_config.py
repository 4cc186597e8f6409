"""Bad configs are refused with one line that names the key."""

import pytest

from toflow.config import ConfigError, from_dict, load_config


def refused(*overrides):
    with pytest.raises(ConfigError) as info:
        load_config("configs/toy_checkerboard_toflow.yaml", list(overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_shipped_configs_load():
    for mode in ("fixed", "joint", "steer", "toflow"):
        cfg = load_config(f"configs/toy_checkerboard_{mode}.yaml")
        assert cfg.time.mode == mode and cfg.name == f"toy_checkerboard_{mode}"
    from pathlib import Path

    for path in Path("configs").glob("*.yaml"):
        if not path.name.startswith("study"):
            assert load_config(path).name == path.stem


def test_image_configs_carry_the_papers_settings():
    for name in ("mnist", "fashion_mnist", "cifar"):
        for mode in ("fixed", "steer", "toflow"):
            cfg = load_config(f"configs/{name}_{mode}.yaml")
            assert (cfg.data.batch_size, cfg.optim.lr, cfg.time.T0, cfg.time.lr, cfg.time.alpha, cfg.time.eps) == (
                200, 1e-3, 1.0, 1e-2, 0.1, 0.1)
            assert cfg.time.mode == mode and cfg.model.hidden == [64, 64, 64]


def test_overrides_apply():
    cfg = load_config("configs/toy_checkerboard_toflow.yaml", ["trainer.max_steps=7", "solver.atol=1e-3",
                                                               "model.hidden=[8,8]", "seed=3"])
    assert (cfg.trainer.max_steps, cfg.solver.atol, cfg.model.hidden, cfg.seed) == (7, 1e-3, [8, 8], 3)


def test_unknown_key_is_named_with_a_suggestion():
    message = refused("trainer.max_step=5")
    assert message.startswith("trainer.max_step:") and "trainer.max_steps" in message


def test_wrong_type_is_named():
    assert refused("trainer.max_steps=many").startswith("trainer.max_steps:")


def test_eps_must_leave_a_clip_interval():
    assert refused("time.eps=0.5").startswith("time.eps:")
    assert refused("time.eps=0.7").startswith("time.eps:")


@pytest.mark.parametrize("key", ["solver.atol", "solver.rtol", "solver.test_atol"])
def test_negative_tolerance_is_refused(key):
    assert refused(f"{key}=-1e-5").startswith(f"{key}:")


def test_unknown_choice_is_refused():
    assert refused("time.mode=sometimes").startswith("time.mode:")
    assert refused("solver.sensitivity=interpolated_adjoint").startswith("solver.sensitivity:")


def test_missing_file_is_refused():
    with pytest.raises(ConfigError, match="file not found"):
        load_config("configs/none.yaml")


def test_a_config_file_that_is_not_a_mapping_of_keys_or_not_text_is_one_line(tmp_path):
    listed = tmp_path / "listed.yaml"
    listed.write_text("- seed: 0\n- name: x\n")
    with pytest.raises(ConfigError, match=r"^config: .*listed.yaml does not hold a mapping of keys$"):
        load_config(listed)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe seed: 0\n")
    with pytest.raises(ConfigError, match=r"^config: cannot read .*binary.yaml \('utf-8' codec can't decode"):
        load_config(binary)


def test_a_checkpoints_config_is_checked_against_the_schema():
    with pytest.raises(ConfigError, match=r"^sed: unknown key \(did you mean 'seed'\?\)$"):
        from_dict({"sed": 5})
    with pytest.raises(ConfigError, match=r"^seed: expected a whole number, got 'abc'$"):
        from_dict({"seed": "abc"})


@pytest.mark.parametrize("overrides,key", [
    (["solver.step_size=0.1"], "solver.step_size"),  # dopri5 has adaptive steps
    (["solver.name=aca", "solver.sensitivity=adjoint"], "solver.sensitivity"),  # ACA is its own gradient method
    (["solver.name=mali", "solver.sensitivity=autograd"], "solver.sensitivity"),
    (["model.probe=gaussian"], "model.probe"),  # the exact trace draws no probe
    (["model.num_blocks=2"], "model.num_blocks"),  # the 2-D flow has one block
    (["data.resize=14"], "data.resize"),
])
def test_a_setting_the_component_does_not_take_is_refused(overrides, key):
    message = refused(*overrides)
    assert message.startswith(f"{key}:") and "not used" in message


@pytest.mark.parametrize("overrides,message", [
    (["seed"], "seed: an override must read key=value"),
    (["seed=!!int x"], "seed: cannot read the value '!!int x' (a YAML tag that does not fit it?)"),
    (["model.hidden={a: 1}"], "model.hidden: expected a list of whole numbers, e.g. [64,64], got {a: 1}"),
    (["model.hidden[0]=x"], "model.hidden[0]: expected a whole number, got x"),
    (["model.hidden=${x"], "model.hidden: expected a list of whole numbers, e.g. [64,64], got another kind of value"),
    (["nme=${oops"], "nme: no viable alternative at input '${oops'"),
    (["data=null"], "data: expected a section of keys, got null"),
    (["regularizers=5"], "regularizers: expected a section of name: number entries, e.g. {kinetic: 0.01}, got 5"),
    (["regularizers.kinetic=-0.1"], "regularizers.kinetic: must be non-negative, got -0.1"),
    (["trainer.animate_frames=1"], "trainer.animate_frames: 0 (none) or at least 2, got 1"),
    (["time.lr=0"], "time.lr: must be positive, got 0.0"),
    (["solver.max_steps=0"], "solver.max_steps: must be positive, got 0"),
    (["solver.control=sometimes"], "solver.control: 'sometimes' is not one of all, state"),
    (["solver.sensitivity=adjoint", "solver.memory_budget_mb=100"],
     "solver.memory_budget_mb: a positive budget for sensitivity auto, got 100.0 with sensitivity adjoint"),
    (["solver.name=rk4"], "solver.step_size: rk4 needs a step size (e.g. 0.25 as RNODE)"),
    (["solver.name=rk4", "solver.step_size=0"], "solver.step_size: must be positive, got 0.0"),
    (["model.divergence=sideways"], "model.divergence: 'sideways' is not one of auto, tangents, vjp"),
    (["data.name=mnist", "data.resize=15"], "data.resize: must be even (the multiscale flow squeezes by 2), got 15"),
    (["data.name=mnist", "model.scales=4"], "model.scales: between 1 and 3 for 28x28 images, got 4"),
    (["data.name=mnist", "model.logit_alpha=0.5"], "model.logit_alpha: must lie in [0, 0.5), got 0.5"),
    (["objective.name=flow_matching", "time.mode=fixed", "objective.sigma=-0.1"],
     "objective.sigma: must be non-negative, got -0.1"),
    (["objective.name=flow_matching", "time.mode=fixed", "warm_start.steps=5"],
     "warm_start.steps: the objective is flow matching already; a warm start is flow matching before another "
     "objective"),
])
def test_each_refusal_names_its_key_in_one_line(overrides, message):
    assert refused(*overrides) == message


def test_an_unknown_time_grad_is_refused():
    assert refused("time.grad=sometimes").startswith("time.grad:")


def test_a_hand_built_cnf_has_a_fixed_end_time():
    from toflow.models import CNF, ConcatSquashMLP

    flow = CNF(ConcatSquashMLP(2, (4,)))
    assert flow.end_time.mode == "fixed" and not flow.end_time.T.requires_grad


@pytest.mark.parametrize("solver", ["aca", "mali", "dopri5"])
def test_every_shipped_config_takes_another_solver_in_one_override(solver):
    from pathlib import Path

    configs = sorted(p for p in Path("configs").glob("*.yaml") if not p.name.startswith("study_"))
    assert len(configs) > 20
    for path in configs:
        assert load_config(path, [f"solver.name={solver}"]).solver.name == solver, path
    # a setting that truly does not apply is still refused
    assert refused("solver.name=aca", "solver.sensitivity=auto", "solver.memory_budget_mb=100").startswith(
        "solver.memory_budget_mb:")
