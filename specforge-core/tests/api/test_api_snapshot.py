"""The public plugin API is pinned: names and signatures change only on purpose (docs/api-stability.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from specforge.api import reference

SNAPSHOT = Path(__file__).with_name("api_snapshot.txt")
DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def test_the_public_api_equals_its_committed_snapshot() -> None:
    expected = SNAPSHOT.read_text()
    current = reference.snapshot()
    assert current == expected, (
        "the plugin API changed; if that is deliberate, read docs/api-stability.md (does it bump "
        "API_VERSION?) and regenerate: python -m specforge.api.reference --snapshot > " + str(SNAPSHOT))


def test_the_reference_page_is_generated_from_the_code() -> None:
    assert DOCS.read_text() == reference.markdown(), (
        "docs/api.md is stale: python -m specforge.api.reference --markdown > docs/api.md")


def test_the_torch_free_part_of_the_api_imports_no_torch() -> None:
    code = ("import sys\n"
            "import specforge.plugin, specforge.api, specforge.api.stores, specforge.api.engines\n"
            "import specforge.api.export\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'transformers')))[:3])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_specforge_plugin_and_specforge_api_are_the_same_names() -> None:
    import specforge.api
    import specforge.plugin

    assert specforge.plugin.__all__ == specforge.api.__all__
    assert all(getattr(specforge.plugin, n) is getattr(specforge.api, n) for n in specforge.api.__all__)
