"""Feature capture inside SGLang's target model, installed on an instance of SGLang's own class.

Three pieces, none of which rewrites SGLang's layer code:

* intermediate layers: the model's existing ``layers_to_capture`` list (SGLang index j captures
  the *input* of decoder layer j, so layer id i -> j = i + 1, as its EAGLE3 capture does);
* the last layer's output (pre-norm residual stream): a forward hook on the final norm, which
  SGLang calls as ``norm(hidden, residual) -> (normed, hidden + residual)``;
* the logits processor is wrapped: it receives the post-norm hidden states (the lm_head input)
  and the captured layers, builds per-token rows [captured layers..., final], writes the rows
  of capture requests (``rid`` starting with ``RID_PREFIX``) as raw bytes into ``shm_dir``,
  and hands the rows to SGLang as aux hidden states so ``return_hidden_states`` returns them.

Upgrade risk: every name above is an SGLang internal (verified on 0.5.23); the harness tests
(tests/sglang_harness) compare the captured features with the hf engine layer by layer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from specforge_sglang.capture_plan import PLAN_ENV, RID_PREFIX, CapturePlan, error_path, rows_path


def _tp_rank() -> int:
    try:
        from sglang.srt.distributed.parallel_state import get_tensor_model_parallel_rank

        return int(get_tensor_model_parallel_rank())
    except (ImportError, AssertionError, AttributeError):
        return 0


def _write_atomically(path: Path, data: bytes | torch.Tensor) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        if isinstance(data, torch.Tensor):
            data.detach().contiguous().cpu().view(torch.uint8).numpy().tofile(f)
        else:
            f.write(data)
    os.replace(tmp, path)


class CapturingLogitsProcessor(nn.Module):
    """Wraps SGLang's logits processor (which has no weights, so weight names are unchanged)."""

    def __init__(self, inner: nn.Module, plan: CapturePlan, num_layers: int) -> None:
        super().__init__()
        self.inner = inner
        self.plan = plan
        self.num_layers = num_layers
        self.input_layers = sorted(i + 1 for i in plan.layers if i + 1 < num_layers)  # SGLang's capture ids
        self.prenorm: torch.Tensor | None = None  # [T, H], the last layer's output, set by the norm hook
        self.writes = _tp_rank() == 0  # TP ranks hold identical rows: one writer

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)

    def record_prenorm(self, _module: nn.Module, args: tuple, output: Any) -> None:
        self.prenorm = output[1] if isinstance(output, tuple) else args[0]

    def _blocks(self, hidden_states: torch.Tensor, aux: Any) -> list[torch.Tensor]:
        """The plan's blocks, each [T, H]: captured layers in plan order, then the post-norm state."""
        hidden = hidden_states.shape[-1]
        if isinstance(aux, torch.Tensor):  # packed [T, K*H]
            aux = list(aux.split(hidden, dim=-1))
        aux = list(aux or [])
        if len(aux) != len(self.input_layers):
            raise RuntimeError(f"SGLang captured {len(aux)} layers, SpecForge asked for {len(self.input_layers)}; "
                               f"this SGLang release's capture hooks differ from the tested one")
        by_layer = dict(zip(self.input_layers, aux))
        blocks = []
        for layer in self.plan.layers:
            if layer + 1 < self.num_layers:
                blocks.append(by_layer[layer + 1])
            else:
                if self.prenorm is None or self.prenorm.shape != hidden_states.shape:
                    raise RuntimeError("the final-norm hook did not see the last layer's output; this SGLang "
                                       "release's final norm differs from the tested one")
                blocks.append(self.prenorm)
        blocks.append(hidden_states)
        return blocks

    def _write_rows(self, forward_batch: Any, rows: torch.Tensor) -> None:
        shm_dir = self.plan.shm_dir
        rids = list(forward_batch.rids or [])
        lengths = list(forward_batch.extend_seq_lens_cpu or [])
        prefixes = list(forward_batch.extend_prefix_lens_cpu or [0] * len(rids))
        if len(lengths) != len(rids) or sum(lengths) != rows.shape[0]:
            for rid in rids:
                if rid.startswith(RID_PREFIX):
                    _write_atomically(error_path(shm_dir, rid), (
                        f"batch layout not understood: {len(rids)} requests, extend lengths {lengths}, "
                        f"{rows.shape[0]} rows").encode())
            return
        start = 0
        for rid, n, prefix in zip(rids, lengths, prefixes):
            if rid.startswith(RID_PREFIX):
                if prefix:
                    _write_atomically(error_path(shm_dir, rid), (
                        f"{prefix} prompt tokens came from SGLang's prefix cache or an earlier prefill chunk, "
                        f"so their features were not computed; run SGLang with --disable-radix-cache and "
                        f"--chunked-prefill-size -1").encode())
                else:
                    _write_atomically(rows_path(shm_dir, rid), rows[start:start + n])  # [S, W]
            start += n

    def forward(self, input_ids: Any, hidden_states: torch.Tensor, lm_head: Any, logits_metadata: Any,
                aux_hidden_states: Any = None, *args: Any, **kwargs: Any) -> Any:
        mode = getattr(logits_metadata, "capture_hidden_mode", None)
        wants_json = mode is not None and mode.need_capture()
        forward_mode = getattr(logits_metadata, "forward_mode", None)
        wants_rows = bool(
            self.writes and self.plan.shm_dir and forward_mode is not None and forward_mode.is_extend()
            and any(r.startswith(RID_PREFIX) for r in (getattr(logits_metadata, "rids", None) or ()))
        )
        blocks = None
        if wants_json or wants_rows:
            blocks = self._blocks(hidden_states, aux_hidden_states)
            if wants_rows:
                self._write_rows(logits_metadata, torch.cat(blocks, dim=-1))  # [T, W]
        self.prenorm = None
        return self.inner(input_ids, hidden_states, lm_head, logits_metadata,
                          blocks if wants_json else None, *args, **kwargs)


def install_capture(model: nn.Module) -> None:
    """Turn on capture per the plan in ``SPECFORGE_SGLANG_CAPTURE_PLAN``; without one, change nothing."""
    plan = CapturePlan.from_env(os.environ.get(PLAN_ENV))
    if plan is None:
        return
    num_layers = int(model.config.num_hidden_layers)
    bad = [i for i in plan.layers if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"capture layers {bad} are out of range for a {num_layers}-layer target "
                         f"(valid: 0..{num_layers - 1})")
    if model.pp_group.world_size != 1:
        raise ValueError("SpecForge feature capture needs pipeline parallel size 1 (pp_size=1)")
    wrapper = CapturingLogitsProcessor(model.logits_processor, plan, num_layers)
    if wrapper.input_layers:
        model.model.layers_to_capture = list(wrapper.input_layers)
        model.capture_aux_hidden_states = True
    if num_layers - 1 in plan.layers:
        model.model.norm.register_forward_hook(wrapper.record_prenorm)
    model.logits_processor = wrapper
