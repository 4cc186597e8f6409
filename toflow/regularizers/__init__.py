"""Spatial regularisers (kinetic energy, Jacobian Frobenius, and any registered one).

Temporal regularisation alpha |T| belongs to the end time: :class:`toflow.models.TemporalRegularization`.
"""

from .spatial import REGULARIZERS, FieldEvaluation, JacobianFrobenius, KineticEnergy, Regularizer, build_regularizers

__all__ = ["FieldEvaluation", "JacobianFrobenius", "KineticEnergy", "REGULARIZERS", "Regularizer", "build_regularizers"]
