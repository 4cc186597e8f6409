"""Studies: every arm of a grid of config changes, on the same budget, side by side.

    python -m toflow.study configs/study_toy.yaml [key=value ...]

A study file names a base run config, overrides for every run, a grid and seeds::

    base: configs/toy_checkerboard_toflow.yaml
    overrides: [trainer.max_steps=1000]
    grid:
      time.mode: [fixed, steer, toflow]            # a config key and its values
      spatial:                                     # a named axis of labelled bundles
        none: {}
        ot: {regularizers.kinetic: 0.01, regularizers.jacobian_frobenius: 0.01}
    seeds: [0, 1, 2]
    out: runs/study_toy
    baseline: time.mode=fixed,spatial=none         # the arm the ratios are against (default: the first)

``baseline`` may also name only some axes' labels (``baseline: time.mode=fixed`` in a grid of
data sets and modes): each arm is then compared with the arm that has those labels and
agrees with it on every other axis, so a study over several data sets compares within each.

Each (arm, seed) trains in ``<out>/<arm>/seed<k>`` through the CLI, one after another
or ``parallel`` at a time. A run with a ``summary.json`` is skipped, one with only a
checkpoint is resumed, so a study that stops can be started again. The study writes
``<out>/results.md`` (the machine; test NLL, and bits/dim for images, mean +- std over
seeds; NFE forward and backward per step and time per step, also as ratios against the
baseline arm; wall time; final T), ``<out>/nll_vs_wall.png``, ``<out>/nfe_vs_step.png``;
every run logs its hyperparameters and final metrics for TensorBoard's HParams tab
(``tensorboard --logdir <out>``).
"""

from .grid import Arm, StudyConfig, arms, baselines, check_study, load_study, run_dir
from .results import COLUMNS, Curve, curve, first_reached, quality_table, table, targets, total_end_time, training_clock
from .runner import report, run_arm, run_study

__all__ = ["Arm", "COLUMNS", "Curve", "StudyConfig", "arms", "baselines", "check_study", "curve", "first_reached",
           "load_study", "quality_table", "report", "run_arm", "run_dir", "run_study", "table", "targets",
           "total_end_time", "training_clock"]
