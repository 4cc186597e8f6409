"""Regularisers of the flow: temporal (alpha |T|)."""

from .temporal import TemporalRegularization

__all__ = ["TemporalRegularization"]
