"""The plugin registers the ``sglang`` engine and the export check without importing torch or SGLang."""

from __future__ import annotations

import json
import subprocess
import sys

from specforge.registry import get_registry
from specforge_sglang.options import SGLangEngineOptions
from specforge_sglang.versions import installed_sglang_version


def test_main_venv_has_no_sglang() -> None:
    # The harness venv holds SGLang; the main venv must not (a full install pulls a CUDA torch).
    assert installed_sglang_version() is None


def test_sglang_engine_is_registered_by_specforge_sglang() -> None:
    reg = get_registry().get("target_engine", "sglang")
    assert reg.spec.factory == "specforge_sglang.engine:SGLangEngine"
    assert reg.spec.options is SGLangEngineOptions
    assert reg.plugin.distribution == "specforge-sglang"


def test_export_check_hook_is_registered() -> None:
    names = {impl.plugin_name for impl in get_registry().pm.hook.specforge_check_export.get_hookimpls()}
    assert any("sglang" in n for n in names), names


def test_registration_imports_neither_torch_nor_sglang() -> None:
    code = ("import json, sys; from specforge.registry import get_registry; get_registry().get('target_engine', "
            "'sglang'); print(json.dumps(sorted(m for m in ('torch', 'sglang', 'transformers') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
