"""The weights SGLang 0.5.23's draft classes load, by name and shape, derived from an export's config.json.

Kept here as data so the export check works without SGLang; ``tests/sglang_harness`` builds
exports from these lists and checks them against SGLang's own classes (``sglang_probe``):
every listed name is loaded, every SGLang parameter is covered, nothing else is read.

Classes: ``LlamaForCausalLMEagle3`` (``sglang/srt/models/llama_eagle3.py``) and
``DFlashDraftModel`` (``sglang/srt/models/dflash.py``, also Domino via
``dflash_config.projector_type = "domino"``). Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EAGLE3_ARCHITECTURE = "LlamaForCausalLMEagle3"
DFLASH_ARCHITECTURE = "DFlashDraftModel"

Shape = tuple[int, ...]


@dataclass(frozen=True)
class DraftWeights:
    """What an export must hold for SGLang: ``required`` names, ``optional`` ones SGLang also
    reads, ``accepted_unused`` ones it deliberately skips, expected dtypes, and config problems."""

    architecture: str
    required: dict[str, Shape] = field(default_factory=dict)
    optional: dict[str, Shape] = field(default_factory=dict)
    accepted_unused: dict[str, Shape] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)  # name -> "int64" | "bool" where it matters
    config_problems: tuple[str, ...] = ()

    @property
    def loaded(self) -> dict[str, Shape]:
        """Names SGLang's loader reads into the model."""
        return {**self.required, **self.optional}

    def allowed(self) -> dict[str, Shape]:
        return {**self.required, **self.optional, **self.accepted_unused}


def _int(config: Mapping[str, Any], key: str, problems: list[str], default: int | None = None) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"config.json {key} is {value!r}, expected an integer")
        return 0
    return value


def _attention(prefix: str, h_in: int, h: int, heads: int, kv: int, hd: int) -> dict[str, Shape]:
    return {
        f"{prefix}self_attn.q_proj.weight": (heads * hd, h_in),
        f"{prefix}self_attn.k_proj.weight": (kv * hd, h_in),
        f"{prefix}self_attn.v_proj.weight": (kv * hd, h_in),
        f"{prefix}self_attn.o_proj.weight": (h, heads * hd),
    }


def _mlp(prefix: str, h: int, inter: int) -> dict[str, Shape]:
    return {
        f"{prefix}mlp.gate_proj.weight": (inter, h),
        f"{prefix}mlp.up_proj.weight": (inter, h),
        f"{prefix}mlp.down_proj.weight": (h, inter),
    }


