"""Typed run configuration: schema, YAML loading, ``key=value`` overrides, validation.

The schema (:mod:`~toflow.config.schema`) is a tree of dataclasses read by OmegaConf, so an
unknown key or a value of the wrong type is refused with its dotted name before torch is
imported (:func:`read_config`). :func:`load_config` then builds every section's component with
its own fields on the meta device (:mod:`~toflow.config.components`), so the allowed values are
the registries' and the range checks the constructors'; a refusal is one :class:`ConfigError`
line that names the key. A setting left at None takes the component's own default; a setting
the chosen component does not take (``solver.step_size`` with dopri5, ``model.probe`` with the
exact trace) is refused.
"""

from ..errors import ConfigError
from .loading import changed_keys, from_dict, load_config, one_line, read_config, read_yaml, to_dict, to_yaml
from .schema import (
                     CHOICES,
                     DataConfig,
                     ModelConfig,
                     ObjectiveConfig,
                     OptimConfig,
                     RunConfig,
                     SolverConfig,
                     TimeConfig,
                     TrainerConfig,
                     all_keys,
)

__all__ = ["CHOICES", "ConfigError", "DataConfig", "ModelConfig", "ObjectiveConfig", "OptimConfig", "RunConfig",
           "SolverConfig", "TimeConfig", "TrainerConfig", "all_keys", "changed_keys", "from_dict", "load_config",
           "one_line", "read_config", "read_yaml", "to_dict", "to_yaml"]
