"""Reading a run configuration: YAML files, ``key=value`` overrides, dicts, and one-line refusals.

Nothing here imports torch: a misspelt key or a value of the wrong type is refused as soon as the
schema sees it. :func:`load_config` then validates the components (:mod:`toflow.config.components`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError
from .schema import RunConfig, all_keys


def one_line(err: OmegaConfBaseException, schema: type | None = None, what: str = "config") -> str:
    """An OmegaConf error as one line naming the key; an unknown key gets the closest key
    of ``schema`` (default :class:`RunConfig`) suggested."""
    key = getattr(err, "full_key", None) or what
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "not in" in first or "Missing key" in first or "Key '" in first:
        close = difflib.get_close_matches(key, all_keys(schema or RunConfig), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{key}: unknown key{hint}"
    return f"{key}: {first}"


def _to_config(cfg: DictConfig) -> RunConfig:
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def read_yaml(path: Path, what: str = "config"):
    """The YAML file ``path``, or a one-line :class:`ConfigError` naming the file, line and column."""
    if not path.is_file():
        raise ConfigError(f"{what}: file not found: {path}")
    try:
        return OmegaConf.load(path)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
        raise ConfigError(f"{what}: {where}: not valid YAML ({problem})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what}: cannot read {path} ({err})") from None


def read_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """A YAML file (optional) with dotted ``key=value`` overrides, checked against the schema only.

    Unknown keys and values of the wrong type are refused here, before torch is imported;
    :func:`load_config` also validates the components.

    Args:
        path: The YAML config (its stem is the run's name unless it sets ``name``), or None
            for the defaults.
        overrides: ``key=value`` strings, e.g. ``["trainer.max_steps=500"]``.

    Returns:
        The config, not yet validated.

    Raises:
        ConfigError: One line naming the offending key.
    """
    schema = OmegaConf.structured(RunConfig)
    try:
        if path is not None:
            path = Path(path)
            loaded = read_yaml(path)
            if not isinstance(loaded, DictConfig):
                raise ConfigError(f"config: {path} does not hold a mapping of keys")
            schema = OmegaConf.merge(schema, loaded)
            if "name" not in loaded:
                schema.name = path.stem
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"{item}: an override must read key=value")
        if overrides:
            schema = OmegaConf.merge(schema, OmegaConf.from_dotlist(list(overrides)))
        return _to_config(schema)
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err)) from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """A YAML file (optional) with dotted ``key=value`` overrides, validated.

    Args:
        path: The YAML config, or None for the defaults.
        overrides: ``key=value`` strings, e.g. ``["trainer.max_steps=500"]``.

    Returns:
        The config, every section checked by building its component (on the meta device).

    Raises:
        ConfigError: One line naming the offending key.
    """
    cfg = read_config(path, overrides)
    from .components import validate  # torch and the models load only once the schema accepts the config

    validate(cfg)
    return cfg


def from_dict(values: dict) -> RunConfig:
    """A validated config from a nested dict (e.g. a checkpoint's ``hyper_parameters``)."""
    try:
        cfg = _to_config(OmegaConf.merge(OmegaConf.structured(RunConfig), values))
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err)) from None
    from .components import validate  # torch and the models load only once the schema accepts the config

    validate(cfg)
    return cfg


def to_dict(cfg: RunConfig) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def numbers(values: dict, prefix: str = ""):
    """(dotted key, value) for every float in a nested dict."""
    for key, value in values.items():
        if isinstance(value, dict):
            yield from numbers(value, f"{prefix}{key}.")
        elif isinstance(value, float):
            yield f"{prefix}{key}", value


# what a resumed run may change: how long and how it is watched, not what or how it learns
RESUMABLE = ("trainer.", "optim.", "data.root", "data.batch_size", "data.test_size", "name")


def changed_keys(saved: RunConfig, given: RunConfig) -> list[str]:
    """The keys, with both values, where ``given`` changes what the run ``saved`` learns or how."""
    before, after = dict(_flat(to_dict(saved))), dict(_flat(to_dict(given)))
    keys = sorted(before.keys() | after.keys())
    return [f"{key}: {before.get(key)!r} in the run, {after.get(key)!r} given" for key in keys
            if not key.startswith(RESUMABLE) and before.get(key) != after.get(key)]


def _flat(values: dict, prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict) and value and key != "regularizers":
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg
