"""RunConfig: defaults < TOML < flags < --set, strict keys and types, capability checks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from specforge import registry
from specforge.config import resolve
from specforge.errors import ConfigError
from specforge.plugin import (
    FeatureStoreSpec,
    StrategySpec,
    TargetEngineSpec,
    TopologySpec,
    hookimpl,
)


@dataclass(frozen=True)
class AlgoOptions:
    ttt_length: int = 7
    aux_layer_ids: tuple[int, ...] | None = None
    decay: float = 0.8


class Components:
    @hookimpl
    def specforge_register_strategies(self, register):
        register(StrategySpec(name="algo", summary="", factory="math:sqrt", options=AlgoOptions))

    @hookimpl
    def specforge_register_target_engines(self, register):
        register(TargetEngineSpec(name="eng", summary="", factory="math:sqrt"))

    @hookimpl
    def specforge_register_feature_stores(self, register):
        register(FeatureStoreSpec(name="mem", summary="", factory="math:sqrt"))
        register(FeatureStoreSpec(name="files", summary="", factory="math:sqrt", cross_process=True,
                                  persistent=True))
        register(FeatureStoreSpec(name="shared", summary="", factory="math:sqrt", cross_process=True))

    @hookimpl
    def specforge_register_topologies(self, register):
        register(TopologySpec(name="simple", summary="", factory="math:sqrt", default_store="files"))
        register(TopologySpec(name="split", summary="", factory="math:sqrt", default_store="files",
                              store_requires=frozenset({"cross_process"})))


@pytest.fixture
def reg(monkeypatch):
    monkeypatch.setenv("SPECFORGE_LOAD_PLUGINS", "")
    monkeypatch.setattr(registry, "BUILTIN_MODULES", ())  # only the components above
    return registry.load_registry([("components", Components())])


BASE = {"strategy": "algo", "target_engine": "eng", "topology": "simple"}


def test_defaults_then_toml_then_flags_then_set(reg, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[training]\nlr = 0.001\nbatch_size = 4\n[strategy]\nttt_length = 5\n')
    cfg = resolve(reg, config_file=toml, flags=dict(BASE, output_dir="out"),
                  sets=["training.batch_size=8", "strategy.aux_layer_ids=[1, 2, 3]"])
    assert cfg.training.lr == 0.001  # from TOML
    assert cfg.training.batch_size == 8  # --set beats TOML
    assert cfg.training.epochs == 1  # default
    assert cfg.run.output_dir == "out"  # flag
    assert cfg.strategy.options == AlgoOptions(ttt_length=5, aux_layer_ids=(1, 2, 3))


def test_an_absent_switch_flag_leaves_the_config_files_value(reg, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text("[run]\ntensorboard = true\n")
    assert resolve(reg, config_file=toml, flags=dict(BASE, tensorboard=False)).run.tensorboard is True
    assert resolve(reg, flags=dict(BASE, tensorboard=False)).run.tensorboard is False
    assert resolve(reg, flags=dict(BASE, tensorboard=True)).run.tensorboard is True


def test_unknown_key_suggests_the_close_one(reg):
    with pytest.raises(ConfigError, match=r"unknown key training\.learning_rat .*did you mean 'lr'|"
                                          r"unknown key training\.batchsize.*did you mean 'batch_size'"):
        resolve(reg, flags=BASE, sets=["training.batchsize=2"])


def test_unknown_strategy_option_names_the_section_and_suggestion(reg):
    with pytest.raises(ConfigError, match=r"unknown key strategy\.ttt_lenght \(did you mean 'ttt_length'\?\)"):
        resolve(reg, flags=BASE, sets=["strategy.ttt_lenght=3"])


def test_unknown_section_is_an_error(reg, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text("[trainig]\nlr = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[trainig\].*did you mean 'training'"):
        resolve(reg, config_file=toml, flags=BASE)


def test_wrong_types_are_errors_naming_the_key(reg):
    with pytest.raises(ConfigError, match=r"strategy\.ttt_length: expected an integer, got 'seven'"):
        resolve(reg, flags=BASE, sets=["strategy.ttt_length=seven"])
    with pytest.raises(ConfigError, match=r"training\.lr: expected a number"):
        resolve(reg, flags=BASE, sets=["training.lr=true"])
    with pytest.raises(ConfigError, match=r"strategy\.aux_layer_ids\[1\]: expected an integer"):
        resolve(reg, flags=BASE, sets=['strategy.aux_layer_ids=[1, "x"]'])


def test_store_defaults_per_topology_and_flag_overrides(reg):
    assert resolve(reg, flags=BASE).run.store == "files"
    assert resolve(reg, flags=dict(BASE, store="mem")).run.store == "mem"


def test_impossible_store_for_topology_is_rejected_naming_alternatives(reg):
    with pytest.raises(ConfigError, match=r"topology 'split' needs a store that is cross_process, "
                                          r"but store 'mem' is not; use --store files or --store shared"):
        resolve(reg, flags=dict(BASE, topology="split", store="mem"))


def test_missing_strategy_lists_installed_ones(reg):
    with pytest.raises(ConfigError, match=r"choose a strategy with --strategy \(installed: algo\)"):
        resolve(reg, flags={"target_engine": "eng", "topology": "simple"})


def test_no_strategy_installed_says_what_to_install(monkeypatch):
    monkeypatch.setenv("SPECFORGE_LOAD_PLUGINS", "")
    with pytest.raises(ConfigError, match=r"no strategy is installed; install one \(pip install specforge-eagle3"):
        resolve(registry.load_registry(), flags={})


def test_bad_set_syntax_shows_an_example(reg):
    with pytest.raises(ConfigError, match=r"expected section\.key=value"):
        resolve(reg, flags=BASE, sets=["lr=3"])


def test_invalid_toml_names_the_file(reg, tmp_path):
    toml = tmp_path / "broken.toml"
    toml.write_text("[training\n")
    with pytest.raises(ConfigError, match=r"broken\.toml.*not valid TOML"):
        resolve(reg, config_file=toml, flags=BASE)


def test_resolved_config_round_trips_through_toml(reg, tmp_path):
    cfg = resolve(reg, flags=BASE, sets=["strategy.aux_layer_ids=[1, 3, 4]", "training.lr=0.0003"])
    saved = tmp_path / "config.toml"
    saved.write_text(cfg.to_toml())
    again = resolve(reg, config_file=saved)
    assert again.sections() == cfg.sections()


def test_section_validation_rejects_impossible_values(reg):
    with pytest.raises(ConfigError, match=r"training\.batch_size must be at least 1"):
        resolve(reg, flags=BASE, sets=["training.batch_size=0"])
    with pytest.raises(ConfigError, match=r"training\.parallel must be 'ddp' or 'fsdp'"):
        resolve(reg, flags=BASE, sets=['training.parallel="zero3"'])


class DemoTuned:
    @hookimpl
    def specforge_register_strategies(self, register):
        register(StrategySpec(name="tuned", summary="", factory="math:sqrt", options=AlgoOptions,
                              demo={"strategy": {"ttt_length": 3}, "training": {"lr": 0.005}}))


def test_demo_settings_apply_only_to_the_embedded_demo_and_only_where_unset(monkeypatch):
    monkeypatch.setenv("SPECFORGE_LOAD_PLUGINS", "")
    monkeypatch.setattr(registry, "BUILTIN_MODULES", ())
    reg = registry.load_registry([("components", Components()), ("tuned", DemoTuned())])
    flags = dict(BASE, strategy="tuned")
    demo = resolve(reg, flags=flags)
    assert (demo.training.lr, demo.training.batch_size, demo.strategy.options.ttt_length) == (0.005, 8, 3)
    mine = resolve(reg, flags=flags, sets=["training.batch_size=2", "strategy.ttt_length=5"])
    assert (mine.training.batch_size, mine.strategy.options.ttt_length) == (2, 5)
    real = resolve(reg, flags=dict(flags, target_model="/models/x", data="chats.jsonl"))
    assert (real.training.lr, real.training.batch_size, real.strategy.options.ttt_length) == (1e-4, 1, 7)
