"""What the benchmarks share: the line that says which machine a timing ran on."""

from toflow.provenance import machine

__all__ = ["machine"]