def eagle3_weights(config: Mapping[str, Any]) -> DraftWeights:
    """``LlamaForCausalLMEagle3``: one ``midlayer`` whose attention reads [embedding; hidden] (2·H)."""
    problems: list[str] = []
    h = _int(config, "hidden_size", problems)
    heads = _int(config, "num_attention_heads", problems)
    kv = _int(config, "num_key_value_heads", problems, default=heads)
    hd = _int(config, "head_dim", problems, default=h // heads if heads else 0)
    inter_key = "intermediate_size_mlp" if config.get("model_type") == "llama4_text" else "intermediate_size"
    inter = _int(config, inter_key, problems)
    vocab = _int(config, "vocab_size", problems)
    target_h = _int(config, "target_hidden_size", problems, default=h)
    eagle = config.get("eagle_config") or {}
    num_aux = config.get("num_aux_hidden_states") or len(eagle.get("eagle_aux_hidden_state_layer_ids") or ()) or 3
    layers = config.get("num_hidden_layers", 1)
    if layers != 1:
        problems.append(f"num_hidden_layers is {layers}: specforge-sglang checks 1-layer EAGLE3 drafts only")
    tied = bool(config.get("tie_word_embeddings", False))
    draft_vocab = config.get("draft_vocab_size")
    if draft_vocab is None and not tied:
        problems.append("config.json lacks draft_vocab_size: SGLang would replace the draft's lm_head with "
                        "the target's")
    draft_vocab = int(draft_vocab or vocab)

    required = {
        "midlayer.input_layernorm.weight": (h,),
        "midlayer.hidden_norm.weight": (h,),
        "midlayer.post_attention_layernorm.weight": (h,),
        **_attention("midlayer.", 2 * h, h, heads, kv, hd),
        **_mlp("midlayer.", h, inter),
        "fc.weight": (h, num_aux * target_h),
        "norm.weight": (h,),
    }
    if config.get("bias", False):  # SGLang then also builds the midlayer's o_proj with a bias
        required.update({"fc.bias": (h,), "midlayer.self_attn.o_proj.bias": (h,)})
    if config.get("fc_norm") or config.get("use_aux_norm"):
        required.update({f"fc_norm.{k}.weight": (target_h,) for k in range(num_aux)})
    if eagle.get("norm_before_fc", config.get("norm_before_fc", False)):
        required["input_norm.weight"] = (num_aux * target_h,)
    optional: dict[str, Shape] = {"embed_tokens.weight": (vocab, h)}  # absent: SGLang uses the target's
    if not tied:
        required["lm_head.weight"] = (draft_vocab, h)
    d2t = {"d2t": (draft_vocab,)}
    if draft_vocab != vocab:
        required.update(d2t)  # without it SGLang would read draft ids as target ids
    else:
        optional.update(d2t)
    return DraftWeights(
        architecture=EAGLE3_ARCHITECTURE, required=required, optional=optional,
        accepted_unused={"t2d": (vocab,)}, dtypes={"d2t": "int64", "t2d": "bool"},
        config_problems=tuple(problems),
    )


DFLASH_UNCHECKED_FIELDS = ("conv_kernel_size", "selector_rank", "attention_sink_bias", "attention_value_scale")
"""DFlash variants whose extra weights this list does not describe."""


def dflash_weights(config: Mapping[str, Any]) -> DraftWeights:
    """``DFlashDraftModel``: Qwen3-style layers with q/k norms, ``fc`` over K target layers, no embedding/lm_head."""
    problems: list[str] = []
    nested = config.get("dflash_config") or {}
    h = _int(config, "hidden_size", problems)
    heads = _int(config, "num_attention_heads", problems)
    kv = _int(config, "num_key_value_heads", problems, default=heads)
    hd = _int(config, "head_dim", problems, default=h // heads if heads else 0)
    inter = _int(config, "intermediate_size", problems)
    vocab = _int(config, "vocab_size", problems)
    layers = _int(config, "num_hidden_layers", problems)
    ids = nested.get("target_layer_ids", config.get("target_layer_ids"))
    if not ids:
        problems.append("config.json lacks dflash_config.target_layer_ids (SGLang would guess the target layers)")
    target_layers = nested.get("num_target_layers", config.get("num_target_layers"))
    if ids and isinstance(target_layers, int) and max(ids) >= target_layers:
        problems.append(f"dflash_config.target_layer_ids {list(ids)} reach beyond num_target_layers {target_layers}")
    mask = nested.get("mask_token_id", config.get("mask_token_id"))
    if isinstance(mask, bool) or not isinstance(mask, int) or mask < 0:
        problems.append(f"dflash_config.mask_token_id is {mask!r}, expected a non-negative integer")
    for key in DFLASH_UNCHECKED_FIELDS:
        if nested.get(key):
            problems.append(f"dflash_config.{key} is set: specforge-sglang does not check that DFlash variant")
    if config.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act is {config.get('hidden_act')!r}; SGLang's DFlash draft supports silu only")

    required: dict[str, Shape] = {
        "norm.weight": (h,),
        "hidden_norm.weight": (h,),
        "fc.weight": (h, len(ids or ()) * h),
    }
    bias = bool(config.get("attention_bias", False))
    for i in range(layers):
        p = f"layers.{i}."
        required.update({
            f"{p}input_layernorm.weight": (h,),
            f"{p}post_attention_layernorm.weight": (h,),
            **_attention(p, h, h, heads, kv, hd),
            f"{p}self_attn.q_norm.weight": (hd,),
            f"{p}self_attn.k_norm.weight": (hd,),
            **_mlp(p, h, inter),
        })
        if bias:
            required.update({f"{p}self_attn.q_proj.bias": (heads * hd,), f"{p}self_attn.k_proj.bias": (kv * hd,),
                             f"{p}self_attn.v_proj.bias": (kv * hd,), f"{p}self_attn.o_proj.bias": (h,)})
    if nested.get("projector_type", config.get("projector_type")) == "domino":
        gru = _int(nested, "gru_hidden_dim", problems)
        emb = _int(nested, "emb_dim", problems, default=config.get("emb_dim"))
        if not isinstance(nested.get("shift_label"), bool):
            problems.append(f"dflash_config.shift_label is {nested.get('shift_label')!r}; SGLang needs a bool")
        if nested.get("pure_draft_prefix_len") != 1:
            problems.append(f"dflash_config.pure_draft_prefix_len is {nested.get('pure_draft_prefix_len')!r}; "
                            f"SGLang 0.5.23 serves Domino drafts with 1 only")
        required.update({
            "prefix_gru.weight_ih_l0": (3 * gru, h),
            "prefix_gru.weight_hh_l0": (3 * gru, gru),
            "embed_proj.0.weight": (emb, h + gru),
            "embed_proj.2.weight": (vocab, emb),
        })
    return DraftWeights(architecture=DFLASH_ARCHITECTURE, required=required, config_problems=tuple(problems))


EXPECTED_BY_ARCHITECTURE = {EAGLE3_ARCHITECTURE: eagle3_weights, DFLASH_ARCHITECTURE: dflash_weights}

ARCHITECTURE_OF_STRATEGY = {"eagle3": EAGLE3_ARCHITECTURE, "dflash": DFLASH_ARCHITECTURE,
                            "domino": DFLASH_ARCHITECTURE}
"""First-party strategies and the SGLang draft class their ``--format sglang`` export must target."""
