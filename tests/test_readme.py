"""The README's Python blocks run as written (on small settings: two training steps)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def small(block: str) -> str:
    """The block with its configs found from anywhere and its runs two steps long."""
    block = re.sub(r"trainer\.max_steps=\d+", "trainer.max_steps=2", block)
    return block.replace('"configs/', f'"{ROOT}/configs/')


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_block_runs_as_written(index, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its runs land here
    namespace: dict = {}
    exec(compile(small(BLOCKS[index]), f"README.md python block {index}", "exec"), namespace)  # raises if not
    flows = [value for value in namespace.values() if type(value).__name__ in ("CNF", "MultiscaleFlow")]
    assert flows and all(flow.end_times()[0].T.isfinite() for flow in flows)  # each block makes a usable flow
