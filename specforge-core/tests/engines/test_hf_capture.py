"""hf engine capture against a direct transformers forward (independent of the engine's code)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from specforge.contracts import FeatureRequest, Sample
from specforge.engines.hf import HFEngine, HFEngineOptions
from specforge.errors import SpecforgeError

LENGTHS = (6, 11, 1, 8)


def _samples(vocab: int = 259) -> list[Sample]:
    gen = torch.Generator().manual_seed(1)
    out = []
    for k, n in enumerate(LENGTHS):
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()
        out.append(Sample(f"s{k}", tuple(ids), tuple(int(i % 2) for i in range(n))))
    return out


def _reference_forward(model_dir: Path, samples: list[Sample]) -> list[tuple[tuple, torch.Tensor]]:
    """Per sample, alone and unpadded: (HF hidden_states [S, H] each, logits [S, V]) in float64."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float64, local_files_only=True)
    results = []
    with torch.no_grad():
        for s in samples:
            out = model(torch.tensor([s.input_ids]), output_hidden_states=True)
            results.append((tuple(h[0] for h in out.hidden_states), out.logits[0]))
    return results


@pytest.fixture(scope="module")
def engine(qwen3_dir: Path) -> Iterator[HFEngine]:
    with HFEngine(HFEngineOptions(batch_size=4), model_path=str(qwen3_dir), dtype="float64",
                  device="cpu") as e:
        yield e


@pytest.fixture(scope="module")
def reference(qwen3_dir: Path) -> list[tuple[tuple, torch.Tensor]]:
    return _reference_forward(qwen3_dir, _samples())


def test_captured_layer_i_is_hf_hidden_states_i_plus_1(engine: HFEngine, reference: list) -> None:
    layers = (2, 0, 1)  # request order, not sorted
    feats = engine.capture(_samples(), FeatureRequest(layers=layers))
    for f, (hidden_states, _) in zip(feats, reference):
        expected = torch.cat([hidden_states[i + 1] for i in layers], dim=-1)  # [S, 3*H]
        torch.testing.assert_close(f["hidden_states"], expected, atol=1e-12, rtol=0)


def test_last_layer_is_its_output_before_the_final_norm(engine: HFEngine, reference: list) -> None:
    # HF's hidden_states[-1] is after the final norm; "output of layer L-1" is before it.
    last = engine.info().num_layers - 1
    feats = engine.capture(_samples(), FeatureRequest(layers=(last,), last_hidden=True))
    norm = engine._model.base_model.norm
    for f, (hidden_states, _) in zip(feats, reference):
        assert not torch.allclose(f["hidden_states"], hidden_states[-1])
        torch.testing.assert_close(norm(f["hidden_states"]), hidden_states[-1], atol=1e-12, rtol=0)


def test_last_hidden_is_the_lm_head_input_and_logits_are_the_models(engine: HFEngine, reference: list) -> None:
    feats = engine.capture(_samples(), FeatureRequest(last_hidden=True, logits=True))
    for s, f, (hidden_states, logits) in zip(_samples(), feats, reference):
        torch.testing.assert_close(f["last_hidden"], hidden_states[-1], atol=1e-12, rtol=0)
        torch.testing.assert_close(f["logits"], logits, atol=1e-12, rtol=0)
        assert f["logits"].shape == (len(s.input_ids), engine.info().vocab_size)


def test_capture_returns_ids_mask_and_only_what_was_requested(engine: HFEngine) -> None:
    samples = _samples()
    feats = engine.capture(samples, FeatureRequest(layers=(1,)))
    for s, f in zip(samples, feats):
        assert set(f) == {"input_ids", "loss_mask", "hidden_states"}
        assert f["input_ids"].dtype == torch.int64 and f["input_ids"].tolist() == list(s.input_ids)
        assert f["loss_mask"].dtype == torch.int64 and f["loss_mask"].tolist() == list(s.loss_mask)
        assert f["hidden_states"].shape == (len(s.input_ids), 64)


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_batched_capture_equals_unbatched(qwen3_dir: Path, engine: HFEngine, batch_size: int) -> None:
    request = FeatureRequest(layers=(3, 1), last_hidden=True, logits=True)
    batched = engine.capture(_samples(), request)  # batch size 4: all samples padded together
    with HFEngine(HFEngineOptions(batch_size=batch_size), model_path=str(qwen3_dir), dtype="float64",
                  device="cpu") as other:
        unbatched = other.capture(_samples(), request)
    for a, b in zip(batched, unbatched):
        for name in ("hidden_states", "last_hidden", "logits"):
            torch.testing.assert_close(a[name], b[name], atol=1e-12, rtol=0)


def test_float32_batched_capture_matches_float64_reference(llama_dir: Path) -> None:
    ref_hidden = [hidden for hidden, _ in _reference_forward(llama_dir, _samples())]
    with HFEngine(HFEngineOptions(batch_size=4), model_path=str(llama_dir), dtype="float32",
                  device="cpu") as e:
        feats = e.capture(_samples(), FeatureRequest(layers=(0, 1), last_hidden=True))
    for f, hidden_states in zip(feats, ref_hidden):
        assert f["hidden_states"].dtype == torch.float32
        expected = torch.cat([hidden_states[1], hidden_states[2]], dim=-1)
        torch.testing.assert_close(f["hidden_states"].double(), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(f["last_hidden"].double(), hidden_states[-1], atol=1e-5, rtol=1e-5)


def test_bfloat16_engine_captures_bfloat16_features(qwen2_tied_dir: Path) -> None:
    with HFEngine(model_path=str(qwen2_tied_dir), dtype="bfloat16", device="cpu") as e:
        f = e.capture(_samples()[:1], FeatureRequest(layers=(0,), last_hidden=True))[0]
        info = e.info()
    assert f["hidden_states"].dtype == torch.bfloat16 and f["last_hidden"].dtype == torch.bfloat16
    assert info.embed_weight.dtype == torch.bfloat16


@pytest.mark.parametrize("bad", [4, -1, 100])
def test_out_of_range_layer_id_names_the_valid_range(engine: HFEngine, bad: int) -> None:
    with pytest.raises(SpecforgeError, match=r"valid: 0\.\.3"):
        engine.capture(_samples()[:1], FeatureRequest(layers=(0, bad)))


def test_token_id_outside_the_vocabulary_is_rejected_naming_the_sample(engine: HFEngine) -> None:
    with pytest.raises(ValueError, match=r"'bad'.*outside the target vocabulary 0\.\.271"):
        engine.capture([Sample("bad", (1, 272), (0, 1))], FeatureRequest(last_hidden=True))


def test_capture_of_no_samples_is_empty(engine: HFEngine) -> None:
    assert engine.capture([], FeatureRequest(layers=(0,))) == []
