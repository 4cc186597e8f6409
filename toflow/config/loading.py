"""Reading a run configuration: YAML files, ``key=value`` overrides, dicts, and one-line refusals.

Nothing here imports torch: a misspelt key or a value of the wrong type is refused as soon as the
schema sees it. :func:`load_config` then validates the components (:mod:`toflow.config.components`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError
from .schema import RunConfig, all_keys, describe_type, field_type

_MERGE = re.compile(r"Merge error: (\w+) is not a subclass of (\w+)\. value: (.*)")
_VALUE = re.compile(r"(?:Value|Incompatible value) '(.*?)'")


def one_line(err: OmegaConfBaseException, schema: type | None = None, what: str = "config",
             got: str | None = None) -> str:
    """An OmegaConf error as one plain line naming the key and what it expects.

    An unknown key gets the closest key of ``schema`` (default :class:`RunConfig`) suggested; a
    value of the wrong type is described by the type the schema declares for it, and ``got``
    (the value as given, where known) is quoted.
    """
    schema = schema or RunConfig
    key = getattr(err, "full_key", None) or what
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "not in" in first or "Missing key" in first or "Key '" in first:
        close = difflib.get_close_matches(key, all_keys(schema), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{key}: unknown key{hint}"
    merge = _MERGE.search(first)
    if merge:  # a whole section given a value
        section = next((f.name for f in fields(schema) if getattr(f.type, "__name__", f.type) == merge[2]), what)
        return f"{section}: expected a section of keys, got {merge[3]}"
    kind = field_type(schema, key)
    if kind is None:
        return f"{key}: {first}"
    value = _VALUE.search(first)
    if got is None:
        got = "null" if value and value[1] == "None" else repr(value[1]) if value else "another kind of value"
    return f"{key}: expected {describe_type(kind)}, got {got}"


def parse_overrides(overrides: Sequence[str], separately: bool = False):
    """``key=value`` strings as one config, each value read as YAML.

    Args:
        overrides: E.g. ``["model.hidden=[32,32]", "seed=1"]``.
        separately: Return a list of one config per override instead of their merge.

    Returns:
        The config of the overrides (or the list of them).

    Raises:
        ConfigError: One line naming the override that is not ``key=value`` or whose value is not
            readable (unbalanced brackets or quotes, or a YAML tag the value does not fit).
    """
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{item}: an override must read key=value")
        if not key.strip():
            raise ConfigError(f"{item}: an override needs a key before '='")
        try:
            parsed.append(OmegaConf.from_dotlist([item]))
        except yaml.YAMLError:
            raise ConfigError(f"{key}: cannot read the value {value!r} (unbalanced brackets or quotes?)") from None
        except OmegaConfBaseException as err:
            raise ConfigError(one_line(err)) from None
        except (ValueError, KeyError, AttributeError):  # PyYAML's conversion of a tagged value, e.g. !!int x
            raise ConfigError(f"{key}: cannot read the value {value!r} (a YAML tag that does not fit it?)") from None
    if separately:
        return parsed
    return OmegaConf.merge(*parsed) if parsed else OmegaConf.create({})


def _to_config(cfg: DictConfig) -> RunConfig:
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def read_yaml(path: Path, what: str = "config"):
    """The YAML file ``path``, or a one-line :class:`ConfigError` naming the file, line and column."""
    if path.is_dir():
        raise ConfigError(f"{what}: {path} is a directory, not a YAML file")
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
            if not loaded:
                raise ConfigError(f"config: {path} is empty; every setting would be a default (name one, e.g. "
                                  "configs/toy_checkerboard_quick.yaml, or give a file of keys)")
            schema = OmegaConf.merge(schema, loaded)
            if "name" not in loaded:
                schema.name = path.stem
        for item, override in zip(overrides, parse_overrides(overrides, separately=True)):
            key, _, value = item.partition("=")
            try:
                schema = OmegaConf.merge(schema, override)
            except OmegaConfBaseException as err:
                raise ConfigError(one_line(err, got=value or "null")) from None
            except TypeError:  # OmegaConf's refusal to merge a mapping into a list or a number
                kind = field_type(RunConfig, key.strip())
                expected = describe_type(kind) if kind is not None else "another kind of value"
                raise ConfigError(f"{key.strip()}: expected {expected}, got {value or 'null'}") from None
        cfg = _to_config(schema)
        OmegaConf.structured(cfg)  # refuses what the merge let into a section of names (a mapping as a number)
        return cfg
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


def changed_keys(saved: RunConfig, given: RunConfig, allowed: tuple = RESUMABLE) -> list[str]:
    """The keys, with both values, where ``given`` changes what the run ``saved`` learns or how.

    Args:
        saved: The config a run was trained with.
        given: The config asked for now.
        allowed: Keys (or prefixes ending in ``.``) that may change.

    Returns:
        One ``key: saved in the run, given given`` phrase per changed key.
    """
    before, after = dict(_flat(to_dict(saved))), dict(_flat(to_dict(given)))
    keys = sorted(before.keys() | after.keys())
    return [f"{key}: {before.get(key)!r} in the run, {after.get(key)!r} given" for key in keys
            if not key.startswith(allowed) and before.get(key) != after.get(key)]


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
