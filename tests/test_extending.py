"""A new solver, a new regulariser and a new time mode are one function or class and one
registry line, added from outside the package, and then trained from a config."""

import math
from dataclasses import dataclass

import pytest
import torch

import toflow
from toflow.config import ConfigError, load_config
from toflow.models import CNF, TIME_MODES, EndTime, LinearField, TimeMode
from toflow.regularizers import REGULARIZERS, Regularizer
from toflow.solvers import SOLVERS, Dopri5, Tolerance, fixed_step_solver
from toflow.solvers.integrators import FixedGrid
from toflow.solvers.steps import at

SMALL = ["model.hidden=[8,8]", "data.batch_size=64", "data.test_size=50", "trainer.eval_every=2",
         "trainer.viz_every=1000", "trainer.progress_bar=false", "solver.atol=1e-3", "solver.rtol=1e-3",
         "trainer.num_threads=1", "trainer.accelerator=cpu", "trainer.max_steps=2"]


def midpoint_step(f, t, h, y):
    """Explicit midpoint (2 evaluations per step, second order)."""
    k1 = f(at(t, y), y)
    return y + h * f(at(t + 0.5 * h, y), y + (0.5 * h) * k1)


@dataclass(frozen=True)
class TimeWeightedKinetic(Regularizer):
    """g = t * 0.5 ||f||^2 / D: kinetic energy that weighs late times more."""

    name = "time_kinetic"

    def integrand(self, ev):
        return ev.t * 0.5 * ev.f.flatten(1).pow(2).mean(1)


class ShortSteer(TimeMode):
    """STEER's draw from the lower half of the clip interval only: [t0 + eps, T0]."""

    name, draws = "short_steer", True

    def draw(self, end_time):
        lo, _ = end_time.bounds
        return lo + (end_time.T0 - lo) * float(torch.rand((), generator=end_time.generator, dtype=torch.float64))


@pytest.fixture
def registered():
    SOLVERS.register(fixed_step_solver("midpoint", midpoint_step))
    REGULARIZERS.register(TimeWeightedKinetic)
    TIME_MODES.register(ShortSteer)
    yield
    SOLVERS.unregister("midpoint")
    REGULARIZERS.unregister("time_kinetic")
    TIME_MODES.unregister("short_steer")


def test_a_registered_step_function_integrates_at_its_order(registered):
    A = torch.tensor([[-0.3, 0.8], [-0.5, 0.2]], dtype=torch.float64)
    y0 = torch.randn(5, 2, dtype=torch.float64)
    errors = []
    for h in (0.1, 0.05):
        grid = FixedGrid(SOLVERS["midpoint"].step, h)
        y1, _ = grid.integrate(lambda t, y: y @ A.T, y0, 0.0, 1.0, Tolerance(1, 1), 100)
        errors.append(float((y1 - y0 @ torch.matrix_exp(A).T).abs().max()))
    assert abs(math.log2(errors[0] / errors[1]) - 2) < 0.25


def test_a_registered_regulariser_gets_t_and_f(registered):
    class Constant(torch.nn.Module):
        dim = 3

        def __init__(self):
            super().__init__()
            self.v = torch.nn.Parameter(torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64))

        def forward(self, t, z):
            return self.v + 0 * z

    flow = CNF(Constant(), EndTime(0.25, 1.0), Dopri5(atol=1e-10, rtol=1e-10), [TimeWeightedKinetic(1.0)]).double()
    out = flow.transform(torch.randn(4, 3, dtype=torch.float64))
    # int_{0.25}^{1} t dt * 0.5 ||v||^2 / 3
    expected = (1.0 - 0.25**2) / 2 * 0.5 * (0.09 + 1.44 + 4.0) / 3
    assert torch.allclose(out.regularization["time_kinetic"], torch.full((4,), expected, dtype=torch.float64))


