"""How bad input ends: ``python bench/fuzz_configs.py [--per-config 14] [--seed 0]``.

Four families, each counted as accepted, refused in one line, or failed (a traceback for the
user: there should be none):

- mutated configs (``tests/fuzz.py``, the fuzzer of ``tests/test_bad_input.py``): a key deleted,
  misspelt, of the wrong type, out of range, unreadable YAML, a path at a file;
- the syntax of overrides: brackets, quotes, separators and empty parts;
- every file a command reads, cut short, with bytes flipped, random or empty: configs, study
  files, checkpoints, gzipped and plain IDX files;
- two commands started on one run directory at once (subprocesses: the slowest family).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from conftest import write_idx  # noqa: E402
from fuzz import damaged, mutations, outcome, override_mutations, override_outcome, read_outcome  # noqa: E402

import toflow  # noqa: E402
from toflow.config import load_config  # noqa: E402
from toflow.errors import CheckpointError, ConfigError, DataError  # noqa: E402
from toflow.study import load_study  # noqa: E402
from toflow.trainers.reliability import load_checkpoint  # noqa: E402

SMALL = ["model.hidden=[8]", "data.batch_size=32", "data.test_size=64", "trainer.eval_every=2", "trainer.viz_every=100",
         "trainer.checkpoint_every=2", "trainer.progress_bar=false", "solver.atol=1e-3", "solver.rtol=1e-3",
         "trainer.num_threads=1"]


def files(where: Path, rng: random.Random, per_kind: int) -> list[tuple[str, str]]:
    """(kind, outcome) of every kind of file a command reads, damaged ``per_kind`` times."""
    run = where / "run"
    toflow.train(load_config("configs/toy_checkerboard_quick.yaml", [*SMALL, "trainer.max_steps=2",
                                                                     f"trainer.log_dir={run}"]))
    raw = where / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28))
    write_idx(raw / "train-images-idx3-ubyte", images)
    sources = {"config": (Path("configs/toy_checkerboard_quick.yaml").read_bytes(), load_config, (ConfigError,)),
               "study file": (Path("configs/study_toy.yaml").read_bytes(), load_study, (ConfigError,)),
               "checkpoint": ((run / "checkpoints" / "last.ckpt").read_bytes(), load_checkpoint, (CheckpointError,)),
               "gzipped IDX": (gzip.compress((raw / "train-images-idx3-ubyte").read_bytes()), None, (DataError,)),
               "IDX": ((raw / "train-images-idx3-ubyte").read_bytes(), None, (DataError,))}
    out = []
    for kind, (data, read, expected) in sources.items():
        for index in range(per_kind):
            how, broken = damaged(data, rng)
            if read is None:  # an image set: every one of its four files, the damaged one among them
                root = where / f"{kind.replace(' ', '_')}{index}"
                folder = root / "MNIST" / "raw"
                folder.mkdir(parents=True)
                for name in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
                    stem = f"{name}-idx{3 if 'images' in name else 1}-ubyte"
                    target = folder / (f"{stem}.gz" if kind == "gzipped IDX" else stem)
                    target.write_bytes(broken if name == "train-images" else
                                       (gzip.compress if kind == "gzipped IDX" else bytes)(_idx(name)))
                out.append((kind, read_outcome(lambda p: toflow.data.make_source("mnist", root=str(p), download=False),
                                               root, expected)))
                continue
            path = where / f"{kind.replace(' ', '_')}{index}{'.ckpt' if kind == 'checkpoint' else '.yaml'}"
            path.write_bytes(broken)
            out.append((kind, read_outcome(read, path, expected)))
    return out


def _idx(name: str) -> bytes:
    import struct

    shape = (16, 28, 28) if "images" in name else (16,)
    header = struct.pack(">BBBB", 0, 0, 8, len(shape)) + struct.pack(">" + "I" * len(shape), *shape)
    return header + np.zeros(shape, dtype=np.uint8).tobytes()


def same_directory(where: Path, pairs: int) -> list[tuple[str, str]]:
    """(what, outcome) of two commands started on one run directory at once: one of them must be
    refused in one line (exit code 2) or both must end well; never a traceback."""
    run = [sys.executable, "-m", "toflow.trainers.run", "configs/toy_checkerboard_quick.yaml", *SMALL]
    out = []
    for index in range(pairs):
        log_dir = where / f"shared{index}"
        first = subprocess.Popen([*run, "trainer.max_steps=30", f"trainer.log_dir={log_dir}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        second = subprocess.Popen([*run, "trainer.max_steps=30", f"trainer.log_dir={log_dir}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ends = [(p.wait(timeout=900), p.communicate()[1]) for p in (first, second)]
        codes = sorted(code for code, _ in ends)
        clean = all("Traceback" not in err for _, err in ends)
        refused = [err for code, err in ends if code == 2]
        if clean and codes == [0, 2] and refused[0].strip().count("\n") == 0 and "in use" in refused[0]:
            out.append(("two runs, one directory", "refused"))
        else:
            out.append(("two runs, one directory", f"failed: exit codes {codes}"))
    return out


def table(title: str, ends: collections.Counter) -> None:
    kinds = sorted({kind for kind, _ in ends})
    print(f"\n{title}\n\n| case | tried | accepted | refused in one line | failed |\n|---|---|---|---|---|")
    for kind in kinds:
        counts = [ends[(kind, end)] for end in ("accepted", "refused", "failed")]
        print(f"| {kind} | {sum(counts)} | {' | '.join(map(str, counts))} |")
    total = [sum(ends[(k, end)] for k in kinds) for end in ("accepted", "refused", "failed")]
    print(f"| all | {sum(total)} | {' | '.join(map(str, total))} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-config", type=int, default=14)
    parser.add_argument("--per-file", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    where = Path(tempfile.mkdtemp(prefix="fuzz-"))
    a_file = where / "a_file.txt"
    a_file.write_text("not a folder")
    tried = mutations(args.per_config, args.seed, a_file)
    table(f"{len(tried)} mutations of {len({m.config for m in tried})} shipped configs, seed {args.seed}",
          collections.Counter((m.kind, outcome(m, where).split(":")[0]) for m in tried))
    overrides = override_mutations(args.seed)
    table(f"{len(overrides)} overrides with broken syntax, seed {args.seed}",
          collections.Counter(("override", override_outcome(o).split(":")[0]) for o in overrides))
    damage = files(where, random.Random(args.seed), args.per_file)
    table(f"{len(damage)} damaged files, seed {args.seed}",
          collections.Counter((kind, end.split(":")[0]) for kind, end in damage))
    table(f"{args.pairs} pairs of runs started together on one directory",
          collections.Counter((kind, end.split(":")[0]) for kind, end in same_directory(where, args.pairs)))
    for kind, end in damage:
        if end.startswith("failed"):
            print(f"failed: {kind}: {end}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
