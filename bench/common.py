"""Helpers shared by the benchmarks: the machine's description and median tables."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

import torch


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def median_table(results: dict[str, list[dict]], score: str, score_label: str, baseline: str) -> str:
    """One row per arm: median over seeds of the score, NFE, time per step and final T,
    with NFE and time as ratios against ``baseline`` (same run)."""
    def med(arm, key):
        return statistics.median(r["end_times"][0] if key == "T" else r[key] for r in results[arm])

    base_nfe = med(baseline, "nfe_forward_mean") + med(baseline, "nfe_backward_mean")
    base_time = med(baseline, "time_per_iter_s")
    lines = [f"| arm | {score_label} | NFE fwd | NFE bwd | NFE vs {baseline} | s/step | time vs {baseline} | final T |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, runs in results.items():
        scores = [r[score] for r in runs]
        spread = f" ({min(scores):.3f}-{max(scores):.3f})" if len(scores) > 1 else ""
        nfe = med(arm, "nfe_forward_mean") + med(arm, "nfe_backward_mean")
        lines.append(f"| {arm} | {statistics.median(scores):.3f}{spread} | {med(arm, 'nfe_forward_mean'):.1f} | "
                     f"{med(arm, 'nfe_backward_mean'):.1f} | {nfe / base_nfe:.2f}x | {med(arm, 'time_per_iter_s'):.3f} | "
                     f"{med(arm, 'time_per_iter_s') / base_time:.2f}x | {med(arm, 'T'):.3f} |")
    return "\n".join(lines) + "\n"
