"""Conformance kit for target engines: any engine must agree with the built-in ``hf`` engine.

Two ways to use it from a plugin's tests:

    from specforge.testing.engine_kit import EngineKit

    class TestMyEngine(EngineKit):
        dtype = "bfloat16"           # what the engine runs in; the reference runs in the same
        atol = rtol = 2e-2           # tolerance for hidden states, last hidden and logits

        def make_engine(self, model_dir):
            return MyEngine(MyOptions(), model_path=str(model_dir), dtype=self.dtype, device="cuda")

or call the ``check_*`` functions directly with an engine, a reference engine and a tiny model
directory (``make_tiny_target``). The kit builds tiny random Qwen3, Llama and tied-embedding
Qwen2 targets; override the ``target_dir`` fixture to choose others.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from specforge.contracts import FeatureRequest, Sample, TargetEngine
from specforge.errors import SpecforgeError

KIT_TARGETS: dict[str, dict[str, Any]] = {
    "qwen3": {"arch": "qwen3", "num_layers": 4},
    "llama": {"arch": "llama", "num_layers": 4},
    "qwen2-tied": {"arch": "qwen2", "num_layers": 3, "tie_embeddings": True},
}
"""Tiny targets every engine is checked on: ``make_tiny_target`` keyword arguments by name."""

SAMPLE_LENGTHS = (9, 17, 1, 12, 5)


# --------------------------------------------------------------------------- inputs


def kit_samples(vocab: int, lengths: Sequence[int] = SAMPLE_LENGTHS, seed: int = 0) -> list[Sample]:
    """Seeded random samples of different lengths (one of length 1) with ids below ``vocab``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    samples = []
    for k, n in enumerate(lengths):
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()
        mask = torch.randint(0, 2, (n,), generator=gen).tolist()
        samples.append(Sample(f"kit-{k}", tuple(ids), tuple(mask)))
    return samples


