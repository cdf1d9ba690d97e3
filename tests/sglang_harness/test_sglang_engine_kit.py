"""The sglang engine passes the engine conformance kit against the hf engine, on CPU, in float32.

Tolerance: atol = rtol = 1e-5 on hidden states, last hidden and logits (float64 comparison).
Measured on SGLang 0.5.23: max |diff| ~1e-6 (SGLang's batched torch_native attention sums in
another order than transformers' sdpa); many rows are bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness_settings import DEVICE, TOLERANCE

from specforge.testing.engine_kit import EngineKit


class TestSGLangEngineKit(EngineKit):
    dtype = "float32"
    atol = rtol = TOLERANCE
    max_new_tokens = 8
    reference_device = DEVICE

    def make_engine(self, model_dir: Path):
        from specforge_sglang.engine import SGLangEngine
        from specforge_sglang.options import SGLangEngineOptions

        return SGLangEngine(SGLangEngineOptions(batch_size=4), model_path=str(model_dir), dtype=self.dtype,
                            device=DEVICE)

    # One SGLang start for the whole session: the kit runs on the harness target, with the
    # session's engines instead of building (and closing) its own per kit target.
    @pytest.fixture(scope="class")
    def target_dir(self, harness_target_dir: Path) -> Path:  # type: ignore[override]
        return harness_target_dir

    @pytest.fixture(scope="class")
    def engines(self, sglang_engine, hf_engine) -> Iterator[tuple]:  # type: ignore[override]
        yield sglang_engine, hf_engine
