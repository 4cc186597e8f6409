"""The end-time modes and TO-FLOW's T step (paper sec. 3.1-3.2)."""

import math

import pytest
import torch
from helpers import tiny_cnf

from toflow.config import load_config
from toflow.models import CNF, ConcatSquashMLP, EndTime
from toflow.trainers import FlowModule, temporal_step

X = torch.randn(64, 2, generator=torch.Generator().manual_seed(3)) * 2


def toy_flow(mode, grad="after_step", T0=0.5, alpha=0.1, eps=0.1):
    return tiny_cnf((16, 16), mode=mode, grad=grad, T=T0, alpha=alpha, eps=eps, dtype=torch.float32)


def module_for(mode, **time):
    overrides = [f"time.mode={mode}", "model.hidden=[16,16]", "data.test_size=10"]
    overrides += [f"time.{k}={v}" for k, v in time.items()]
    return FlowModule(load_config(None, overrides))


def weights_step(flow, optimizers):
    loss = -flow.log_prob(X).mean()
    for opt in optimizers:
        opt.zero_grad()
    loss.backward()
    optimizers[0].step()


@pytest.mark.parametrize("grad", ["after_step", "same_pass"])
def test_t_step_never_leaves_the_clip_interval(grad):
    flow = toy_flow("toflow", grad=grad, alpha=0.0)
    opt = torch.optim.Adam([flow.end_time.T], lr=0.3)
    lo, hi = flow.end_time.bounds
    assert (lo, hi) == pytest.approx((0.1, 0.9))
    seen = []
    for _ in range(12):
        flow.zero_grad()
        (-flow.log_prob(X).mean()).backward()
        temporal_step(flow, opt)
        seen.append(float(flow.end_time.T))
        assert lo - 1e-7 <= seen[-1] <= hi + 1e-7
    assert len(set(seen)) > 1


def test_t_step_clips_at_the_bound():
    flow = toy_flow("toflow", grad="same_pass")
    opt = torch.optim.SGD([flow.end_time.T], lr=1.0)
    flow.end_time.T.grad = torch.tensor(-100.0)  # pushes T far above the interval
    temporal_step(flow, opt)
    assert float(flow.end_time.T) == pytest.approx(flow.end_time.bounds[1])
    flow.end_time.T.grad = torch.tensor(+100.0)
    temporal_step(flow, opt)
    assert float(flow.end_time.T) == pytest.approx(flow.end_time.bounds[0])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_temporal_regularisation_adds_alpha_sign_T(sign):
    flow = CNF(ConcatSquashMLP(2, (8,)), EndTime(-2.0, sign * 0.5 if sign > 0 else -1.0, "toflow", alpha=0.3,
                                                 eps=0.1, grad="same_pass"))
    T = flow.end_time.T
    opt = torch.optim.SGD([T], lr=1.0)
    before = float(T)
    T.grad = torch.tensor(0.02)
    used = temporal_step(flow, opt)
    assert used[0] == pytest.approx(0.02 + 0.3 * sign)
    assert float(T) == pytest.approx(before - (0.02 + 0.3 * sign))


def test_alternating_step_uses_eq_12_13_plus_tr():
    flow = toy_flow("toflow", grad="after_step", alpha=0.25)
    (-flow.log_prob(X).mean()).backward()
    used = temporal_step(flow, torch.optim.SGD([flow.end_time.T], lr=0.0))
    # eq. 12-13 by hand: dL/dT = E[z(T) . f(z(T), T)] - E[Tr df/dz(z(T), T)] (grad log N(z) = -z), + alpha sign(T)
    T = flow.end_time.T.detach()
    with torch.no_grad():
        z = flow.transform(X).z
    field = flow.field

    def f(point):
        return field(T, point[None])[0]

    jacobians = torch.stack([torch.autograd.functional.jacobian(f, point) for point in z])
    with torch.no_grad():
        expected = (z * field(T, z)).sum(1).mean() - jacobians.diagonal(dim1=1, dim2=2).sum(1).mean() + 0.25
    assert used[0] == pytest.approx(float(expected), rel=1e-4)


def test_fixed_never_moves_T():
    module = module_for("fixed")
    optimizers = module.configure_optimizers()
    assert len(optimizers) == 1
    assert not module.flow.end_time.T.requires_grad
    assert not module.flow.end_time.t_span().requires_grad
    for _ in range(3):
        weights_step(module.flow, optimizers)
    assert float(module.flow.end_time.T) == 0.5


def test_joint_moves_T_through_the_weights_optimizer():
    module = module_for("joint")
    optimizers = module.configure_optimizers()
    assert len(optimizers) == 1
    T = module.flow.end_time.T
    assert any(T is p for group in optimizers[0].param_groups for p in group["params"])
    weights_step(module.flow, optimizers)
    assert T.grad is not None and float(T) != 0.5


def test_toflow_has_its_own_optimizer_for_T():
    module = module_for("toflow")
    weights, times = module.configure_optimizers()
    T = module.flow.end_time.T
    assert not any(T is p for group in weights.param_groups for p in group["params"])
    assert times.param_groups[0]["params"] == [T] and times.param_groups[0]["lr"] == 1e-2


