"""The command line: torch-free listing and planning, clear errors, plugin verbs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from specforge.testing.cli import run_specforge

NO_TORCH = """
import sys
from specforge.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("transformers"))
print("LOADED", loaded, file=sys.stderr)
sys.exit(code or (1 if loaded else 0))
"""


def run_without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory):
    from specforge.testing.tiny_models import make_tiny_target

    path = tmp_path_factory.mktemp("t") / "tiny"
    make_tiny_target(path, num_layers=8, hidden=32, heads=2, kv_heads=1)
    return path


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--json"], ["run", "--help"],
                                  ["bench", "--help"]])
def test_listing_and_help_import_no_torch(args):
    proc = run_without_torch(*args)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stderr


def test_plan_imports_no_torch_and_shows_components_and_features(target_dir):
    proc = run_without_torch("run", "--strategy", "example-medusa", "--target-model", str(target_dir), "--plan")
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stderr
    out = proc.stdout
    assert "strategy       example-medusa specforge-example 0.1.0" in out
    assert "feature store  disk" in out and "topology       offline" in out
    assert "last_hidden [S, 32]" in out
    assert "[training]" in out and "[strategy]" in out


def test_plugins_json_lists_components_with_distribution_and_version():
    proc = run_specforge("plugins", "--json")
    rows = json.loads(proc.stdout)
    by_name = {(r["kind"], r["name"]): r for r in rows}
    example = by_name[("strategy", "example-medusa")]
    assert example["distribution"] == "specforge-example" and example["version"] == "0.1.0"
    assert example["status"] == "ok"
    for kind, name in [("target_engine", "hf"), ("feature_store", "memory"), ("feature_store", "disk"),
                       ("topology", "offline"), ("topology", "online")]:
        assert by_name[(kind, name)]["distribution"] == "specforge-core", (kind, name)


def test_plugins_kind_filter():
    rows = json.loads(run_specforge("plugins", "--json", "--kind", "topology").stdout)
    assert {r["kind"] for r in rows} == {"topology"}


def test_unknown_first_party_store_says_what_to_install():
    proc = run_specforge("run", "--strategy", "example-medusa", "--store", "mooncake", "--plan", check=False,
                         env={"SPECFORGE_DISABLE_PLUGINS": "specforge-mooncake"})
    assert proc.returncode == 2
    assert "feature store 'mooncake' is not installed: pip install specforge-mooncake" in proc.stderr


def test_run_without_any_strategy_says_none_is_installed():
    proc = run_specforge("run", "--plan", env={"SPECFORGE_LOAD_PLUGINS": ""}, check=False)
    assert proc.returncode == 2
    assert "no strategy is installed" in proc.stderr and "pip install specforge-eagle3" in proc.stderr


def test_plan_rejects_invalid_strategy_options(target_dir):
    proc = run_specforge("run", "--strategy", "example-medusa", "--target-model", str(target_dir),
                         "--set", "strategy.num_heads=0", "--plan", check=False)
    assert proc.returncode == 2
    assert "num_heads" in proc.stderr


def test_a_plugin_verb_is_available():
    proc = run_specforge("example-hello")
    assert "example-medusa" in proc.stdout
