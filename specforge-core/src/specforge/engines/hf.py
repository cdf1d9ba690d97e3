"""The built-in target engine: a local Hugging Face causal LM run in this process with transformers.

Capture runs the base model (embedding, decoder layers, final norm) with forward hooks on the
requested decoder layers, so no [B, S, V] logits and no unrequested hidden states are kept.
Layer id ``i`` is the output of decoder layer ``i`` (HF ``hidden_states[i+1]``; for the last
layer this is the residual stream before the final norm, whereas HF's ``hidden_states[-1]`` is
after it). ``last_hidden`` is the lm_head input, after the final norm.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from specforge.contracts import FeatureRequest, Sample, SampleFeatures, TargetInfo
from specforge.devices import resolve_device, resolve_dtype
from specforge.engines.hf_batch import HFBatchDecodeSession, map_cache
from specforge.engines.target_config import (
    TargetModelError,
    check_architecture,
    read_config,
    target_info_from_config,
    validate_model_dir,
)
from specforge.errors import UserError
from specforge.options import Range, TargetEngineOptions

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class HFEngineOptions(TargetEngineOptions):
    """Options of the ``hf`` engine (config section ``[target_engine]``)."""

    batch_size: Annotated[int, Range(ge=1)] = 8
    """Samples per forward in capture, prompts per batch in generate."""
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    """Passed to ``from_pretrained``."""


def _batches(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _layer_output(output: Any) -> Any:
    """A decoder layer returns its hidden states, alone or first in a tuple (older transformers)."""
    return output[0] if isinstance(output, tuple) else output


class HFEngine:
    """``TargetEngine`` over a local transformers causal LM (frozen, eval mode)."""

    def __init__(self, options: HFEngineOptions | None = None, *, model_path: str,
                 dtype: str = "float32", device: str = "auto") -> None:
        self.options = options or HFEngineOptions()
        self.model_dir = validate_model_dir(model_path)
        self._config = read_config(self.model_dir)
        check_architecture(self._config, self.model_dir)
        self._shape_info = target_info_from_config(self.model_dir)
        self.dtype_name = dtype
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self._model = self._load_model()
        self._info: TargetInfo | None = None

    # ------------------------------------------------------------------ loading

    def _load_model(self) -> Any:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM

        transformers.utils.logging.disable_progress_bar()  # one "Loading weights" bar per engine is noise
        major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
        dtype_key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(self.model_dir), local_files_only=True,
                attn_implementation=self.options.attn_implementation, **{dtype_key: self.dtype},
            )
        except (OSError, ValueError, KeyError) as exc:
            raise TargetModelError(f"cannot load the target model from {str(self.model_dir)!r}: {exc}; "
                                   f"check that the directory holds a complete Hugging Face checkpoint") from exc
        model.to(self.device).eval().requires_grad_(False)
        layers = getattr(model.base_model, "layers", None)
        num_layers = self._shape_info.num_layers
        if not isinstance(layers, torch.nn.ModuleList) or len(layers) != num_layers:
            raise TargetModelError(f"target model {str(self.model_dir)!r}: expected {num_layers} decoder "
                                   f"layers under base_model.layers; this model layout is not supported")
        self._layers = layers
        return model

    def _require_open(self) -> Any:
        if self._model is None:
            raise RuntimeError("this HFEngine is closed; create a new one")
        return self._model

    # ------------------------------------------------------------------ TargetEngine

    def info(self) -> TargetInfo:
        """Shape fields from config.json, tokenizer, and frozen weights from the safetensors files."""
        if self._info is not None:
            return self._info
        self._require_open()
        from transformers import AutoTokenizer

        from specforge.engines.frozen import frozen_target_info

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TargetModelError(f"cannot load the tokenizer of {str(self.model_dir)!r}: {exc}; the "
                                   f"target directory must include its tokenizer files") from exc
        self._info = frozen_target_info(self.model_dir, self.dtype_name, tokenizer=tokenizer)
        return self._info

    def capture(self, samples: Sequence[Sample], request: FeatureRequest) -> list[SampleFeatures]:
        """Per sample, unpadded: input_ids, loss_mask and the requested features (on cpu)."""
        import torch

        model = self._require_open()
        request.check_layers(len(self._layers), option="the strategy's target layer ids")
        self._check_samples(samples)
        order = sorted(range(len(samples)), key=lambda i: len(samples[i].input_ids), reverse=True)
        results: list[SampleFeatures | None] = [None] * len(samples)
        with torch.no_grad():
            for chunk in _batches(order, self.options.batch_size):
                batch = [samples[i] for i in chunk]
                for i, feats in zip(chunk, self._capture_batch(model, batch, request)):
                    results[i] = feats
        return results  # type: ignore[return-value]

    def _check_samples(self, samples: Sequence[Sample]) -> None:
        vocab = self._shape_info.vocab_size
        for s in samples:
            if not s.input_ids:
                raise UserError(f"sample {s.sample_id!r} has no tokens; drop empty samples before capture")
            bad = [t for t in s.input_ids if not 0 <= t < vocab]
            if bad:
                raise UserError(f"sample {s.sample_id!r} has token ids {bad[:5]} outside the target "
                                 f"vocabulary 0..{vocab - 1}; tokenize with the target's tokenizer")

    def _capture_batch(self, model: Any, batch: Sequence[Sample], request: FeatureRequest) -> list[dict]:
        import torch

        lengths = [len(s.input_ids) for s in batch]
        width = max(lengths)
        ids = torch.zeros(len(batch), width, dtype=torch.long)  # [B, S], right padded
        mask = torch.zeros(len(batch), width, dtype=torch.long)  # [B, S]
        for row, s in enumerate(batch):
            ids[row, :lengths[row]] = torch.tensor(s.input_ids, dtype=torch.long)
            mask[row, :lengths[row]] = 1

        captured, out = self._forward_features(model, ids.to(self.device), request,
                                               attention_mask=mask.to(self.device), use_cache=False)
        last = out.last_hidden_state  # [B, S, H], after the final norm
        head = model.get_output_embeddings() if request.logits else None

        features = []
        for row, s in enumerate(batch):
            n = lengths[row]
            f: dict[str, Any] = {
                "input_ids": torch.tensor(s.input_ids, dtype=torch.long),  # [S]
                "loss_mask": torch.tensor(s.loss_mask, dtype=torch.long),  # [S]
            }
            if request.layers:
                f["hidden_states"] = torch.cat([captured[i][row, :n] for i in request.layers], dim=-1).cpu()
            if request.last_hidden:
                f["last_hidden"] = last[row, :n].cpu().clone()  # [S, H]
            if head is not None:
                f["logits"] = head(last[row, :n]).cpu()  # [S, V]
            features.append(f)
        return features

    def decode_session(self, request: FeatureRequest) -> HFDecodeSession:
        """Incremental verification with this model's KV cache (``DecodingEngine``)."""
        self._require_open()
        request.check_layers(len(self._layers), option="the strategy's target layer ids")
        return HFDecodeSession(self, request)

    def decode_batch_session(self, request: FeatureRequest) -> HFBatchDecodeSession:
        """Incremental verification of several sequences per pass (``BatchDecodingEngine``)."""
        self._require_open()
        request.check_layers(len(self._layers), option="the strategy's target layer ids")
        return HFBatchDecodeSession(self, request)

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 stop_ids: Iterable[int] = ()) -> list[list[int]]:
        """Greedy continuation (new tokens only), stopping after a stop id or ``max_new_tokens``."""
        import torch

        model = self._require_open()
        prompts = [list(p) for p in prompts]
        self._check_samples([Sample(f"prompt {i}", tuple(p), (0,) * len(p)) for i, p in enumerate(prompts)])
        stops = frozenset(int(t) for t in stop_ids)
        results: list[list[int]] = [[] for _ in prompts]
        if max_new_tokens <= 0:
            return results
        with torch.no_grad():
            for chunk in _batches(range(len(prompts)), self.options.batch_size):
                for i, new in zip(chunk, self._greedy(model, [prompts[i] for i in chunk],
                                                     max_new_tokens, stops)):
                    results[i] = new
        return results

    def _greedy(self, model: Any, prompts: list[list[int]], max_new_tokens: int,
                stops: frozenset[int]) -> list[list[int]]:
        """Left-padded batched greedy decoding with a KV cache, as ``generate(do_sample=False)`` does."""
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.zeros(len(prompts), width, dtype=torch.long)  # [B, P], left padded
        mask = torch.zeros(len(prompts), width, dtype=torch.long)  # [B, P]
        for row, p in enumerate(prompts):
            ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[row, width - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, P]

        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1)
        new: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        for step in range(max_new_tokens):
            next_ids = out.logits[:, -1].argmax(-1)  # [B]
            for row, token in enumerate(next_ids.tolist()):
                if not done[row]:
                    new[row].append(token)
                    done[row] = token in stops
            if all(done) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)  # [B, P+step+1]
            positions = positions[:, -1:] + 1  # [B, 1]
            out = model(input_ids=next_ids[:, None], attention_mask=mask, position_ids=positions,
                        past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)
        return new

    def close(self) -> None:
        """Free the model; the engine cannot be used afterwards."""
        if self._model is None:
            return
        on_cuda = self.device.type == "cuda"
        self._model = None
        self._layers = None
        self._info = None
        if on_cuda:
            import torch

            torch.cuda.empty_cache()

    def _forward_features(self, model: Any, ids: Any, request: FeatureRequest, **kwargs: Any) -> tuple[dict, Any]:
        """Run the base model on ``ids`` [B, S] with hooks on the requested layers; (captured, output)."""
        captured: dict[int, Any] = {}  # layer id -> [B, S, H]
        handles = []
        for layer_id in dict.fromkeys(request.layers):
            def hook(_module: Any, _args: Any, output: Any, _id: int = layer_id) -> None:
                captured[_id] = _layer_output(output)
            handles.append(self._layers[layer_id].register_forward_hook(hook))
        try:
            out = model.base_model(input_ids=ids, **kwargs)
        finally:
            for h in handles:
                h.remove()
        return captured, out

    def __enter__(self) -> HFEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HFEngine({str(Path(self.model_dir))!r}, dtype={self.dtype}, device={self.device})"


