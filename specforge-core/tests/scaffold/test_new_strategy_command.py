"""`specforge new strategy NAME` writes a complete plugin package, and only where it is safe to."""

from __future__ import annotations

import ast
import re
import subprocess
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
    "tests/test_reference.py",
}
MARKER = re.compile(r"^\s*# ---- TODO\(author\): (\w+) ")
SECTIONS = ["model", "loss", "decoding"]


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
    for module in ("strategy.py", "options.py", "plugin.py"):
        text = (dest / "src/specforge_my_draft" / module).read_text()
        assert not re.search(r"^(import torch|from torch)", text, re.M), f"--plan imports {module}: no torch at its top"
    assert 'strategy_name = "my-draft"' in (dest / "tests/test_kit.py").read_text()


def test_every_todo_marker_is_a_section_of_model_py_where_the_messages_say(tmp_path: Path) -> None:
    dest = tmp_path / "pkg"
    result = _new("my-draft", dest)
    model = "src/specforge_my_draft/model.py"
    marked = {p.relative_to(dest).as_posix() for p in dest.rglob("*")
              if p.is_file() and re.search(r"# ---- (end )?TODO\(author\)", p.read_text())}
    assert marked == {model}
    lines = (dest / model).read_text().splitlines()
    starts = [MARKER.match(line).group(1) for line in lines if MARKER.match(line)]
    ends = [m.group(1) for line in lines if (m := re.match(r"^\s*# ---- end TODO\(author\): (\w+) ", line))]
    assert starts == ends == SECTIONS
    assert (dest / model).read_text().count("TODO(author)") == 2 * len(SECTIONS), "model.py has TODO(author) elsewhere"
    # `specforge new` output, its --help and the README all send the author to model.py's sections
    assert f"edit the TODO(author) sections of {dest / model} (model, loss, decoding)" in result.output
    help_text = CliRunner().invoke(new_command, ["strategy", "--help"]).output
    assert "TODO(author) in DIR/src/PACKAGE/model.py (the draft, the loss, the decoding)" in " ".join(help_text.split())
    readme = (dest / "README.md").read_text()
    assert "three\nsections of `src/specforge_my_draft/model.py` marked `TODO(author)`" in readme
    assert [m.group(1) for m in re.finditer(r"^\d\. \*\*(\w+)\*\*", readme, re.M)] == SECTIONS


def _todo_left(src: Path) -> str:
    """``plugin.todo_left()`` of a rendered package, imported in a fresh process that must not load torch."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import specforge_my_draft.plugin as p; "
            "assert 'torch' not in sys.modules, 'plugin.py imports torch'; print(p.todo_left())")
    done = subprocess.run([sys.executable, "-c", code, str(src)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_plugin_is_incomplete_while_a_marker_is_left_and_ready_once_none_is(tmp_path: Path) -> None:
    dest = tmp_path / "pkg"
    _new("my-draft", dest)
    model = dest / "src/specforge_my_draft/model.py"
    assert _todo_left(dest / "src") == ("TODO(author) sections left in specforge_my_draft/model.py: model, loss, "
                                        "decoding (make the method yours, then delete their marker lines)")
    lines = model.read_text().splitlines(keepends=True)
    model.write_text("".join(line for line in lines if not re.search(r"TODO\(author\): (model|decoding)\b", line)))
    assert "left in specforge_my_draft/model.py: loss (" in _todo_left(dest / "src")
    model.write_text("".join(line for line in lines if "TODO(author)" not in line))
    assert _todo_left(dest / "src") == ""


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