def test_a_registered_time_mode_draws_its_T():
    TIME_MODES.register(ShortSteer)
    try:
        end_time = EndTime(0.0, 0.5, "short_steer", eps=0.1)
        draws = torch.stack([end_time.t_span()[1] for _ in range(300)])
        end_time.eval()
        at_evaluation = float(end_time.t_span()[1])
    finally:
        TIME_MODES.unregister("short_steer")
    assert draws.min() >= 0.1 and draws.max() <= 0.5 and draws.std() > 0.08  # U[0.1, 0.5]: std 0.115
    assert at_evaluation == 0.5


def test_all_three_train_two_steps_from_a_config(registered, tmp_path):
    cfg = load_config("configs/toy_checkerboard_toflow.yaml", [
        *SMALL, "solver.name=midpoint", "solver.step_size=0.1", "regularizers.time_kinetic=0.1",
        f"trainer.log_dir={tmp_path / 'run'}"])
    summary = toflow.train(cfg)
    assert summary["steps"] == 2 and summary["solver"] == "midpoint"
    assert summary["nfe_forward_mean"] >= 2 * 5  # five midpoint steps of 0.1 on [0, 0.5]
    assert summary["end_times"][0] != 0.5 and math.isfinite(summary["test_nll"])
    cfg = load_config("configs/toy_checkerboard_toflow.yaml", [
        *SMALL, "time.mode=short_steer", f"trainer.log_dir={tmp_path / 'steer'}"])
    summary = toflow.train(cfg)
    assert summary["steps"] == 2 and summary["mode"] == "short_steer" and summary["end_times"] == [0.5]


def test_config_keys_come_from_the_registries(registered):
    assert load_config(None, ["solver.name=midpoint", "solver.step_size=0.2"]).solver.name == "midpoint"
    with pytest.raises(ConfigError, match="regularizers.time_kinetc: unknown .*'regularizers.time_kinetic'"):
        load_config(None, ["regularizers.time_kinetc=0.1"])


def test_unregistered_names_are_refused():
    with pytest.raises(ConfigError, match="solver.name: 'midpoint' is not one of"):
        load_config(None, ["solver.name=midpoint", "solver.step_size=0.2"])


def test_a_regulariser_needing_what_the_trace_cannot_give_is_refused():
    @dataclass(frozen=True)
    class ProbeAligned(Regularizer):
        name = "probe_aligned"
        needs = ("vjp",)

        def integrand(self, ev):
            return (ev.jacobian["vjp"] * ev.probe).sum(1)

    A = torch.eye(2)
    with pytest.raises(ValueError, match="regularizers.probe_aligned: needs vjp, which the exact trace"):
        CNF(LinearField(A), regularizers=[ProbeAligned(1.0)], trace="exact")
    flow = CNF(LinearField(A), regularizers=[ProbeAligned(1.0)], trace="hutchinson")
    out = flow.transform(torch.randn(6, 2))  # e^T J e = e^T e = 2 for a Rademacher e and J = I
    assert torch.allclose(out.regularization["probe_aligned"], torch.full((6,), 2 * 0.5))


def test_a_registry_builds_a_plain_function_and_names_what_it_takes():
    from toflow.registry import Registry

    things = Registry("thing.name", settings="thing")

    @things.register(name="scaled")
    def scaled(factor=1.0, *, offset=0.0):
        return factor, offset

    assert things.names() == ("scaled",) and dict(things.items()) == {"scaled": scaled}
    assert things.settings("scaled") == ("factor", "offset")
    assert things.build("scaled", factor=2.0, offset=None) == (2.0, 0.0)  # None: the function's default
    with pytest.raises(ValueError, match=r"^thing.size: not used by scaled \(it takes factor, offset; leave "
                                         r"thing.size null\)$"):
        things.build("scaled", size=3)


def test_flow_ode_is_loaded_where_it_is_first_asked_for():
    from toflow.solvers.neural_ode import FlowODE

    assert toflow.solvers.FlowODE is FlowODE
