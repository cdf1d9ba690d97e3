"""The capture class's row layout and both transports, exercised without SGLang.

``CapturingLogitsProcessor`` is what runs inside SGLang's scheduler; here it gets hand-made
batches shaped like SGLang's (rids, extend lengths, capture modes) and a stand-in for SGLang's
logits processor, and its output is read back the way the engine reads it.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from specforge_sglang.capture_model.capture_hooks import CapturingLogitsProcessor, install_capture
from specforge_sglang.capture_plan import PLAN_ENV, RID_PREFIX, CapturePlan, error_path, rows_path
from specforge_sglang.transport import CaptureTransportError, read_rows, rows_from_json

H = 4
NUM_LAYERS = 4


class Mode:
    def __init__(self, capture: bool = False, extend: bool = True) -> None:
        self.capture, self.extend = capture, extend

    def need_capture(self) -> bool:
        return self.capture

    def is_extend(self) -> bool:
        return self.extend


class RecordingInner(nn.Module):
    """Stands for SGLang's logits processor: remembers the aux hidden states it was handed."""

    def forward(self, input_ids, hidden_states, lm_head, metadata, aux=None):
        self.aux = aux
        return "logits"


def batch(rids: list[str], lengths: list[int], *, json_mode: bool = False, prefixes=None) -> SimpleNamespace:
    return SimpleNamespace(rids=rids, extend_seq_lens_cpu=lengths, extend_prefix_lens_cpu=prefixes or [0] * len(rids),
                           capture_hidden_mode=Mode(capture=json_mode), forward_mode=Mode(extend=True))


