"""How mutated configs end: ``python bench/fuzz_configs.py [--per-config 14] [--seed 0]``.

The mutations of ``tests/fuzz.py`` (the fuzzer of ``tests/test_bad_input.py``), each read by
the config loader and its validation in-process: accepted, refused in one line, or failed
(a traceback for the user: there should be none). Prints a table by kind of mutation.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from fuzz import mutations, outcome  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-config", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    where = Path(tempfile.mkdtemp(prefix="fuzz-"))
    a_file = where / "a_file.txt"
    a_file.write_text("not a folder")
    tried = mutations(args.per_config, args.seed, a_file)
    ends = collections.Counter((m.kind, outcome(m, where).split(":")[0]) for m in tried)
    kinds = sorted({kind for kind, _ in ends})
    print(f"{len(tried)} mutations of {len({m.config for m in tried})} shipped configs, seed {args.seed}\n")
    print("| mutation | tried | accepted | refused in one line | failed |\n|---|---|---|---|---|")
    for kind in kinds:
        counts = [ends[(kind, end)] for end in ("accepted", "refused", "failed")]
        print(f"| {kind} | {sum(counts)} | {' | '.join(map(str, counts))} |")
    total = [sum(ends[(k, end)] for k in kinds) for end in ("accepted", "refused", "failed")]
    print(f"| all | {sum(total)} | {' | '.join(map(str, total))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
