"""The plugin registry: built-ins first, entry points, and errors that name the fix."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from specforge import registry
from specforge.errors import PluginError
from specforge.plugin import API_VERSION, FeatureStoreSpec, StrategySpec, hookimpl


@dataclass(frozen=True)
class _Opts:
    width: int = 4


def _strategy_plugin(name: str, api_version: int = API_VERSION):
    class Plugin:
        @hookimpl
        def specforge_register_strategies(self, register):
            register(StrategySpec(name=name, summary=f"{name} for tests", factory="math:sqrt",
                                  options=_Opts, api_version=api_version))

    return Plugin()


def test_a_registered_strategy_is_found_with_its_plugin(specforge_plugin):
    specforge_plugin(_strategy_plugin("toy"), name="toy-plugin")
    reg = registry.get_registry().get("strategy", "toy")
    assert reg.spec.summary == "toy for tests"
    assert reg.plugin.name == "toy-plugin"
    assert reg.spec.options is _Opts


def test_unknown_first_party_strategy_names_the_package_to_install():
    with pytest.raises(PluginError, match=r"strategy 'domino' is not installed: pip install specforge-domino"):
        _fresh_without_entry_points().get("strategy", "domino")


def _fresh_without_entry_points(*plugins):
    import os

    old = os.environ.get("SPECFORGE_LOAD_PLUGINS")
    os.environ["SPECFORGE_LOAD_PLUGINS"] = ""
    try:
        return registry.load_registry(plugins)
    finally:
        if old is None:
            del os.environ["SPECFORGE_LOAD_PLUGINS"]
        else:
            os.environ["SPECFORGE_LOAD_PLUGINS"] = old


def test_unknown_store_lists_what_is_installed():
    reg = _fresh_without_entry_points(("toy", _strategy_plugin("toy")))
    with pytest.raises(PluginError) as info:
        reg.get("strategy", "nonesuch")
    assert "unknown strategy 'nonesuch'" in str(info.value)
    assert "toy" in str(info.value)


def test_two_plugins_registering_one_name_is_an_error_naming_both():
    reg = _fresh_without_entry_points(("first", _strategy_plugin("same")), ("second", _strategy_plugin("same")))
    with pytest.raises(PluginError) as info:
        reg.get("strategy", "same")
    message = str(info.value)
    assert "registered by two distributions" in message
    assert "first" in message and "second" in message
    statuses = [r.status for r in reg.entries("strategy")]
    assert all(s.startswith("duplicate") for s in statuses)


def test_a_component_for_another_api_version_is_broken_and_the_rest_work():
    reg = _fresh_without_entry_points(("old", _strategy_plugin("old-algo", api_version=API_VERSION + 1)),
                                      ("good", _strategy_plugin("good-algo")))
    with pytest.raises(PluginError, match=rf"written for plugin API {API_VERSION + 1}"):
        reg.get("strategy", "old-algo")
    assert reg.get("strategy", "good-algo").spec.name == "good-algo"
    assert reg.names("strategy") == ["good-algo"]


def test_a_plugin_whose_hook_raises_is_listed_broken_and_the_rest_work():
    class Exploding:
        @hookimpl
        def specforge_register_strategies(self, register):
            raise RuntimeError("boom at import of my model")

    reg = _fresh_without_entry_points(("exploding", Exploding()), ("good", _strategy_plugin("good-algo")))
    assert "boom at import of my model" in reg.plugins["exploding"].broken
    assert reg.names("strategy") == ["good-algo"]


def test_a_plugin_implementing_an_unknown_hook_is_broken():
    class Typo:
        @hookimpl
        def specforge_register_stratgies(self, register):  # misspelt on purpose
            pass

    reg = _fresh_without_entry_points(("typo", Typo()))
    assert "specforge_register_stratgies" in reg.plugins["typo"].broken


def test_registering_the_wrong_spec_type_breaks_the_plugin():
    class Wrong:
        @hookimpl
        def specforge_register_strategies(self, register):
            register(FeatureStoreSpec(name="x", summary="", factory="a:b"))

    reg = _fresh_without_entry_points(("wrong", Wrong()))
    assert "must register StrategySpec" in reg.plugins["wrong"].broken


def test_an_entry_point_that_fails_to_import_is_listed_broken(monkeypatch):
    import importlib.metadata as md

    broken = md.EntryPoint(name="ghost", value="specforge_no_such_module_xyz", group="specforge")
    monkeypatch.setattr(registry, "_entry_points", lambda: [broken])
    monkeypatch.delenv("SPECFORGE_LOAD_PLUGINS", raising=False)
    reg = registry.load_registry()
    assert "ModuleNotFoundError" in reg.plugins["ghost"].broken
    with pytest.raises(PluginError, match="broken plugin 'ghost'"):
        reg.get("strategy", "from-ghost")


def test_disable_and_load_env_vars_filter_entry_points(monkeypatch):
    import importlib.metadata as md

    eps = [md.EntryPoint(name="one", value="specforge_no_such_one", group="specforge"),
           md.EntryPoint(name="two", value="specforge_no_such_two", group="specforge")]
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    monkeypatch.delenv("SPECFORGE_LOAD_PLUGINS", raising=False)
    monkeypatch.setenv("SPECFORGE_DISABLE_PLUGINS", "one")
    assert set(registry.load_registry().plugins) - set(registry.BUILTIN_MODULES) == {"two"}
    monkeypatch.delenv("SPECFORGE_DISABLE_PLUGINS")
    monkeypatch.setenv("SPECFORGE_LOAD_PLUGINS", "one")
    assert set(registry.load_registry().plugins) - set(registry.BUILTIN_MODULES) == {"one"}


def test_builtins_load_first_and_belong_to_specforge_core():
    reg = _fresh_without_entry_points()
    names = list(reg.plugins)
    assert names[: len(registry.BUILTIN_MODULES)] == list(registry.BUILTIN_MODULES)
    assert {reg.plugins[n].distribution for n in registry.BUILTIN_MODULES} == {"specforge-core"}


def test_an_observer_that_raises_fails_naming_the_plugin():
    class Tracker:
        @hookimpl
        def specforge_on_step_end(self, run, step, metrics):
            raise ValueError("tracker offline")

    reg = _fresh_without_entry_points(("my-tracker", Tracker()))
    with pytest.raises(PluginError, match=r"plugin 'my-tracker' failed in specforge_on_step_end: .*tracker offline"):
        reg.call_observers("specforge_on_step_end", run=None, step=1, metrics={})


def test_export_checks_collect_every_plugins_problems():
    class Judge:
        @hookimpl
        def specforge_check_export(self, strategy, fmt, export_dir, info):
            return [f"{strategy} export misses fc.weight"] if fmt == "sglang" else []

    reg = _fresh_without_entry_points(("judge", Judge()))
    assert reg.check_export("eagle3", "sglang", "/tmp/x", {}) == ["[judge] eagle3 export misses fc.weight"]
    assert reg.check_export("eagle3", "hf", "/tmp/x", {}) == []
