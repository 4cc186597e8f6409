"""Mutated configs, from a fixed seed: what a user might get wrong in a shipped config.

A mutation deletes a key, misspells one, gives a value of the wrong type or just out of
range (0, negative, NaN, inf, an empty list, an unknown choice), makes the YAML unreadable,
or points a path at a file where a folder is expected. ``bench/fuzz_configs.py`` counts how
they end; ``tests/test_bad_input.py`` asserts that each is accepted or refused in one line.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import NamedTuple

import yaml

from toflow.config import ConfigError, load_config

SHIPPED = sorted(p for p in Path("configs").glob("*.yaml") if not p.name.startswith("study"))


class Mutation(NamedTuple):
    config: Path  # the shipped config it comes from
    kind: str
    what: str  # e.g. "solver.atol=nan"
    text: str  # the mutated YAML


def _leaves(values: dict, prefix: str = "") -> list:
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += _leaves(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _set(values: dict, dotted: str, value) -> dict:
    parts = dotted.split(".")
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return values


def _delete(values: dict, dotted: str) -> dict:
    parts = dotted.split(".")
    node = values
    for part in parts[:-1]:
        node = node[part]
    del node[parts[-1]]
    return values


def _misspell(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    return word[:i] + word[i + 1:] if len(word) > 3 and rng.random() < 0.5 else word[:i] + "x" + word[i:]


def _wrong_type(value, rng: random.Random):
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, (int, float)):
        return rng.choice(["many", [1, 2], {"a": 1}])
    if isinstance(value, list):
        return "a list"
    return rng.choice([[1, 2], {"a": 1}])


def _out_of_range(value, rng: random.Random):
    if isinstance(value, bool):
        return 2
    if isinstance(value, (int, float)):
        return rng.choice([0, -1, -1e-3, math.nan, math.inf, -math.inf] if isinstance(value, float) else [0, -1, -7])
    if isinstance(value, list):
        return []
    return "no_such_choice"


def mutations(per_config: int = 14, seed: int = 0, a_file: Path | None = None) -> list[Mutation]:
    """``per_config`` mutations of every shipped config; ``a_file``: an existing file, for the
    path mutations."""
    rng = random.Random(seed)
    out = []
    for config in SHIPPED:
        text = config.read_text()
        for index in range(per_config):
            values = yaml.safe_load(text)
            leaves = _leaves(values)
            key, value = rng.choice(leaves)
            kind = ("delete", "misspell", "wrong type", "out of range", "out of range", "unreadable",
                    "path at a file")[index % 7]
            if kind == "delete":
                _delete(values, key)
                what = f"no {key}"
            elif kind == "misspell":
                _delete(values, key)
                wrong = ".".join([*key.split(".")[:-1], _misspell(key.split(".")[-1], rng)])
                _set(values, wrong, value)
                what = f"{wrong}={value}"
            elif kind == "wrong type":
                _set(values, key, _wrong_type(value, rng))
                what = f"{key}={_wrong_type(value, rng)!r}"
            elif kind == "out of range":
                bad = _out_of_range(value, rng)
                _set(values, key, bad)
                what = f"{key}={bad!r}"
            elif kind == "path at a file" and a_file is not None:
                path_key = rng.choice(["data.root", "trainer.log_dir"])
                _set(values, path_key, str(a_file))
                what = f"{path_key}={a_file}"
            else:
                cut = rng.randrange(1, len(text))
                broken = rng.choice([text[:cut] + "{\n", text.replace(": {", ": {{", 1), "\t" + text, text + "]\n"])
                out.append(Mutation(config, "unreadable", "broken YAML", broken))
                continue
            out.append(Mutation(config, kind, what, yaml.safe_dump(values)))
    return out


def outcome(mutation: Mutation, where: Path) -> str:
    """``accepted``, ``refused`` (one line naming the problem) or ``failed: <why>``, by the config loader."""
    path = where / f"{mutation.config.stem}.yaml"
    path.write_text(mutation.text)
    try:
        load_config(path)
    except ConfigError as err:
        return "refused" if "\n" not in str(err) and str(err) else f"failed: {err!r}"
    except Exception as err:  # anything else is a traceback for the user
        return f"failed: {type(err).__name__}: {err}"
    return "accepted"


# ---------------------------------------------------------------- the syntax of overrides
KEYS = ["model.hidden", "trainer.max_steps", "solver.atol", "time.mode", "data.name", "regularizers.kinetic",
        "trainer.progress_bar", "seed"]
VALUES = ["[32,", "[32,32", "[32,32]]", "]", "[", "{a: 1", "{a: 1}}", '"abc', "'abc", '"[1,2]"', "a,b", "1,2,3", "",
          "null", "~", "[ ]", "[1,,2]", "1e-3e", "--5", "5 5", "key: 5", "!!python/object:os.system ls", "&anchor",
          "*alias", "|", ">", "#comment", "%", "@", "`x`", "=5", "5=", "\\n", "[[1],[2]]", "{}", "[a]"]


def override_mutations(seed: int = 0, count: int = 300) -> list[str]:
    """``key=value`` strings with broken brackets, quotes, separators and empty parts."""
    rng = random.Random(seed)
    out = ["=5", "=", "==", "key==5", ".model.hidden=[8]", "model..hidden=[8]", "model.hidden.=[8]", " =5",
           "model.hidden", "model hidden=[8]", "model.hidden =[8]", "model.hidden= [8]"]
    while len(out) < count:
        out.append(f"{rng.choice(KEYS)}={rng.choice(VALUES)}")
    return out


def override_outcome(override: str) -> str:
    """How one override ends with a shipped config: ``accepted``, ``refused`` or ``failed: <why>``."""
    try:
        load_config("configs/toy_checkerboard_quick.yaml", [override])
    except ConfigError as err:
        return "refused" if "\n" not in str(err) and str(err) else f"failed: {err!r}"
    except Exception as err:  # anything else is a traceback for the user
        return f"failed: {type(err).__name__}: {err}"
    return "accepted"


# ---------------------------------------------------------------- files cut short or corrupted
def damaged(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """``data`` cut short, with bytes flipped, or replaced by random bytes (which and how)."""
    how = rng.choice(["cut short", "flipped bytes", "random bytes", "empty"])
    if how == "cut short":
        return how, data[: rng.randrange(1, max(2, len(data)))]
    if how == "flipped bytes":
        data = bytearray(data)
        for _ in range(max(1, len(data) // 200)):
            data[rng.randrange(len(data))] ^= 0xFF
        return how, bytes(data)
    if how == "random bytes":
        return how, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
    return how, b""


def read_outcome(read, path: Path, expected: tuple) -> str:
    """How reading ``path`` with ``read(path)`` ends: ``accepted``, ``refused`` (one of the
    ``expected`` one-line errors) or ``failed: <why>``."""
    try:
        read(path)
    except expected as err:
        return "refused" if "\n" not in str(err) and str(err) else f"failed: {err!r}"
    except Exception as err:  # anything else is a traceback for the user
        return f"failed: {type(err).__name__}: {err}"
    return "accepted"
