"""Bad configs are refused with one line that names the key."""

import pytest

from toflow.config import ConfigError, load_config


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
