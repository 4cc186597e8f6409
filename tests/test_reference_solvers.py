"""Cross-check ACA and MALI against their authors' reference, TorchDiffEqPack (a test extra only).

TorchDiffEqPack keeps time in float32 and picks its own first step, so the two runs take
different accepted steps; both gradients approximate the exact one to the tolerance used,
and that is the agreement asked for.
"""

import pytest
import torch
from helpers import tiny_cnf
from TorchDiffEqPack import odesolve_adjoint, odesolve_adjoint_sym12

from toflow.solvers import ACA, MALI

TOL = 1e-7


def small_cnf(solver):
    return tiny_cnf((8, 8), solver, seed=7)


class TensorTime(torch.nn.Module):
    """TorchDiffEqPack sometimes passes time as a Python float."""

    def __init__(self, dynamics):
        super().__init__()
        self.dynamics = dynamics

    def forward(self, t, y):
        return self.dynamics(torch.as_tensor(t, dtype=y.dtype), y)


def nll_from_state(state):
    z, delta = state[:, :2], state[:, 2]
    return (0.5 * z.pow(2).sum(1) + torch.log(torch.tensor(2 * torch.pi, dtype=z.dtype)) - (-delta)).mean()


def gradients(flow, loss):
    params = list(flow.field.parameters())
    grads = torch.autograd.grad(loss, params + [flow.end_time.T])
    return torch.cat([g.reshape(-1) for g in grads[:-1]]), grads[-1]


@pytest.mark.parametrize("ours,method,reference", [(ACA, "dopri5", odesolve_adjoint),
                                                   (MALI, "sym12async", odesolve_adjoint_sym12)])
def test_gradients_agree_with_torchdiffeqpack(ours, method, reference):
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    flow = small_cnf(ours(atol=TOL, rtol=TOL))
    weights_ours, T_ours = gradients(flow, -flow.log_prob(x).mean())

    state0 = torch.cat([x, torch.zeros(16, 1, dtype=x.dtype)], 1)
    options = {"method": method, "t0": 0.0, "t1": flow.end_time.T, "h": None, "rtol": TOL, "atol": TOL,
               "neval_max": 10**6, "end_point_mode": True, "print_neval": False, "t_eval": None}
    end = reference(TensorTime(flow.dynamics), state0, options=options)
    weights_ref, T_ref = gradients(flow, nll_from_state(end))

    assert (weights_ours - weights_ref).norm() / weights_ref.norm() < 1e-4
    assert abs(float(T_ours) - float(T_ref)) / abs(float(T_ref)) < 1e-4
