"""Mutation testing of the modules that hold the method, each against the tests that cover it (mutmut).

Each group is mutated in a scratch copy of the repository at a commit (``git archive``) under ``--out``, with mutmut
told which files to mutate and which test files to run; a mutant counts as killed when one of those tests
fails or times out. The table (markdown) goes to ``--out/mutation.md``, with every survivor's diff, so each
can be killed by a test or named as equivalent.

    pip install -e '.[mutation]'
    python bench/mutation.py                       # every group (hours on two cores)
    python bench/mutation.py --group divergence    # one group; run again to resume it

Not part of CI: a group takes minutes to hours (about a minute a mutant here when its tests train). mutmut
keeps its results in the scratch copy, so a second call goes on where the first stopped and re-runs the
mutants of code that changed; ``--retry-survivors`` also re-runs those that survived, after tests were added.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# group: (files to mutate, the tests that cover them)
GROUPS = {
    "end_time": (["toflow/models/end_time.py", "toflow/solvers/end_time_grad.py"],
                 ["tests/test_end_time_grad.py", "tests/test_temporal.py", "tests/test_edges.py"]),
    "steps": (["toflow/solvers/control.py", "toflow/solvers/steps.py", "toflow/solvers/integrators.py"],
              ["tests/test_solvers.py", "tests/test_accuracy.py", "tests/test_reference_solvers.py",
               "tests/test_solver_methods.py"]),
    "divergence": (["toflow/models/divergence.py"], ["tests/test_divergence.py", "tests/test_density.py"]),
    "objectives": (["toflow/objectives.py"],
                   ["tests/test_flow_matching.py", "tests/test_warm_start.py", "tests/test_regularizers.py"]),
    "data": (["toflow/data/dequantization.py"], ["tests/test_images.py", "tests/test_data.py", "tests/test_edges.py"]),
    "time_step": (["toflow/trainers/temporal.py"], ["tests/test_temporal.py", "tests/test_edges.py"]),
    "checkpoints": (["toflow/trainers/checkpoints.py"], ["tests/test_trained_flow.py"]),
}

STATUSES = ("killed", "survived", "timeout", "suspicious", "no_tests", "skipped", "segfault")


def _config(files: list[str], tests: list[str]) -> str:
    def toml_list(items):
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["toflow"]\n'
        f"only_mutate = {toml_list(files)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly"]\n'
        'process_isolation = "forkserver"\n'  # torch is not fork-safe once it has run
        'also_copy = ["bench", "configs", "README.md", "Makefile"]\n'
    )


def _scratch(group: str, out: Path, revision: str) -> Path:
    """The repository at ``revision`` (a commit: what is tested is what was committed), with the group's
    mutmut section."""
    files, tests = GROUPS[group]
    where = out / group
    where.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    pyproject = (where / "pyproject.toml").read_text() + _config(files, tests)
    (where / "pyproject.toml").write_text(pyproject)
    return where


def _mutmut(where: Path, *args: str, log: Path | None = None) -> str:
    """Run mutmut in ``where``; its output streams to ``log`` when one is given (it draws a spinner)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    mutmut = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.argv[0] = 'mutmut'; cli()"]
    if log is None:
        done = subprocess.run(mutmut + list(args), cwd=where, env=env, capture_output=True, text=True)
    else:
        with open(log, "w") as stream:
            done = subprocess.run(mutmut + list(args), cwd=where, env=env, stdout=stream, stderr=subprocess.STDOUT,
                                  text=True)
    if done.returncode:
        raise SystemExit(f"mutation: mutmut {' '.join(args)} failed in {where} (exit {done.returncode})"
                         + (f"; see {log}" if log else f": {(done.stdout + done.stderr)[-500:]}"))
    return done.stdout or ""


def _forget_survivors(where: Path) -> None:
    """Mark the mutants that survived as not yet run, so that new tests get their chance at them."""
    for meta in (where / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text())
        codes = data.get("exit_code_by_key", {})
        data["exit_code_by_key"] = {k: (None if v == 0 else v) for k, v in codes.items()}
        meta.write_text(json.dumps(data, indent=4))


def run_group(group: str, out: Path, children: int, revision: str = "HEAD", retry: bool = False) -> dict:
    where = _scratch(group, out, revision)
    if retry:
        _forget_survivors(where)
    print(f"[mutation] {group}: mutating {', '.join(GROUPS[group][0])}", flush=True)
    _mutmut(where, "run", "--max-children", str(children), log=out / f"{group}.log")
    _mutmut(where, "export-cicd-stats")
    stats = json.loads((where / "mutants" / "mutmut-cicd-stats.json").read_text())
    survivors = [line.split(":")[0].strip() for line in _mutmut(where, "results").splitlines()
                 if line.strip().endswith("survived")]
    diffs = {name: _mutmut(where, "show", name) for name in survivors}
    counts = {status: stats.get(status, 0) for status in STATUSES}
    counts["total"] = stats.get("total", sum(counts.values()))
    print(f"[mutation] {group}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v), flush=True)
    result = {"group": group, "files": GROUPS[group][0], "tests": GROUPS[group][1], "counts": counts,
              "survivors": diffs}
    (out / f"{group}.json").write_text(json.dumps(result, indent=1))
    return result


def report(results: list[dict], out: Path) -> None:
    lines = ["| group | files | mutants | killed (incl. timeouts) | survived | no tests | killed share |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        c = r["counts"]
        killed = c["killed"] + c["timeout"]
        tried = killed + c["survived"] + c["no_tests"]
        share = f"{killed / tried:.1%}" if tried else "-"
        files = ", ".join(f"`{f}`" for f in r["files"])
        lines.append(f"| {r['group']} | {files} | {c['total']} | {killed} | {c['survived']} | {c['no_tests']} "
                     f"| {share} |")
    for r in results:
        for name, diff in r["survivors"].items():
            lines += ["", f"### {name} (survived)", "", "```diff", diff.strip(), "```"]
    (out / "mutation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:len(results) + 2]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", choices=sorted(GROUPS), help="a group (repeatable); default all")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "mutation")
    parser.add_argument("--children", type=int, default=1, help="mutants run at once (one thread each)")
    parser.add_argument("--revision", default="HEAD", help="the commit to test (default HEAD)")
    parser.add_argument("--retry-survivors", action="store_true", help="run the survivors again (after new tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for group in args.group or list(GROUPS):
        run_group(group, args.out, args.children, args.revision, args.retry_survivors)
    # the table holds every group that has a result in --out, this call's and earlier ones'
    report([json.loads((args.out / f"{g}.json").read_text()) for g in GROUPS if (args.out / f"{g}.json").is_file()],
           args.out)


if __name__ == "__main__":
    main()
