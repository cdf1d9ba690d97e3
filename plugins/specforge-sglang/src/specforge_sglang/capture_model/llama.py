"""SGLang's LlamaForCausalLM with SpecForge feature capture."""

from __future__ import annotations

from sglang.srt.models import llama

from specforge_sglang.capture_model.capture_hooks import install_capture


class LlamaForCausalLM(llama.LlamaForCausalLM):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        install_capture(self)


EntryClass = LlamaForCausalLM
