"""docs/plugin-authoring.md's Python is real code: the walk-through's blocks are the files
`specforge new strategy my-algo` writes, verbatim, and every other block runs."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from specforge.scaffold.render import render_strategy

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "plugin-authoring.md"
WALK_THROUGH = "## From paper to plugin"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[tuple[bool, str]]:
    """(inside the walk-through, code) for every python block of the page."""
    text = DOC.read_text()
    start = text.index(WALK_THROUGH)
    return [(m.start() > start, m.group(1)) for m in FENCE.finditer(text)]


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    dest = tmp_path_factory.mktemp("scaffold") / "specforge-my-algo"
    return {p.relative_to(dest).as_posix(): p.read_text() for p in render_strategy("my-algo", dest)}


def run_block(code: str, where: Path) -> ModuleType:
    """Import ``code`` as a module from a file (so inspect, and the attribute docstrings, see its source)."""
    name = f"doc_snippet_{abs(hash(str(where)))}"  # stays imported: inspect reads its source later
    path = where / f"{name}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _where(block: str, files: dict[str, str]) -> list[str]:
    return [name for name, text in files.items() if block in text]


def test_the_page_has_a_walk_through_with_code() -> None:
    inside = [code for walk, code in python_blocks() if walk]
    assert len(inside) >= 8


BLOCKS = python_blocks()


@pytest.mark.parametrize(("walk", "code"), BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_python_block_is_the_scaffolds_code_or_runs(walk: bool, code: str, scaffold: dict[str, str],
                                                      tmp_path: Path) -> None:
    if _where(code, scaffold):
        return
    assert not walk, f"a walk-through block is not in the rendered scaffold verbatim:\n{code}"
    run_block(code, tmp_path)  # a standalone example runs


def test_the_options_example_reports_its_cross_field_problem_and_documents_its_fields(tmp_path: Path) -> None:
    from specforge.api import ConfigError
    from specforge.options import build_options, describe_options

    block = next(code for _, code in python_blocks() if "class MyOptions(StrategyOptions)" in code)
    options = run_block(block, tmp_path).MyOptions
    with pytest.raises(ConfigError, match=r"strategy\.num_heads above 8 needs strategy\.temperature <= 1"):
        build_options(options, {"num_heads": 9}, "strategy")
    with pytest.raises(ConfigError, match=r"strategy\.temperature"):
        build_options(options, {"temperature": 0}, "strategy")
    assert "Softmax temperature of the heads." in str(describe_options(options))



def test_the_example_plugins_readme_shows_its_own_kit_test() -> None:
    example = REPO / "tests" / "fixtures" / "specforge-example"
    blocks = FENCE.findall((example / "README.md").read_text())
    assert blocks
    for code in blocks:
        assert code in (example / "tests" / "test_example_kit.py").read_text(), code
