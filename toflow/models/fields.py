"""Time-dependent vector fields f(z, t; theta) for the flow ODE (paper eq. 2)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "swish": nn.SiLU,
}


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"model.activation: '{name}' is not one of {', '.join(ACTIVATIONS)}") from None


def layer_widths(io: int, hidden: Sequence[int]) -> list:
    """[io, *hidden, io], refusing an empty or non-positive ``hidden``."""
    if not hidden or any(h <= 0 for h in hidden):
        raise ValueError(f"model.hidden: must be a non-empty list of positive widths, got {list(hidden)}")
    return [io, *hidden, io]


class ConcatSquashLinear(nn.Module):
    """FFJORD's ConcatSquash layer: y = (W x + b) * sigmoid(g t + c) + h t.

    Time gates each output unit multiplicatively and shifts it additively.
    """

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.layer = nn.Linear(dim_in, dim_out)
        self.hyper_gate = nn.Linear(1, dim_out)
        self.hyper_bias = nn.Linear(1, dim_out, bias=False)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        t = t.reshape(1, 1).to(x)
        return self.layer(x) * torch.sigmoid(self.hyper_gate(t)) + self.hyper_bias(t)


class _TimeLayerStack(nn.Module):
    """f(z, t) = L_K(t, act(... act(L_1(t, z)) ...)) for time-aware layers L_k."""

    layers: nn.ModuleList
    acts: nn.ModuleList

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        for layer, act in zip(self.layers[:-1], self.acts):
            z = act(layer(t, z))
        return self.layers[-1](t, z)


class ConcatSquashMLP(_TimeLayerStack):
    """f(z, t) = L_K(... act(L_1(z, t)) ..., t) with ConcatSquash layers L_k.

    FFJORD's toy architecture: ``hidden=(64, 64, 64)``, ``activation="tanh"``.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "tanh"):
        super().__init__()
        widths = layer_widths(dim, hidden)
        self.dim = dim
        self.layers = nn.ModuleList(ConcatSquashLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.acts = nn.ModuleList(make_activation(activation) for _ in hidden)


class LinearField(nn.Module):
    """f(z, t) = A z. Its flow is z(T) = exp(A (T - t0)) z(t0): the analytic reference."""

    def __init__(self, A: Tensor):
        super().__init__()
        self.A = nn.Parameter(A.clone())
        self.dim = A.shape[0]

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return z @ self.A.T


class ConcatConv2d(nn.Module):
    """3x3 convolution of [x, t] with the time concatenated as one more input channel (FFJORD's ``concat``)."""

    def __init__(self, dim_in: int, dim_out: int, kernel: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(dim_in + 1, dim_out, kernel, stride=1, padding=padding)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        tt = t.to(x).reshape(1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        return self.conv(torch.cat([tt, x], 1))


class ConcatConvNet(_TimeLayerStack):
    """f(z, t) for images: ConcatConv2d layers, widths ``hidden`` (FFJORD: 64-64-64), stride 1,
    softplus between them; the output has the input's channels."""

    def __init__(self, channels: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "softplus"):
        super().__init__()
        widths = layer_widths(channels, hidden)
        self.layers = nn.ModuleList(ConcatConv2d(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.acts = nn.ModuleList(make_activation(activation) for _ in hidden)
