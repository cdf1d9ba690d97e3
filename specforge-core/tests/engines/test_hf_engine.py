"""hf engine: registration, info(), options and lifecycle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from specforge.contracts import FeatureRequest, TargetEngine
from specforge.engines.hf import HFEngine, HFEngineOptions
from specforge.errors import ConfigError
from specforge.registry import load_registry


def test_hf_is_registered_as_a_built_in_engine_with_a_lazy_factory() -> None:
    reg = load_registry().get("target_engine", "hf")
    assert reg.plugin.name == "specforge.builtin.engines"
    assert reg.spec.options is HFEngineOptions
    assert reg.spec.load() is HFEngine


def test_info_has_tokenizer_mask_token_and_the_models_frozen_weights(qwen3_dir: Path) -> None:
    with HFEngine(model_path=str(qwen3_dir), device="cpu") as engine:
        info = engine.info()
        assert isinstance(engine, TargetEngine)
        assert info.tokenizer.convert_ids_to_tokens(info.mask_token_id) == "<|mask|>"
        model = AutoModelForCausalLM.from_pretrained(str(qwen3_dir), local_files_only=True)
        assert torch.equal(info.embed_weight, model.get_input_embeddings().weight)
        assert torch.equal(info.lm_head_weight, model.get_output_embeddings().weight)
        assert engine.info() is info  # cached


def test_tied_target_info_shares_one_matrix(qwen2_tied_dir: Path) -> None:
    with HFEngine(model_path=str(qwen2_tied_dir), dtype="float64", device="cpu") as engine:
        info = engine.info()
    assert info.lm_head_weight is info.embed_weight and info.embed_weight.dtype == torch.float64
    assert info.mask_token_id is None


def test_auto_device_is_cpu_without_cuda(llama_dir: Path) -> None:
    with HFEngine(model_path=str(llama_dir)) as engine:
        assert engine.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dtype": "int8"}, "dtype 'int8' is not supported; use one of float32"),
    ({"options": {"batch_size": 0}}, "batch_size must be at least 1"),
])
def test_bad_options_are_config_errors(llama_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        if "options" in kwargs:
            kwargs = {**kwargs, "options": HFEngineOptions(**kwargs["options"])}
        HFEngine(model_path=str(llama_dir), device="cpu", **kwargs)


def test_eager_attention_gives_the_same_features_as_sdpa(llama_dir: Path) -> None:
    from specforge.contracts import Sample

    samples = [Sample("a", (5, 9, 200, 7), (0, 0, 1, 1)), Sample("b", (3, 4), (0, 1))]
    request = FeatureRequest(layers=(1,), last_hidden=True)
    feats = {}
    for attn in ("sdpa", "eager"):
        with HFEngine(HFEngineOptions(attn_implementation=attn), model_path=str(llama_dir),
                      dtype="float64", device="cpu") as engine:
            feats[attn] = engine.capture(samples, request)
    # HF's eager attention takes its softmax in float32, hence the float32-sized tolerance
    for a, b in zip(feats["sdpa"], feats["eager"]):
        torch.testing.assert_close(a["hidden_states"], b["hidden_states"], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(a["last_hidden"], b["last_hidden"], atol=1e-6, rtol=1e-6)


def test_closed_engine_refuses_work(llama_dir: Path) -> None:
    engine = HFEngine(model_path=str(llama_dir), device="cpu")
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        engine.generate([[1, 2]], 2)
