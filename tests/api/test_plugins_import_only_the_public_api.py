"""First-party plugins import from the core only what a third-party author may import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PUBLIC = ("specforge.plugin", "specforge.api", "specforge.testing")
PACKAGES = [*sorted(p for p in (REPO / "plugins").glob("specforge-*/src") if p.is_dir()),
            REPO / "tests" / "fixtures" / "specforge-example" / "src"]


def core_imports(source: Path) -> list[str]:
    """``specforge.*`` modules a file imports (at any depth, lazily or not)."""
    tree = ast.parse(source.read_text(), filename=str(source))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n == "specforge" or n.startswith("specforge.")]
    return found


def allowed(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in PUBLIC)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.parent.name)
def test_a_first_party_plugin_imports_only_the_public_api(package: Path) -> None:
    bad = [f"{f.relative_to(REPO)}: {m}" for f in sorted(package.rglob("*.py")) for m in core_imports(f)
           if not allowed(m)]
    assert not bad, "imports of core internals (use specforge.api instead):\n  " + "\n  ".join(bad)


def test_the_scan_sees_every_import_form(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import specforge.nn.norm\nfrom specforge.api import UserError\n"
                      "def f():\n    from specforge.stores.base import StoreBase\n")
    assert [m for m in core_imports(sample) if not allowed(m)] == ["specforge.nn.norm", "specforge.stores.base"]
