"""`specforge new strategy NAME` writes a complete plugin package, and only where it is safe to."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from specforge.commands.new import command as new_command
from specforge.scaffold.render import ScaffoldError, render_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PLACEHOLDER = re.compile(r"\{\{\s*\w+\s*\}\}")  # "{{name}}" left unrendered
EXPECTED_FILES = {
    "pyproject.toml",
    "README.md",
    "src/specforge_my_draft/__init__.py",
    "src/specforge_my_draft/plugin.py",
    "src/specforge_my_draft/options.py",
    "src/specforge_my_draft/strategy.py",
    "src/specforge_my_draft/model.py",
    "tests/test_kit.py",
}


def _new(name: str, dest: Path | None = None) -> object:
    options = ["--dir", str(dest)] if dest is not None else []
    return CliRunner().invoke(new_command, ["strategy", *options, "--", name])


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_new_strategy_writes_the_package_layout(tmp_path: Path) -> None:
    dest = tmp_path / "pkg"
    result = _new("my-draft", dest)
    assert result.exit_code == 0, result.output
    assert _files(dest) == EXPECTED_FILES
    assert "pip install --no-deps -e" in result.output


def test_new_strategy_defaults_to_specforge_name_in_the_current_directory(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _new("my-draft")
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "specforge-my-draft") == EXPECTED_FILES


def test_generated_pyproject_declares_the_entry_point_and_dependencies(tmp_path: Path) -> None:
    _new("my-draft", tmp_path / "pkg")
    project = tomllib.loads((tmp_path / "pkg" / "pyproject.toml").read_text())
    assert project["project"]["name"] == "specforge-my-draft"
    assert project["project"]["entry-points"]["specforge"] == {"my-draft": "specforge_my_draft.plugin"}
    assert any(d.startswith("specforge-core[train]") for d in project["project"]["dependencies"])
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/specforge_my_draft"]


def test_generated_code_parses_and_has_no_placeholders_left(tmp_path: Path) -> None:
    dest = tmp_path / "pkg"
    _new("my-draft", dest)
    for path in dest.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not PLACEHOLDER.search(text), f"{path}: {PLACEHOLDER.search(text)}"
            if path.suffix == ".py":
                ast.parse(text, filename=str(path))
    strategy = (dest / "src/specforge_my_draft/strategy.py").read_text()
    model = (dest / "src/specforge_my_draft/model.py").read_text()
    assert "class MyDraftStrategy" in strategy and "class MyDraftDraft" in model
    assert "import torch" not in strategy, "--plan imports the strategy module: no torch at its top level"
    assert re.search(r"# ---- TODO\(author\): model.*# ---- end TODO\(author\): model", model, re.S)
    assert re.search(r"# ---- TODO\(author\): loss.*# ---- end TODO\(author\): loss", model, re.S)
    assert 'strategy_name = "my-draft"' in (dest / "tests/test_kit.py").read_text()


@pytest.mark.parametrize("name", ["MyDraft", "my_draft", "-draft", "draft-", "my--draft", "3draft", "my draft",
                                  "x" * 41])
def test_new_strategy_rejects_names_that_are_not_lowercase_dashed(tmp_path: Path, name: str) -> None:
    result = _new(name, tmp_path / "pkg")
    assert result.exit_code == 2
    assert "lowercase letters, digits and single dashes" in result.output
    assert not (tmp_path / "pkg").exists()


def test_new_strategy_refuses_a_first_party_name(tmp_path: Path) -> None:
    result = _new("eagle3", tmp_path / "pkg")
    assert result.exit_code == 2
    assert "specforge-eagle3" in result.output


def test_new_strategy_refuses_to_overwrite_an_existing_directory(tmp_path: Path) -> None:
    dest = tmp_path / "pkg"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    result = _new("my-draft", dest)
    assert isinstance(result.exception, ScaffoldError)
    assert "already exists" in str(result.exception)
    assert _files(dest) == {"keep.txt"}
    assert (dest / "keep.txt").read_text() == "mine"


def test_new_strategy_fills_an_existing_empty_directory(tmp_path: Path) -> None:
    dest = tmp_path / "pkg"
    dest.mkdir()
    assert _new("my-draft", dest).exit_code == 0
    assert _files(dest) == EXPECTED_FILES


def test_a_template_with_an_unknown_placeholder_is_named() -> None:
    with pytest.raises(KeyError, match="unknown placeholder"):
        render_text("x = {{nope}}", {"name": "a"}, "t.py")