class HFDecodeSession:
    """One sequence through an ``HFEngine`` with a growing KV cache: extend, then truncate rejects."""

    def __init__(self, engine: HFEngine, request: FeatureRequest) -> None:
        from transformers import DynamicCache

        self.engine = engine
        self.request = request
        self.cache = DynamicCache()
        self.length = 0
        self._tree_start = 0

    def extend(self, ids: Sequence[int]) -> SampleFeatures:
        import torch

        device = self.engine.device
        positions = torch.arange(self.length, self.length + len(ids), device=device)[None]  # [1, n]
        return self._run(ids, position_ids=positions)

    def extend_tree(self, ids: Sequence[int], parents: Sequence[int]) -> SampleFeatures:
        """Tree nodes in one pass: a 4D additive mask lets node i see the cache and its ancestors."""
        import torch

        n, device = len(ids), self.engine.device
        allowed = torch.zeros(n, n, dtype=torch.bool)
        depth = [0] * n
        for i, p in enumerate(parents):
            if p >= i:
                raise ValueError(f"tree node {i} has parent {p}: parents must come before their children")
            allowed[i, i] = True
            if p >= 0:
                allowed[i] |= allowed[p]
                depth[i] = depth[p] + 1
        dtype = self.engine._require_open().dtype
        mask = torch.zeros(1, 1, n, self.length + n, dtype=dtype)  # [1, 1, n, cached + n]
        mask[0, 0, :, self.length:] = torch.zeros(n, n, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        positions = torch.tensor([[self.length + d for d in depth]], device=device)  # [1, n]
        self._tree_start = self.length
        return self._run(ids, position_ids=positions, attention_mask=mask.to(device))

    def keep(self, nodes: Sequence[int]) -> None:
        """Keep the cached tokens before the last tree and the tree nodes ``nodes``, in order."""
        import torch

        start = self._tree_start
        index = torch.tensor([*range(start), *(start + i for i in nodes)], device=self.engine.device)
        map_cache(self.cache, lambda t: t.index_select(-2, index))
        self.length = len(index)

    def _run(self, ids: Sequence[int], **kwargs: Any) -> SampleFeatures:
        import torch

        model = self.engine._require_open()
        n = len(ids)
        new = torch.tensor([list(ids)], dtype=torch.long, device=self.engine.device)  # [1, n]
        with torch.no_grad():
            captured, out = self.engine._forward_features(model, new, self.request, past_key_values=self.cache,
                                                          use_cache=True, **kwargs)
        self.length += n
        last = out.last_hidden_state[0]  # [n, H]
        features: dict[str, Any] = {"input_ids": new[0].cpu()}
        if self.request.layers:
            features["hidden_states"] = torch.cat([captured[i][0] for i in self.request.layers], dim=-1).cpu()
        if self.request.last_hidden:
            features["last_hidden"] = last.cpu().clone()
        features["logits"] = model.get_output_embeddings()(last).cpu()  # [n, V]
        return features

    def truncate(self, length: int) -> None:
        if length < self.length:
            self.cache.crop(length - self.length)  # negative: tokens to remove (transformers 4.x and 5.x)
            self.length = length

    def close(self) -> None:
        self.cache = None
