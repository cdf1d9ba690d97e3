"""SGLang's Qwen3ForCausalLM with SpecForge feature capture."""

from __future__ import annotations

from sglang.srt.models import qwen3

from specforge_sglang.capture_model.capture_hooks import install_capture


class Qwen3ForCausalLM(qwen3.Qwen3ForCausalLM):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        install_capture(self)


EntryClass = Qwen3ForCausalLM
