"""The ``sglang`` target engine: features and greedy generations from SGLang, with the hf engine's semantics.

SGLang runs in process (``sglang.Engine``, started lazily at the first capture or generate) or
as a server the user started with ``python -m specforge_sglang.serve``. Its target model is
built from the SpecForge capture class, which captures a fixed set of layers plus the final
post-norm hidden state (``CapturePlan``); each capture request is a prefill with one new token.
``info()`` never needs SGLang: shapes come from config.json, the frozen embedding and lm_head
from the safetensors files, the tokenizer from transformers.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from specforge.api import ConfigError, FeatureRequest, Sample, SampleFeatures, TargetInfo, UserError
from specforge.api.engines import (
    TargetModelError,
    check_architecture,
    frozen_target_info,
    read_config,
    target_info_from_config,
    validate_model_dir,
)
from specforge_sglang.backends import HttpBackend, InProcessBackend, capture_environment
from specforge_sglang.capture_plan import RID_PREFIX, CapturePlan
from specforge_sglang.options import SGLangEngineOptions
from specforge_sglang.transport import read_rows, rows_from_json
from specforge_sglang.versions import check_capture_architecture, check_version, require_sglang

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")
"""What SGLang runs; float64 (the hf engine's exact mode) is not one of them."""

CPU_DEFAULTS: dict[str, Any] = {
    "attention_backend": "torch_native", "sampling_backend": "pytorch", "disable_overlap_schedule": True,
    "grammar_backend": "none", "mem_fraction_static": 0.3, "max_total_tokens": 16384,
}
"""What SGLang needs on a CPU (the test harness; see the README: not a supported deployment)."""


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class SGLangEngine:
    """``TargetEngine`` backed by SGLang (see the module docstring)."""

    def __init__(self, options: SGLangEngineOptions | None = None, *, model_path: str,
                 dtype: str = "float32", device: str = "auto") -> None:
        self.options = options or SGLangEngineOptions()
        self.model_dir = validate_model_dir(model_path)
        self._config = read_config(self.model_dir)
        check_architecture(self._config, self.model_dir)
        check_capture_architecture(self._config, self.model_dir)
        self._shape_info = target_info_from_config(self.model_dir)
        if dtype not in DTYPES:
            raise ConfigError(f"target dtype {dtype!r} is not supported by the sglang engine; use one of "
                              f"{', '.join(DTYPES)} (float64 runs only with target_engine=hf)")
        self.dtype_name = dtype
        self.device_name = device
        if not self.options.server_url:
            require_sglang(allow_untested=self.options.allow_untested_version)  # fail when chosen, not later
        self._backend: Any = None
        self._plan: CapturePlan | None = None
        self._own_shm_dir: str | None = None
        self._info: TargetInfo | None = None
        self._closed = False
        self._session = uuid.uuid4().hex[:12]
        self._rid_counter = itertools.count()

    # ------------------------------------------------------------------ SGLang lifecycle

    @property
    def num_layers(self) -> int:
        return self._shape_info.num_layers

    def _device(self) -> str:
        if self.device_name != "auto":
            return self.device_name
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _shm_dir(self) -> str:
        if self.options.shm_dir:
            Path(self.options.shm_dir).mkdir(parents=True, exist_ok=True)
            return self.options.shm_dir
        if self._own_shm_dir is None:
            base = "/dev/shm" if Path("/dev/shm").is_dir() else None
            self._own_shm_dir = tempfile.mkdtemp(prefix="specforge-sglang-", dir=base)
        return self._own_shm_dir

    def _engine_kwargs(self) -> dict[str, Any]:
        device = self._device()
        opts = self.options
        kwargs: dict[str, Any] = {"log_level": "warning"}
        if device.startswith("cpu"):
            kwargs.update(CPU_DEFAULTS)
        kwargs.update({
            "model_path": str(self.model_dir), "dtype": self.dtype_name, "device": device.split(":")[0],
            "tp_size": opts.tp_size, "skip_tokenizer_init": True, "disable_radix_cache": True,
            "chunked_prefill_size": -1, "enable_return_hidden_states": True,
        })
        if ":" in device:  # "cuda:N": SGLang counts GPUs from base_gpu_id
            kwargs["base_gpu_id"] = int(device.split(":")[1])
        if opts.attention_backend:
            kwargs["attention_backend"] = opts.attention_backend
        if opts.mem_fraction_static is not None:
            kwargs["mem_fraction_static"] = opts.mem_fraction_static
        if opts.max_total_tokens:
            kwargs["max_total_tokens"] = opts.max_total_tokens
        kwargs.update(opts.engine_args)
        return kwargs

    def _server_plan(self) -> CapturePlan:
        layers = self.options.capture_layers or ()
        return CapturePlan(layers=layers, shm_dir=self.options.shm_dir if self.options.uses_shm else "")

    def _start(self, layers: tuple[int, ...]) -> None:
        if self.options.server_url:
            backend = HttpBackend(self.options.server_url, timeout_s=self.options.request_timeout_s)
            version = backend.server_info().get("version")
            if version:
                check_version(str(version), allow_untested=self.options.allow_untested_version, where="serving")
            self._backend, self._plan = backend, self._server_plan()
            return
        plan = CapturePlan(layers=layers, shm_dir=self._shm_dir() if self.options.uses_shm else "")
        env = capture_environment(plan, cpu=self._device().startswith("cpu"))
        self._backend = InProcessBackend(self._engine_kwargs(), env)
        self._plan = plan

    def _ensure(self, layers: tuple[int, ...] = ()) -> CapturePlan:
        """A running SGLang whose plan captures ``layers`` (restarted with the union in process)."""
        if self._closed:
            raise RuntimeError("this SGLangEngine is closed; create a new one")
        if self._plan is None:
            fixed = self.options.capture_layers
            self._start(tuple(fixed) if fixed is not None else tuple(layers))
        assert self._plan is not None
        if self._plan.covers(layers):
            return self._plan
        missing = sorted(set(layers) - set(self._plan.layers))
        if self.options.server_url:
            raise ConfigError(f"the SGLang server at {self.options.server_url} captures layers "
                              f"{list(self._plan.layers)} (target_engine.capture_layers) but layers {missing} "
                              f"were requested; restart it with `python -m specforge_sglang.serve --capture-layers "
                              f"{' '.join(map(str, sorted(set(self._plan.layers) | set(layers))))} ...` and set "
                              f"target_engine.capture_layers to match")
        if self.options.capture_layers is not None:
            raise ConfigError(f"target_engine.capture_layers {list(self.options.capture_layers)} lacks the "
                              f"requested layers {missing}; add them")
        wider = self._plan.widened(tuple(layers))
        log.warning("restarting SGLang to capture layers %s (was %s); set target_engine.capture_layers to "
                    "capture them from the start", list(wider.layers), list(self._plan.layers))
        self._backend.shutdown()
        self._backend, self._plan = None, None
        self._start(wider.layers)
        return self._plan  # type: ignore[return-value]

    def _rids(self, n: int, *, capture: bool) -> list[str]:
        """Unique request ids; only capture requests carry the prefix the capture class writes rows for."""
        prefix = RID_PREFIX if capture else "specforge-generate-"
        return [f"{prefix}{self._session}-{next(self._rid_counter)}" for _ in range(n)]

    # ------------------------------------------------------------------ TargetEngine

    def info(self) -> TargetInfo:
        """Shape fields from config.json, the tokenizer, and the frozen weights (SGLang is not started)."""
        if self._info is not None:
            return self._info
        if self._closed:
            raise RuntimeError("this SGLangEngine is closed; create a new one")
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TargetModelError(f"cannot load the tokenizer of {str(self.model_dir)!r}: {exc}; the "
                                   f"target directory must include its tokenizer files") from exc
        self._info = frozen_target_info(self.model_dir, self.dtype_name, tokenizer=tokenizer)  # [V, H] weights
        return self._info

    def _check_prompts(self, prompts: Sequence[Sequence[int]], names: Sequence[str]) -> None:
        vocab = self._shape_info.vocab_size
        for name, ids in zip(names, prompts):
            if not ids:
                raise UserError(f"{name} has no tokens; drop empty samples before capture")
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise UserError(f"{name} has token ids {bad[:5]} outside the target vocabulary 0..{vocab - 1}; "
                                 f"tokenize with the target's tokenizer")

    def capture(self, samples: Sequence[Sample], request: FeatureRequest) -> list[SampleFeatures]:
        """Per sample, unpadded: input_ids, loss_mask and the requested features (on cpu)."""
        import torch

        request.check_layers(self.num_layers, option="the strategy's target layer ids")
        self._check_prompts([s.input_ids for s in samples], [f"sample {s.sample_id!r}" for s in samples])
        if not samples:
            return []
        plan = self._ensure(tuple(request.layers))
        info = self.info() if request.logits else None
        hidden = self._shape_info.hidden_size
        dtype = getattr(torch, self.dtype_name)
        results: list[SampleFeatures] = []
        for chunk in _batches(list(samples), self.options.batch_size):
            for sample, rows in zip(chunk, self._capture_rows(plan, [s.input_ids for s in chunk], dtype)):
                results.append(self._features(sample, rows, request, plan, hidden, info))
        return results

    def _capture_rows(self, plan: CapturePlan, prompts: Sequence[Sequence[int]], dtype: Any) -> list[Any]:
        """One [S, W] tensor per prompt, W = plan.num_blocks * hidden."""
        width = plan.num_blocks * self._shape_info.hidden_size
        rids = self._rids(len(prompts), capture=True)
        params = [{"temperature": 0.0, "max_new_tokens": 1, "ignore_eos": True}] * len(prompts)
        outputs = self._backend.generate(prompts, params, rids=rids, return_hidden_states=not plan.shm_dir)
        rows = []
        for rid, prompt, out in zip(rids, prompts, outputs):
            if plan.shm_dir:
                rows.append(read_rows(plan.shm_dir, rid, num_tokens=len(prompt), width=width, dtype=dtype))
            else:
                rows.append(rows_from_json(out.get("meta_info", {}).get("hidden_states"), rid=rid,
                                           num_tokens=len(prompt), width=width, dtype=dtype))
        return rows

    def _features(self, sample: Sample, rows: Any, request: FeatureRequest, plan: CapturePlan, hidden: int,
                  info: TargetInfo | None) -> dict[str, Any]:
        import torch

        def block(k: int) -> Any:
            return rows[:, k * hidden:(k + 1) * hidden]  # [S, H]

        f: dict[str, Any] = {
            "input_ids": torch.tensor(sample.input_ids, dtype=torch.long),  # [S]
            "loss_mask": torch.tensor(sample.loss_mask, dtype=torch.long),  # [S]
        }
        if request.layers:
            f["hidden_states"] = torch.cat([block(plan.block_of(i)) for i in request.layers], dim=-1)  # [S, k*H]
        last = block(plan.num_blocks - 1)  # [S, H], after the final norm
        if request.last_hidden:
            f["last_hidden"] = last.clone()
        if info is not None:
            f["logits"] = torch.nn.functional.linear(last, info.lm_head_weight)  # [S, V]
        return f

    def _eos_ids(self) -> set[int]:
        """End-of-sequence ids SGLang stops on by itself (config.json and generation_config.json)."""
        ids: set[int] = set()
        sources = [self._config]
        gen = self.model_dir / "generation_config.json"
        if gen.is_file():
            with contextlib.suppress(OSError, json.JSONDecodeError):
                sources.append(json.loads(gen.read_text()))
        for src in sources:
            value = src.get("eos_token_id")
            ids.update(value if isinstance(value, list) else [] if value is None else [value])
        return {int(i) for i in ids}

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 stop_ids: Iterable[int] = ()) -> list[list[int]]:
        """Greedy continuation (new tokens only), stopping after a stop id or ``max_new_tokens``.

        SGLang would also stop at the model's own EOS ids; when ``stop_ids`` do not include them
        it runs with ``ignore_eos`` and the output is cut after the first stop id here instead.
        """
        prompts = [list(p) for p in prompts]
        self._check_prompts(prompts, [f"prompt {i}" for i in range(len(prompts))])
        stops = {int(t) for t in stop_ids}
        if max_new_tokens <= 0 or not prompts:
            return [[] for _ in prompts]
        self._ensure()
        native = bool(stops) and self._eos_ids() <= stops
        params: dict[str, Any] = {"temperature": 0.0, "max_new_tokens": max_new_tokens}
        if native:
            params["stop_token_ids"] = sorted(stops)
        else:
            params["ignore_eos"] = True
        results: list[list[int]] = []
        for chunk in _batches(prompts, self.options.batch_size):
            outputs = self._backend.generate(chunk, [params] * len(chunk), rids=self._rids(len(chunk), capture=False))
            for out in outputs:
                ids = [int(t) for t in out["output_ids"]][:max_new_tokens]
                cut = next((k for k, t in enumerate(ids) if t in stops), None)
                results.append(ids if cut is None else ids[:cut + 1])
        return results

    def close(self) -> None:
        """Stop SGLang (in process) and remove the shm directory this engine made."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._backend is not None:
                self._backend.shutdown()
        finally:
            self._backend, self._plan, self._info = None, None, None
            if self._own_shm_dir is not None:
                shutil.rmtree(self._own_shm_dir, ignore_errors=True)

    def __enter__(self) -> SGLangEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.options.server_url or "in process"
        return f"SGLangEngine({str(self.model_dir)!r}, dtype={self.dtype_name}, {where})"