def kit_layer_requests(num_layers: int) -> list[FeatureRequest]:
    """Requests that exercise unsorted layer order, every layer, each feature alone, and none."""
    last = num_layers - 1
    return [
        FeatureRequest(layers=(last, 0, num_layers // 2), last_hidden=True, logits=True),
        FeatureRequest(layers=tuple(range(num_layers))),
        FeatureRequest(last_hidden=True),
        FeatureRequest(logits=True),
        FeatureRequest(),
    ]


def _read_config(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


# --------------------------------------------------------------------------- checks


def _close(actual: Any, expected: Any, *, atol: float, rtol: float, what: str) -> None:
    import torch

    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if not actual.is_floating_point():
        raise AssertionError(f"{what}: dtype {actual.dtype} is not floating point")
    torch.testing.assert_close(actual.double().cpu(), expected.double().cpu(), atol=atol, rtol=rtol,
                               msg=lambda m: f"{what}: {m}")


def check_info(engine: TargetEngine, model_dir: Path, reference: TargetEngine | None = None,
               *, atol: float = 0.0, rtol: float = 0.0) -> None:
    """``info()`` matches config.json, holds a tokenizer and the frozen weights, and is stable."""
    config = _read_config(model_dir)
    info = engine.info()
    heads = config["num_attention_heads"]
    expected = {
        "num_layers": config["num_hidden_layers"],
        "hidden_size": config["hidden_size"],
        "vocab_size": config["vocab_size"],
        "num_attention_heads": heads,
        "num_key_value_heads": config.get("num_key_value_heads", heads),
        "head_dim": config.get("head_dim") or config["hidden_size"] // heads,
        "intermediate_size": config["intermediate_size"],
        "rms_norm_eps": config["rms_norm_eps"],
        "max_position_embeddings": config["max_position_embeddings"],
        "model_type": config["model_type"],
    }
    for name, value in expected.items():
        if getattr(info, name) != value:
            raise AssertionError(f"info().{name} is {getattr(info, name)!r}, config.json says {value!r}")
    if info.tokenizer is None:
        raise AssertionError("info().tokenizer is None; engines must provide the target's tokenizer")
    if len(info.tokenizer) > info.vocab_size:
        raise AssertionError(f"tokenizer has {len(info.tokenizer)} tokens, more than vocab {info.vocab_size}")
    if info.mask_token_id != info.tokenizer.mask_token_id:
        raise AssertionError(f"info().mask_token_id {info.mask_token_id} != tokenizer's "
                             f"{info.tokenizer.mask_token_id}")
    shape = (info.vocab_size, info.hidden_size)
    for name in ("embed_weight", "lm_head_weight"):
        weight = getattr(info, name)
        if weight is None or tuple(weight.shape) != shape:
            raise AssertionError(f"info().{name} must be a [V, H] = {shape} tensor, got "
                                 f"{None if weight is None else tuple(weight.shape)}")
    again = engine.info()
    if again.num_layers != info.num_layers or again.embed_weight is None:
        raise AssertionError("a second info() call returned different information")
    if reference is not None:
        ref = reference.info()
        for name in ("embed_weight", "lm_head_weight"):
            _close(getattr(info, name), getattr(ref, name), atol=atol, rtol=rtol, what=f"info().{name}")


def check_capture(engine: TargetEngine, reference: TargetEngine, samples: Sequence[Sample],
                  request: FeatureRequest, *, atol: float, rtol: float) -> None:
    """``capture`` returns exactly the requested features, unpadded, equal to the reference."""
    import torch

    got = engine.capture(samples, request)
    want = reference.capture(samples, request)
    if len(got) != len(samples):
        raise AssertionError(f"capture returned {len(got)} results for {len(samples)} samples")
    hidden = engine.info().hidden_size
    names = set(request.feature_names())
    for sample, g, w in zip(samples, got, want):
        where = f"sample {sample.sample_id} (length {len(sample.input_ids)}), {request}"
        if set(g) != names:
            raise AssertionError(f"{where}: features {sorted(g)}, expected exactly {sorted(names)}")
        for key, values in (("input_ids", sample.input_ids), ("loss_mask", sample.loss_mask)):
            expected = torch.tensor(values, dtype=torch.long)
            if g[key].dtype != torch.long or not torch.equal(g[key].cpu(), expected):
                raise AssertionError(f"{where}: {key} must be the sample's own, as int64 [S]")
        n = len(sample.input_ids)
        if request.layers:
            if tuple(g["hidden_states"].shape) != (n, len(request.layers) * hidden):
                raise AssertionError(f"{where}: hidden_states shape {tuple(g['hidden_states'].shape)}, "
                                     f"expected {(n, len(request.layers) * hidden)}")
            for k, layer in enumerate(request.layers):
                cols = slice(k * hidden, (k + 1) * hidden)
                _close(g["hidden_states"][:, cols], w["hidden_states"][:, cols], atol=atol, rtol=rtol,
                       what=f"{where}: layer {layer} (block {k} of hidden_states)")
        if request.last_hidden:
            _close(g["last_hidden"], w["last_hidden"], atol=atol, rtol=rtol, what=f"{where}: last_hidden")
        if request.logits:
            _close(g["logits"], w["logits"], atol=atol, rtol=rtol, what=f"{where}: logits")


def check_generate(engine: TargetEngine, reference: TargetEngine, prompts: Sequence[Sequence[int]],
                   *, max_new_tokens: int) -> None:
    """Greedy generation equals the reference's token for token, with and without stop ids."""
    want = reference.generate(prompts, max_new_tokens)
    got = engine.generate(prompts, max_new_tokens)
    if got != want:
        raise AssertionError(f"greedy generate differs from the hf engine:\n got {got}\nwant {want}")
    if any(len(w) != max_new_tokens for w in want):
        raise AssertionError(f"without stop ids every prompt must get {max_new_tokens} tokens: {want}")
    # A stop id the reference produces mid-way: output stops right after its first occurrence.
    stop = want[0][max_new_tokens // 2]
    want_stopped = [w[:w.index(stop) + 1] if stop in w else w for w in want]
    got_stopped = engine.generate(prompts, max_new_tokens, stop_ids=(stop,))
    if got_stopped != want_stopped:
        raise AssertionError(f"generate with stop id {stop} must stop after it (included):\n"
                             f" got {got_stopped}\nwant {want_stopped}")
    if engine.generate(prompts, 0) != [[] for _ in prompts]:
        raise AssertionError("generate with max_new_tokens=0 must return an empty list per prompt")


def check_layer_range(engine: TargetEngine, samples: Sequence[Sample]) -> None:
    """Out-of-range layer ids raise an error that names the valid range."""
    num_layers = engine.info().num_layers
    for bad in (num_layers, -1):
        try:
            engine.capture(samples[:1], FeatureRequest(layers=(0, bad)))
        except (ValueError, SpecforgeError) as exc:
            if f"0..{num_layers - 1}" not in str(exc):
                raise AssertionError(f"error for layer id {bad} must name the valid range "
                                     f"0..{num_layers - 1}: {exc}") from exc
        else:
            raise AssertionError(f"capture with layer id {bad} of a {num_layers}-layer target did not raise")


# --------------------------------------------------------------------------- pytest base class


class EngineKit:
    """Base class for an engine's conformance tests; subclass it as ``Test...``.

    Implement ``make_engine(model_dir)``. Class attributes set the dtype both engines run in
    and the tolerances for float features (``atol``/``rtol``, applied after casting to float64).
    """

    dtype: str = "float32"
    atol: float = 1e-5
    rtol: float = 1e-5
    max_new_tokens: int = 8
    reference_device: str = "cpu"

    def make_engine(self, model_dir: Path) -> TargetEngine:
        raise NotImplementedError("subclasses of EngineKit implement make_engine(model_dir)")

    def make_reference(self, model_dir: Path) -> TargetEngine:
        from specforge.engines.hf import HFEngine, HFEngineOptions

        return HFEngine(HFEngineOptions(batch_size=2), model_path=str(model_dir), dtype=self.dtype,
                        device=self.reference_device)

    @pytest.fixture(scope="class", params=sorted(KIT_TARGETS))
    @classmethod
    def target_dir(cls, request: Any, tmp_path_factory: Any) -> Path:
        from specforge.testing.tiny_models import make_tiny_target

        return make_tiny_target(tmp_path_factory.mktemp(f"kit-{request.param}"), **KIT_TARGETS[request.param])

    @pytest.fixture(scope="class")
    @classmethod
    def engines(cls, target_dir: Path) -> Iterator[tuple[TargetEngine, TargetEngine]]:
        kit = cls()
        engine = kit.make_engine(target_dir)
        reference = kit.make_reference(target_dir)
        try:
            yield engine, reference
        finally:
            engine.close()
            reference.close()

    @pytest.fixture(scope="class")
    @classmethod
    def samples(cls, engines: tuple[TargetEngine, TargetEngine]) -> list[Sample]:
        return kit_samples(len(engines[1].info().tokenizer))

    def test_engine_satisfies_the_target_engine_protocol(self, engines: Any) -> None:
        assert isinstance(engines[0], TargetEngine)

    def test_info_matches_config_and_reference_weights(self, engines: Any, target_dir: Path) -> None:
        check_info(engines[0], target_dir, engines[1], atol=self.atol, rtol=self.rtol)

    @pytest.mark.parametrize("which", range(len(kit_layer_requests(4))))
    def test_capture_matches_hf_engine(self, engines: Any, samples: list[Sample], which: int) -> None:
        request = kit_layer_requests(engines[1].info().num_layers)[which]
        check_capture(engines[0], engines[1], samples, request, atol=self.atol, rtol=self.rtol)

    def test_capture_of_one_sample_equals_its_capture_in_a_batch(self, engines: Any,
                                                                  samples: list[Sample]) -> None:
        engine, _ = engines
        request = FeatureRequest(layers=(0, engine.info().num_layers - 1), last_hidden=True)
        batched = engine.capture(samples, request)
        for sample, in_batch in zip(samples, batched):
            alone = engine.capture([sample], request)[0]
            for name in ("hidden_states", "last_hidden"):
                _close(in_batch[name], alone[name], atol=self.atol, rtol=self.rtol,
                       what=f"{sample.sample_id} {name} batched vs alone")

    def test_generate_matches_hf_greedy(self, engines: Any, samples: list[Sample]) -> None:
        prompts = [list(s.input_ids) for s in samples]
        check_generate(engines[0], engines[1], prompts, max_new_tokens=self.max_new_tokens)

    def test_out_of_range_layer_ids_raise_naming_the_valid_range(self, engines: Any,
                                                                  samples: list[Sample]) -> None:
        check_layer_range(engines[0], samples)
