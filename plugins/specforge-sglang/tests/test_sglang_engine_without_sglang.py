"""Choosing the engine where SGLang is not installed says what to install; config errors name the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from specforge.errors import ConfigError
from specforge.options import build_options
from specforge.registry import get_registry
from specforge_sglang.backends import SGLangRequestError
from specforge_sglang.engine import SGLangEngine
from specforge_sglang.options import SGLangEngineOptions
from specforge_sglang.versions import (
    SGLangArchitectureError,
    SGLangNotInstalledError,
    SGLangVersionError,
    check_version,
)


def build_engine(model_dir: Path, **options):
    reg = get_registry().get("target_engine", "sglang")
    opts = build_options(reg.spec.options, options, "target_engine")
    return reg.spec.load()(opts, model_path=str(model_dir), dtype="float32", device="cpu")


def test_choosing_the_engine_without_sglang_says_what_to_install(tiny_qwen3_dir: Path) -> None:
    with pytest.raises(SGLangNotInstalledError) as err:
        build_engine(tiny_qwen3_dir)
    message = str(err.value)
    assert "pip install 'specforge-sglang[sglang]'" in message
    assert "0.5.23" in message
    assert "server_url" in message  # the alternative that needs no local SGLang


def test_a_server_url_engine_needs_no_local_sglang_and_names_an_unreachable_server(tiny_qwen3_dir: Path) -> None:
    engine = build_engine(tiny_qwen3_dir, server_url="http://127.0.0.1:9", capture_layers=[0])
    try:
        assert engine.info().num_layers == 4  # config, tokenizer and frozen weights: no server needed
        with pytest.raises(SGLangRequestError, match=r"127\.0\.0\.1:9"):
            engine.generate([[1, 2, 3]], 2)
    finally:
        engine.close()


def test_info_reads_frozen_weights_from_the_checkpoint(tiny_qwen3_dir: Path) -> None:
    from safetensors.torch import load_file

    engine = build_engine(tiny_qwen3_dir, server_url="http://127.0.0.1:9")
    try:
        info = engine.info()
    finally:
        engine.close()
    weights = load_file(str(tiny_qwen3_dir / "model.safetensors"))
    assert info.embed_weight.equal(weights["model.embed_tokens.weight"])
    assert info.lm_head_weight.equal(weights["lm_head.weight"])
    assert info.tokenizer is not None and info.hidden_size == 64


def test_float64_is_refused_naming_the_hf_engine(tiny_qwen3_dir: Path) -> None:
    with pytest.raises(ConfigError, match="target_engine=hf"):
        SGLangEngine(SGLangEngineOptions(server_url="http://127.0.0.1:9"), model_path=str(tiny_qwen3_dir),
                     dtype="float64")


def test_an_architecture_without_a_capture_class_is_refused(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "mistral"
    shutil.copytree(tiny_qwen3_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["MistralForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(SGLangArchitectureError, match="Qwen3ForCausalLM") as err:
        SGLangEngine(SGLangEngineOptions(server_url="http://127.0.0.1:9"), model_path=str(model))
    assert "target_engine=hf" in str(err.value)


def test_out_of_range_layers_are_refused_before_anything_starts(tiny_qwen3_dir: Path) -> None:
    from specforge.contracts import FeatureRequest, Sample

    engine = build_engine(tiny_qwen3_dir, server_url="http://127.0.0.1:9", capture_layers=[0])
    try:
        with pytest.raises(ConfigError, match=r"0\.\.3"):
            engine.capture([Sample("s", (1, 2), (1, 1))], FeatureRequest(layers=(0, 4)))
    finally:
        engine.close()


def test_untested_sglang_versions_are_refused_unless_allowed(caplog: pytest.LogCaptureFixture) -> None:
    check_version("0.5.23")
    check_version("0.5.23+cpu")
    with pytest.raises(SGLangVersionError, match=r"sglang==0\.5\.23") as err:
        check_version("0.5.22")
    assert "allow_untested_version" in str(err.value)
    check_version("0.6.0", allow_untested=True)
    assert "0.6.0" in caplog.text


def test_the_capture_server_listens_on_loopback_unless_a_host_is_given(tiny_qwen3_dir: Path) -> None:
    import argparse

    from specforge_sglang.serve import server_argv

    ours = argparse.Namespace(capture_layers=[0], shm_dir="")
    argv, _ = server_argv(ours, ["--model-path", str(tiny_qwen3_dir), "--port", "30000"])
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    argv, _ = server_argv(ours, ["--model-path", str(tiny_qwen3_dir), "--host=10.0.0.5"])
    assert "--host" not in argv and "--host=10.0.0.5" in argv, "the user's host is kept, not doubled"


def test_on_one_machine_sglang_ranks_meet_through_a_file_not_a_tcp_port(tiny_qwen3_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from specforge_sglang.backends import RENDEZVOUS_ENV
    from specforge_sglang.serve import server_argv

    monkeypatch.delenv(RENDEZVOUS_ENV, raising=False)
    ours = argparse.Namespace(capture_layers=[0], shm_dir="")
    model = ["--model-path", str(tiny_qwen3_dir)]
    _, env = server_argv(ours, model)
    first = env[RENDEZVOUS_ENV]
    assert first.startswith("file://") and "specforge-sglang-rendezvous-" in first
    monkeypatch.setenv(RENDEZVOUS_ENV, first)
    _, env = server_argv(ours, model)
    assert env[RENDEZVOUS_ENV].startswith("file://") and env[RENDEZVOUS_ENV] != first, "a fresh file per start"
    for many_machines in (["--nnodes", "2"], ["--dist-init-addr", "10.0.0.5:5000"]):
        _, env = server_argv(ours, model + many_machines)
        assert RENDEZVOUS_ENV not in env, many_machines
    monkeypatch.setenv(RENDEZVOUS_ENV, "env://")
    _, env = server_argv(ours, model)
    assert RENDEZVOUS_ENV not in env, "a user's own rendezvous is kept"
