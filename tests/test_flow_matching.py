"""Flow matching: its path and target, the OT coupling, a density it must reach, refusals,
resume and determinism."""

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import run_cli

import toflow
from toflow.config import load_config
from toflow.models import CNF, ConcatSquashMLP, EndTime
from toflow.objectives import FlowMatching, interpolation, ot_pairing
from toflow.solvers import Dopri5
from toflow.trainers import mean_nll

FM = "configs/toy_checkerboard_fm.yaml"
SMALL = ["model.hidden=[16,16]", "data.batch_size=64", "data.test_size=200", "trainer.eval_every=5",
         "trainer.viz_every=1000", "trainer.checkpoint_every=3", "trainer.progress_bar=false", "solver.atol=1e-4",
         "solver.rtol=1e-4", "trainer.num_threads=1", "trainer.accelerator=cpu"]


def test_the_path_runs_from_the_data_to_the_noise_at_its_velocity():
    y = torch.randn(5, 3, dtype=torch.float64)
    z = torch.randn(5, 3, dtype=torch.float64)
    t0, T = 0.25, 1.5
    psi, _ = interpolation(y, z, torch.full((5,), t0, dtype=torch.float64), t0, T)
    assert torch.equal(psi, y)
    psi, _ = interpolation(y, z, torch.full((5,), T, dtype=torch.float64), t0, T)
    assert torch.allclose(psi, z, atol=1e-15)
    t = torch.rand(5, dtype=torch.float64, requires_grad=True) * (T - t0) + t0
    psi, u = interpolation(y, z, t, t0, T)
    for d in range(3):  # d psi_d / dt, one t per sample
        velocity = torch.autograd.grad(psi[:, d].sum(), t, retain_graph=True)[0]
        assert torch.allclose(velocity, u[:, d], atol=1e-14)


def test_ot_pairing_recovers_a_permutation_and_never_pairs_worse():
    generator = torch.Generator().manual_seed(0)
    y = torch.randn(40, 2, generator=generator) * 3
    permutation = torch.randperm(40, generator=generator)
    z = y[permutation] + 0.01  # a shifted, shuffled copy: the best pairing undoes the shuffle
    assert torch.equal(z[ot_pairing(y, z)], y + 0.01)
    for _ in range(5):
        y, z = torch.randn(64, 2, generator=generator), torch.randn(64, 2, generator=generator)
        paired = (y - z[ot_pairing(y, z)]).pow(2).sum(1).mean()
        assert paired <= (y - z).pow(2).sum(1).mean()


def test_flow_matching_reaches_a_gaussian_density():
    # x ~ N(mu, s^2 I) to N(0, I) on straight paths: the marginal field carries one Gaussian to the
    # other exactly, so a well-trained field's log_prob is log N(x; mu, s^2 I)
    torch.manual_seed(0)
    mu, s = torch.tensor([1.0, -0.5]), 0.5
    flow = CNF(ConcatSquashMLP(2, (32, 32)), EndTime(0.0, 1.0), Dopri5(atol=1e-6, rtol=1e-6), trace="exact")
    objective = FlowMatching()
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 800)
    for _ in range(800):
        loss, _ = objective(flow, mu + s * torch.randn(512, 2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    x = mu + s * torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    analytic = -0.5 * ((x - mu) / s).pow(2).sum(1) - 2 * math.log(s) - math.log(2 * math.pi)
    with torch.no_grad():
        logp = flow.log_prob(x)
    assert abs(float(logp.mean() - analytic.mean())) < 0.02  # test NLL within 0.02 nats of the truth
    assert float((logp - analytic).abs().mean()) < 0.15


def test_a_short_run_lowers_the_test_nll_on_8gaussians(tmp_path: Path):
    cfg = load_config(FM, [*SMALL, "data.name=8gaussians", "trainer.max_steps=60", "optim.lr=1e-2",
                           f"trainer.log_dir={tmp_path / 'run'}"])
    torch.manual_seed(cfg.seed)
    untrained = mean_nll(toflow.build_flow(cfg), toflow.data.toy_test_set("8gaussians", 200))
    summary = toflow.train(cfg)
    assert summary["nfe_forward_mean"] == 0 and summary["nfe_backward_mean"] == 0  # no ODE solve in training
    assert summary["objective"] == "flow_matching" and summary["sample_nfe"] > 0
    assert summary["test_nll"] < untrained - 0.5


@pytest.mark.parametrize("overrides,key", [(["time.mode=toflow"], "time.mode"),
                                           (["regularizers.kinetic=0.01"], "regularizers")])
def test_flow_matching_refuses_what_it_cannot_train(overrides, key):
    done = run_cli(*overrides, "trainer.max_steps=2", config=FM)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith(f"error: {key}:")


def test_flow_matching_refuses_a_multiscale_flow():
    done = run_cli("objective.name=flow_matching", "time.mode=fixed", "trainer.max_steps=2",
                   config="configs/digits_toflow.yaml")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "objective.name:" in done.stderr and "model.scales=1" in done.stderr
    assert load_config("configs/digits_fm_ot.yaml").model.scales == 1  # the single-scale flow is accepted


@pytest.mark.parametrize("coupling", ["independent", "ot"])
def test_flow_matching_runs_are_deterministic_and_resume_where_they_stopped(coupling, tmp_path: Path):
    args = [*SMALL, f"objective.coupling={coupling}", "objective.sigma=0.05"]
    straight = toflow.train(load_config(FM, [*args, "trainer.max_steps=6", f"trainer.log_dir={tmp_path / 'a'}"]))
    again = toflow.train(load_config(FM, [*args, "trainer.max_steps=6", f"trainer.log_dir={tmp_path / 'b'}"]))
    assert straight["test_nll"] == again["test_nll"]
    run = tmp_path / "c"
    toflow.train(load_config(FM, [*args, "trainer.max_steps=3", f"trainer.log_dir={run}"]))
    resumed = toflow.train(load_config(FM, [*args, "trainer.max_steps=6", "trainer.resume=true",
                                            f"trainer.log_dir={run}"]))
    assert resumed["steps"] == 6 and resumed["test_nll"] == straight["test_nll"]  # the same batches and noise
    assert json.loads((run / "summary.json").read_text())["objective"] == "flow_matching"
