"""SGLang's Qwen2ForCausalLM with SpecForge feature capture."""

from __future__ import annotations

from sglang.srt.models import qwen2

from specforge_sglang.capture_model.capture_hooks import install_capture


class Qwen2ForCausalLM(qwen2.Qwen2ForCausalLM):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        install_capture(self)


EntryClass = Qwen2ForCausalLM
