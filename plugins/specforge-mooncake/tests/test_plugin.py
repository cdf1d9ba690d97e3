"""Registration stays light, and a broken Mooncake install is an error that names the fix."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from specforge.contracts import FeatureKey
from specforge.errors import ConfigError, SpecforgeError
from specforge.options import build_options
from specforge_mooncake import native
from specforge_mooncake.errors import MooncakeUnavailableError
from specforge_mooncake.keys import below, older_generations, record_key, tensor_key
from specforge_mooncake.options import MooncakeStoreOptions


def test_the_entry_module_and_the_cli_verb_import_neither_torch_nor_mooncake():
    code = ("import sys, specforge_mooncake.plugin, specforge_mooncake.commands, specforge_mooncake.options; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'mooncake')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("failure", [
    ImportError("libibverbs.so.1: cannot open shared object file: No such file or directory"),
    OSError("libnl-route-3.so.200: cannot open shared object file: No such file or directory"),
])
def test_a_missing_system_library_says_to_apt_get_install_libibverbs1(monkeypatch, failure):
    def broken(name):
        raise failure

    monkeypatch.setattr(native, "_import", broken)
    from specforge_mooncake.store import MooncakeStore

    with pytest.raises(MooncakeUnavailableError, match=re.escape("apt-get install libibverbs1")) as info:
        MooncakeStore(MooncakeStoreOptions(master_address="127.0.0.1:1"))
    assert isinstance(info.value, SpecforgeError)


def test_a_missing_mooncake_package_says_to_pip_install_the_non_cuda_wheel(monkeypatch):
    monkeypatch.setitem(sys.modules, "mooncake.store", None)  # the import system now fails as if absent
    with pytest.raises(MooncakeUnavailableError, match=re.escape("pip install mooncake-transfer-engine-non-cuda")):
        native.mooncake_store()


def test_a_missing_master_binary_says_to_pip_install_the_non_cuda_wheel(monkeypatch):
    monkeypatch.setattr(native.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.raises(MooncakeUnavailableError, match=re.escape("pip install mooncake-transfer-engine-non-cuda")):
        native.master_binary()


def test_options_are_checked_when_the_config_is_read():
    with pytest.raises(ConfigError, match="master_address"):
        build_options(MooncakeStoreOptions, {"master_address": "no-port-here"}, "store")
    with pytest.raises(ConfigError, match="protocol"):
        build_options(MooncakeStoreOptions, {"protocol": "udp"}, "store")
    pure = build_options(MooncakeStoreOptions, {"master_address": "10.0.0.5:50051", "global_segment_size": 0}, "store")
    assert (pure.managed, pure.segment_owner) == (False, False)
    assert MooncakeStoreOptions().managed and MooncakeStoreOptions().segment_owner


def test_keys_put_the_generation_in_the_key_and_escape_slashes():
    key = FeatureKey("features", "e0/00000007", 3)
    assert record_key(key) == "features/e0%2F00000007/g3"
    assert tensor_key(key, "hidden_states") == "features/e0%2F00000007/g3/hidden_states"
    assert tensor_key(FeatureKey("f", "100%", 0), "a/b") == "f/100%25/g0/a%2Fb"


@pytest.mark.parametrize("n", [1, 2, 9, 10, 11, 19, 100, 101, 250, 1000, 4097])
def test_the_older_generation_pattern_matches_exactly_the_generations_below(n):
    pattern = re.compile(f"(?:{below(n)})$")
    assert [k for k in range(3 * n + 20) if pattern.match(str(k))] == list(range(n))
    assert not pattern.match("007")


def test_the_older_generation_pattern_stays_inside_its_sample():
    pattern = re.compile(older_generations(FeatureKey("f", "a.b", 2)))
    assert pattern.match("f/a.b/g1/x") and pattern.match("f/a.b/g0")
    for other in ("f/a.b/g2/x", "f/a.b/g12/x", "f/axb/g0/x", "f/a.b.c/g0/x", "f/a.b/g1x"):
        assert not pattern.match(other), other