def test_steer_samples_inside_the_interval_and_evaluates_at_T0():
    end_time = EndTime(0.0, 0.5, "steer", eps=0.1, seed=7)
    draws = torch.stack([end_time.t_span()[1] for _ in range(500)])
    assert draws.min() >= 0.1 and draws.max() <= 0.9
    assert draws.std() > 0.15  # uniform on [0.1, 0.9] has std 0.23
    end_time.eval()
    assert float(end_time.t_span()[1]) == 0.5
    again = EndTime(0.0, 0.5, "steer", eps=0.1, seed=7)
    assert torch.equal(torch.stack([again.t_span()[1] for _ in range(500)]), draws)  # seeded


def test_steer_draw_state_survives_a_state_dict_round_trip():
    a = EndTime(0.0, 0.5, "steer", seed=1)
    for _ in range(3):
        a.t_span()
    b = EndTime(0.0, 0.5, "steer", seed=99)
    b.load_state_dict(a.state_dict())
    assert float(a.t_span()[1]) == float(b.t_span()[1])


def test_an_end_time_prints_its_mode_interval_and_alpha():
    end_time = EndTime(0.0, 0.5, "toflow", alpha=0.2, eps=0.1)
    assert end_time.alpha == 0.2
    assert repr(end_time) == "EndTime(mode=toflow, grad=after_step, T=0.5000, T0=0.5, clip=[0.1, 0.9], alpha=0.2)"


def test_a_non_finite_T_gradient_moves_nothing():
    flow = toy_flow("toflow", grad="same_pass")
    T = flow.end_time.T
    opt = torch.optim.SGD([T], lr=1.0)
    T.grad = torch.tensor(float("nan"))
    step = temporal_step(flow, opt)
    assert step.finite is False and float(T) == 0.5 and T.grad is None
    assert math.isnan(step[0])  # the step says which gradient it refused
    T.grad = torch.tensor(0.1)
    step = temporal_step(flow, opt)
    assert step.finite is True and step[0] == pytest.approx(0.1 + 0.1) and float(T) == pytest.approx(0.3)
    assert T.grad is None  # cleared for the next step


def test_the_after_step_gradient_is_reduced_over_processes_before_the_regularisation():
    flow = toy_flow("toflow", grad="after_step", alpha=0.25)
    (-flow.log_prob(X).mean()).backward()
    alone = float(flow.blocks()[0].dloss_dT())
    # a reduction that averages with a process whose gradient is 0, as DDP's mean over two would
    used = temporal_step(flow, torch.optim.SGD([flow.end_time.T], lr=0.0), reduce=lambda g: g / 2)
    assert used[0] == pytest.approx(alone / 2 + 0.25)


def test_evaluation_is_seeded_and_leaves_training_alone():
    from toflow.trainers import mean_nll
    from toflow.trainers.plots import density_grid

    flow = CNF(ConcatSquashMLP(2, (8,)), EndTime(0.0, 0.5, "steer"), trace="hutchinson")
    state = torch.get_rng_state()
    first = mean_nll(flow, X, batch_size=16)
    density_grid(flow, n=8)
    assert mean_nll(flow, X, batch_size=16) == first  # the same probes every time
    assert torch.equal(torch.get_rng_state(), state) and flow.training  # training's stream and mode untouched
    flow.eval()
    assert float(flow.end_time.t_span()[1]) == 0.5  # evaluation ran at T0, not at a STEER draw


def test_an_end_time_has_the_configs_defaults_and_refuses_each_bad_value_at_its_edge():
    from toflow.config.schema import TimeConfig

    default, config = EndTime(), TimeConfig()  # the Python default is fixed T; the rest is the config's
    assert default.mode == "fixed" and float(default.t0) == config.t0 and float(default.T) == config.T0
    assert (default.lr, default.alpha, default.eps, default.grad_source) == (config.lr, config.alpha, config.eps,
                                                                              config.grad)
    assert default.bounds == pytest.approx((0.1, 0.9))  # eq. 17 with T0 = 0.5, eps = 0.1
    assert EndTime(eps=0.0).bounds == pytest.approx((0.0, 1.0))  # eps = 0 is allowed
    refusals = [
        (dict(grad="sideways"), "time.grad: 'sideways' is not one of after_step, same_pass"),
        (dict(t0=0.5, T0=0.5), "time.T0: must exceed time.t0 = 0.5, got 0.5"),
        (dict(t0=0.25, T0=0.5, eps=0.25), "time.eps: must lie in [0, T0 - t0 = 0.25) so the clip interval "
                                          "[t0+eps, 2*T0-t0-eps] is not empty, got 0.25"),
        (dict(eps=-0.01), "time.eps: must lie in [0, T0 - t0 = 0.5)"),
        (dict(lr=0.0), "time.lr: must be positive, got 0.0"),
    ]
    for kwargs, message in refusals:
        with pytest.raises(ValueError) as refused:
            EndTime(**kwargs)
        assert str(refused.value).startswith(message), (kwargs, str(refused.value))
