"""The hf engine passes the engine conformance kit against itself (Qwen3, Llama, tied Qwen2)."""

from __future__ import annotations

from pathlib import Path

from specforge.engines.hf import HFEngine, HFEngineOptions
from specforge.testing.engine_kit import EngineKit


class TestHFEngineConformance(EngineKit):
    def make_engine(self, model_dir: Path) -> HFEngine:
        # A different batch size than the kit's reference, so batching is exercised too.
        return HFEngine(HFEngineOptions(batch_size=3), model_path=str(model_dir), dtype=self.dtype,
                        device="cpu")
