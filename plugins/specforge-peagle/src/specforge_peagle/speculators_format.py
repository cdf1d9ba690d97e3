"""The speculators checkpoint format vLLM serves P-EAGLE from, kept as data (torch-free).

vLLM reads a speculators ``config.json`` (``speculators_model_type: "peagle"``) through its
speculators config loader: ``transformer_layer_config`` becomes the draft's HF config,
``mask_token_id`` its ``pard_token``, and the method becomes ``eagle3`` with
``parallel_drafting``; ``speculators_config.proposal_methods[0].speculative_tokens`` is the
default number of speculative tokens and ``speculators_config.verifier.name_or_path`` names the
target. The weights are what speculators' ``PEagleDraftModel`` saves (its verifier copies
excluded): ``embed_tokens``, ``fc``, ``mask_hidden``, ``layers.{i}.*`` (layer 0 reads 2·H and
has ``hidden_norm``), ``norm``, ``lm_head``, and ``d2t``/``t2d`` when the draft vocabulary is
smaller than the target's (speculators registers them only then). vLLM loads every name but ``t2d``
(skipped), maps ``d2t`` to its draft-to-target offsets and refuses a parallel-drafting
checkpoint without ``mask_hidden``; it fuses q/k/v and gate/up itself.

``eagle_aux_hidden_state_layer_ids`` are vLLM capture points, "the residual stream entering
layer i" (= output of layer i-1), so they are SpecForge's 0-based ids plus one (defaults
``[2, L//2, L-3]``, speculators' and vLLM's own).

Read from vllm-project/speculators (``src/speculators/models/{eagle3,peagle}/``) and vLLM's
``transformers_utils/configs/speculators/{algos,base}.py`` and ``models/llama_eagle3.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SPECULATORS_MODEL_TYPE = "peagle"
ARCHITECTURE = "PEagleDraftModel"  # the class speculators saves and loads
LAYER_MODEL_TYPE = "llama"  # vLLM serves it as PeagleLlamaForCausalLM
SPECULATORS_VERSION = "0.7.0"  # speculators release whose format this writes (P-EAGLE since 0.6.0)
NUM_AUX = 3  # vLLM's fc reads exactly 3 target layers

Shape = tuple[int, ...]


def capture_ids(aux_layer_ids: tuple[int, ...] | list[int]) -> list[int]:
    """SpecForge's "output of layer i" ids -> vLLM/speculators capture points (i + 1)."""
    return [int(i) + 1 for i in aux_layer_ids]


def aux_layer_ids(capture: list[int]) -> tuple[int, ...]:
    """The inverse of ``capture_ids``."""
    return tuple(int(i) - 1 for i in capture)


def _int(config: Mapping[str, Any], key: str, problems: list[str], where: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"config.json {where}{key} is {value!r}, expected an integer")
        return 0
    return value


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """What vLLM's speculators loader would refuse or misread in a P-EAGLE ``config.json``."""
    problems: list[str] = []
    if config.get("speculators_model_type") != SPECULATORS_MODEL_TYPE:
        problems.append(f"config.json speculators_model_type is {config.get('speculators_model_type')!r}, "
                        f"expected {SPECULATORS_MODEL_TYPE!r}")
    layer = config.get("transformer_layer_config")
    if not isinstance(layer, Mapping):
        problems.append("config.json lacks the transformer_layer_config object")
        layer = {}
    elif layer.get("model_type") != LAYER_MODEL_TYPE:
        problems.append(f"transformer_layer_config.model_type is {layer.get('model_type')!r}, expected "
                        f"{LAYER_MODEL_TYPE!r} (vLLM's PeagleLlamaForCausalLM)")
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                "num_hidden_layers", "vocab_size"):
        _int(layer, key, problems, "transformer_layer_config.")
    _int(config, "draft_vocab_size", problems, "")
    _int(config, "mask_token_id", problems, "")  # vLLM: required (it becomes pard_token)
    ids = config.get("eagle_aux_hidden_state_layer_ids")
    if not isinstance(ids, list) or len(ids) != NUM_AUX:
        problems.append(f"config.json eagle_aux_hidden_state_layer_ids is {ids!r}, expected {NUM_AUX} capture ids")
    for flag in ("norm_before_fc", "fc_norm", "norm_output"):
        if config.get(flag):
            problems.append(f"config.json {flag} is set, but this draft has no such norm")
    spec = config.get("speculators_config") or {}
    methods = spec.get("proposal_methods") or [{}]
    if not isinstance(methods[0].get("speculative_tokens"), int):
        problems.append("config.json lacks speculators_config.proposal_methods[0].speculative_tokens")
    if spec.get("algorithm") != SPECULATORS_MODEL_TYPE:
        problems.append(f"speculators_config.algorithm is {spec.get('algorithm')!r}, expected "
                        f"{SPECULATORS_MODEL_TYPE!r}")
    if not (spec.get("verifier") or {}).get("name_or_path"):
        problems.append("config.json lacks speculators_config.verifier.name_or_path (the target)")
    return problems


def expected_weights(config: Mapping[str, Any]) -> dict[str, Shape]:
    """Every tensor name of a P-EAGLE speculators checkpoint and its shape, from its config.json."""
    layer = config["transformer_layer_config"]
    h, inter = layer["hidden_size"], layer["intermediate_size"]
    heads, kv, hd = layer["num_attention_heads"], layer["num_key_value_heads"], layer["head_dim"]
    vocab, draft_vocab = layer["vocab_size"], config["draft_vocab_size"]
    target_h = config.get("target_hidden_size") or h
    feature = NUM_AUX * target_h
    weights: dict[str, Shape] = {
        "embed_tokens.weight": (vocab, h),
        "fc.weight": (h, feature),
        "mask_hidden": (1, 1, feature),
        "norm.weight": (h,),
        "lm_head.weight": (draft_vocab, h),
    }
    if draft_vocab != vocab:  # speculators keeps the maps only for a reduced draft vocabulary
        weights.update(vocab_maps(config))
    for i in range(layer["num_hidden_layers"]):
        p = f"layers.{i}."
        reads = 2 * h if i == 0 else h
        weights.update({
            p + "input_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (heads * hd, reads),
            p + "self_attn.k_proj.weight": (kv * hd, reads),
            p + "self_attn.v_proj.weight": (kv * hd, reads),
            p + "self_attn.o_proj.weight": (h, heads * hd),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (inter, h),
            p + "mlp.up_proj.weight": (inter, h),
            p + "mlp.down_proj.weight": (h, inter),
        })
        if i == 0:
            weights[p + "hidden_norm.weight"] = (h,)
    return weights


def vocab_maps(config: Mapping[str, Any]) -> dict[str, Shape]:
    """``d2t``/``t2d``: required for a reduced draft vocabulary, harmless (identity) for a full one."""
    return {"d2t": (config["draft_vocab_size"],), "t2d": (config["transformer_layer_config"]["vocab_size"],)}


WEIGHT_DTYPES = {"d2t": "int64", "t2d": "bool"}