def states(tokens: int, inputs: list[int]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Marker 10*j (+ token index) for the input of layer j, 40 for the pre-norm output, 50 post-norm."""
    aux = [torch.full((tokens, H), 10.0 * j) + torch.arange(tokens)[:, None] for j in inputs]
    prenorm = torch.full((tokens, H), 40.0) + torch.arange(tokens)[:, None]
    final = torch.full((tokens, H), 50.0) + torch.arange(tokens)[:, None]
    return aux, prenorm, final


def processor(plan: CapturePlan) -> tuple[CapturingLogitsProcessor, RecordingInner]:
    inner = RecordingInner()
    return CapturingLogitsProcessor(inner, plan, NUM_LAYERS), inner


def run(proc: CapturingLogitsProcessor, meta: SimpleNamespace, tokens: int) -> None:
    aux, prenorm, final = states(tokens, proc.input_layers)
    proc.record_prenorm(None, (None,), (final, prenorm))  # SGLang's final norm returns (normed, residual)
    assert proc(None, final, None, meta, aux) == "logits"


def test_layer_i_is_captured_as_the_input_of_layer_i_plus_1_and_the_last_from_the_norm(tmp_path: Path) -> None:
    proc, _ = processor(CapturePlan(layers=(2, 0, 3), shm_dir=str(tmp_path)))
    assert proc.input_layers == [1, 3]  # layer 3 (the last) has no next layer: the norm hook provides it
    run(proc, batch([f"{RID_PREFIX}a"], [3]), tokens=3)
    rows = read_rows(tmp_path, f"{RID_PREFIX}a", num_tokens=3, width=4 * H, dtype=torch.float32)
    blocks = rows.view(3, 4, H)[:, :, 0] - torch.arange(3)[:, None]  # per token: the block markers
    assert blocks.tolist() == [[10.0, 30.0, 40.0, 50.0]] * 3  # layers 0, 2, 3, then post-norm


def test_rows_of_a_batch_are_split_per_capture_request_and_others_are_skipped(tmp_path: Path) -> None:
    proc, _ = processor(CapturePlan(layers=(0,), shm_dir=str(tmp_path)))
    proc.input_layers = [1]
    aux = [torch.arange(6.0)[:, None].expand(6, H)]
    final = -torch.arange(6.0)[:, None].expand(6, H)
    proc(None, final, None, batch([f"{RID_PREFIX}x", "user-request", f"{RID_PREFIX}y"], [2, 1, 3]), aux)
    x = read_rows(tmp_path, f"{RID_PREFIX}x", num_tokens=2, width=2 * H, dtype=torch.float32)
    y = read_rows(tmp_path, f"{RID_PREFIX}y", num_tokens=3, width=2 * H, dtype=torch.float32)
    assert x[:, 0].tolist() == [0.0, 1.0] and y[:, 0].tolist() == [3.0, 4.0, 5.0]
    assert y[:, H].tolist() == [-3.0, -4.0, -5.0]
    assert not rows_path(tmp_path, "user-request").exists()
    assert list(tmp_path.iterdir()) == []  # read_rows removes what it read


def test_a_prefix_cache_hit_is_reported_instead_of_partial_rows(tmp_path: Path) -> None:
    proc, _ = processor(CapturePlan(layers=(0,), shm_dir=str(tmp_path)))
    proc(None, torch.zeros(2, H), None, batch([f"{RID_PREFIX}p"], [2], prefixes=[5]), [torch.zeros(2, H)])
    assert error_path(tmp_path, f"{RID_PREFIX}p").exists()
    with pytest.raises(CaptureTransportError, match="--disable-radix-cache"):
        read_rows(tmp_path, f"{RID_PREFIX}p", num_tokens=7, width=2 * H, dtype=torch.float32)


def test_json_mode_hands_the_rows_to_sglang_as_aux_hidden_states(tmp_path: Path) -> None:
    proc, inner = processor(CapturePlan(layers=(0, 3)))
    run(proc, batch(["r"], [2], json_mode=True), tokens=2)
    assert [b[0, 0].item() for b in inner.aux] == [10.0, 40.0, 50.0]
    run(proc, batch(["r"], [2], json_mode=False), tokens=2)
    assert inner.aux is None  # nothing requested: SGLang's own path, untouched


def test_json_rows_become_one_tensor_and_a_wrong_width_names_the_capture_class() -> None:
    rows = rows_from_json([[[1.0, 2.0], [3.0, 4.0]]], rid="r", num_tokens=2, width=2, dtype=torch.bfloat16)
    assert rows.dtype == torch.bfloat16 and rows.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(CaptureTransportError, match="capture class"):
        rows_from_json([[[1.0], [3.0]]], rid="r", num_tokens=2, width=2, dtype=torch.float32)
    with pytest.raises(CaptureTransportError, match="chunked"):
        rows_from_json([[[1.0, 2.0]]], rid="r", num_tokens=2, width=2, dtype=torch.float32)


def test_a_missing_feature_file_says_sglang_did_not_load_the_capture_class(tmp_path: Path) -> None:
    with pytest.raises(CaptureTransportError, match="Ignore import error"):
        read_rows(tmp_path, f"{RID_PREFIX}none", num_tokens=1, width=H, dtype=torch.float32)


def test_bfloat16_rows_round_trip_bit_exactly(tmp_path: Path) -> None:
    proc, _ = processor(CapturePlan(layers=(), shm_dir=str(tmp_path)))
    final = torch.randn(5, H, generator=torch.Generator().manual_seed(0)).bfloat16()
    proc(None, final, None, batch([f"{RID_PREFIX}b"], [5]), None)
    got = read_rows(tmp_path, f"{RID_PREFIX}b", num_tokens=5, width=H, dtype=torch.bfloat16)
    assert torch.equal(got, final)


def test_install_capture_sets_sglangs_capture_list_and_leaves_models_without_a_plan_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def model() -> nn.Module:
        m = nn.Module()
        m.config = SimpleNamespace(num_hidden_layers=NUM_LAYERS)
        m.pp_group = SimpleNamespace(world_size=1)
        m.model = nn.Module()
        m.model.norm = nn.Identity()
        m.model.layers_to_capture = []
        m.capture_aux_hidden_states = False
        m.logits_processor = RecordingInner()
        return m

    monkeypatch.delenv(PLAN_ENV, raising=False)
    plain = model()
    install_capture(plain)
    assert isinstance(plain.logits_processor, RecordingInner) and not plain.capture_aux_hidden_states

    monkeypatch.setenv(PLAN_ENV, CapturePlan(layers=(3, 1)).to_env())
    wrapped = model()
    install_capture(wrapped)
    assert wrapped.model.layers_to_capture == [2] and wrapped.capture_aux_hidden_states
    assert isinstance(wrapped.logits_processor, CapturingLogitsProcessor)
    assert len(wrapped.model.norm._forward_hooks) == 1  # the last layer comes from the final norm

    monkeypatch.setenv(PLAN_ENV, CapturePlan(layers=(4,)).to_env())
    with pytest.raises(ValueError, match=r"0\.\.3"):
        install_capture(model())


def test_a_plan_survives_the_environment_round_trip() -> None:
    plan = CapturePlan(layers=(5, 1, 5), shm_dir="/dev/shm/x")
    assert plan.layers == (1, 5) and plan.num_blocks == 3 and plan.block_of(5) == 1
    assert CapturePlan.from_env(plan.to_env()) == plan
    assert CapturePlan.from_env("") is None
    assert plan.widened((0,)).layers == (0, 1, 5)
