"""Regularisers: spatial (kinetic energy, Jacobian Frobenius) and temporal (alpha |T|)."""

from .spatial import JacobianFrobenius, KineticEnergy
from .temporal import TemporalRegularization

SPATIAL = {cls.name: cls for cls in (KineticEnergy, JacobianFrobenius)}


def build_regularizers(**coefficients: float) -> list:
    """The spatial regularisers with a positive coefficient, e.g. ``kinetic=0.01``."""
    out = []
    for name, coef in coefficients.items():
        if name not in SPATIAL:
            raise ValueError(f"regularizers.{name}: unknown; one of {', '.join(SPATIAL)}")
        if coef:
            out.append(SPATIAL[name](coef))
    return out


__all__ = ["JacobianFrobenius", "KineticEnergy", "SPATIAL", "TemporalRegularization", "build_regularizers"]
