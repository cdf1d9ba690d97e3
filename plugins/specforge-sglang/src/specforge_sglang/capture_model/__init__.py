"""SGLang external model package: target classes that capture features for SpecForge. Imported by SGLang only.

SGLang (``SGLANG_EXTERNAL_MODEL_PACKAGE=specforge_sglang.capture_model``) imports every
submodule here and registers each ``EntryClass`` under its class name, replacing its built-in
class of that name. The classes subclass SGLang's own ``Qwen2ForCausalLM``,
``Qwen3ForCausalLM`` and ``LlamaForCausalLM``; no layer code is rewritten. This ``__init__``
defines no ``EntryClass`` on purpose (SGLang only reads submodules) and imports nothing.
"""
