"""Spatial regularisers (kinetic energy, Jacobian Frobenius, and any registered one).

Temporal regularisation alpha |T| belongs to the end time: ``toflow.models.TemporalRegularization``
(also importable from here).
"""

from .spatial import (REGULARIZERS, FieldEvaluation, JacobianFrobenius, KineticEnergy, Regularizer, build_regularizers,
                      register_regularizer)

SPATIAL = REGULARIZERS  # the former name of the registry


def __getattr__(name: str):
    if name == "TemporalRegularization":  # lives beside EndTime, which owns everything about T
        from ..models.end_time import TemporalRegularization

        return TemporalRegularization
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FieldEvaluation", "JacobianFrobenius", "KineticEnergy", "REGULARIZERS", "Regularizer", "SPATIAL", "TemporalRegularization",
           "build_regularizers", "register_regularizer"]
