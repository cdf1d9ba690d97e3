"""Export to the speculators format vLLM serves P-EAGLE from, and load such a directory back.

``config.json`` (``speculators_model_type: "peagle"``, the draft's Llama ``transformer_layer_config``,
``draft_vocab_size``, ``mask_token_id``, vLLM capture ids, ``speculators_config``) and
``model.safetensors`` with the names ``speculators_format.expected_weights`` lists. vLLM ignores
names it does not know, so the names, shapes and dtypes are checked before anything is written.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from specforge.api import TargetInfo, UserError, unwrap
from specforge.api.export import check_weights, save_safetensors
from specforge.api.nn import rope_config_fields, rope_parameters
from specforge_peagle import speculators_format as fmt_spec
from specforge_peagle.config import PeagleConfig
from specforge_peagle.model import PeagleDraft

log = logging.getLogger(__name__)

FORMATS = ("speculators",)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
COPIED_TARGET_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")
DTYPE_NAMES = {torch.int64: "int64", torch.bool: "bool"}


def export_config(cfg: PeagleConfig, dtype: torch.dtype) -> dict[str, Any]:
    """The speculators ``config.json`` of a draft."""
    layer: dict[str, Any] = {
        "model_type": fmt_spec.LAYER_MODEL_TYPE,
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": cfg.hidden_act,
        "rms_norm_eps": cfg.rms_norm_eps,
        "max_position_embeddings": cfg.max_position_embeddings,
        "initializer_range": cfg.initializer_range,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": str(dtype).removeprefix("torch."),
        **rope_config_fields(cfg.rope),
    }
    layer.update({k: cfg.target_config[k] for k in COPIED_TARGET_KEYS if cfg.target_config.get(k) is not None})
    return {
        "architectures": [fmt_spec.ARCHITECTURE],
        "speculators_model_type": fmt_spec.SPECULATORS_MODEL_TYPE,
        "speculators_version": fmt_spec.SPECULATORS_VERSION,
        "transformer_layer_config": layer,
        "draft_vocab_size": cfg.draft_vocab_size,
        "target_hidden_size": cfg.target_hidden_size,
        "eagle_aux_hidden_state_layer_ids": fmt_spec.capture_ids(cfg.aux_layer_ids),
        "norm_before_residual": cfg.norm_before_residual,
        "norm_before_fc": False,
        "fc_norm": False,
        "norm_output": False,
        "embed_requires_grad": True,
        "mask_token_id": cfg.mask_token_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "speculators_config": {
            "algorithm": fmt_spec.SPECULATORS_MODEL_TYPE,
            "proposal_methods": [{"proposal_type": "greedy", "speculative_tokens": cfg.num_depths,
                                  "verifier_accept_k": 1, "accept_tolerance": 0.0}],
            "default_proposal_method": "greedy",
            "verifier": {"name_or_path": cfg.target_model,
                         "architectures": list(cfg.target_config.get("architectures") or [])},
        },
    }


def config_from_export(config: dict[str, Any]) -> PeagleConfig:
    """The draft shape a speculators ``config.json`` describes (UserError if it is not a P-EAGLE one)."""
    problems = fmt_spec.config_problems(config)
    if problems:
        raise UserError("not a P-EAGLE speculators export: " + "; ".join(problems))
    layer = config["transformer_layer_config"]
    spec = config["speculators_config"]
    return PeagleConfig(
        hidden_size=layer["hidden_size"],
        intermediate_size=layer["intermediate_size"],
        num_attention_heads=layer["num_attention_heads"],
        num_key_value_heads=layer["num_key_value_heads"],
        head_dim=layer["head_dim"],
        num_layers=layer["num_hidden_layers"],
        vocab_size=layer["vocab_size"],
        draft_vocab_size=config["draft_vocab_size"],
        aux_layer_ids=fmt_spec.aux_layer_ids(config["eagle_aux_hidden_state_layer_ids"]),
        mask_token_id=config["mask_token_id"],
        num_depths=spec["proposal_methods"][0]["speculative_tokens"],
        rope=rope_parameters(layer),
        rms_norm_eps=layer.get("rms_norm_eps", 1e-6),
        max_position_embeddings=layer.get("max_position_embeddings", 4096),
        hidden_act=layer.get("hidden_act", "silu"),
        initializer_range=layer.get("initializer_range", 0.02),
        norm_before_residual=bool(config.get("norm_before_residual", False)),
        target_model=spec["verifier"]["name_or_path"],
        target_config={"architectures": spec["verifier"].get("architectures") or [],
                       **{k: layer[k] for k in COPIED_TARGET_KEYS if k in layer}},
    )


def weight_problems(tensors: dict[str, tuple[tuple[int, ...], str]], config: dict[str, Any]) -> list[str]:
    """Names, shapes and dtypes of (name -> (shape, dtype name)) against what vLLM loads."""
    expected = fmt_spec.expected_weights(config)
    optional = {n: s for n, s in fmt_spec.vocab_maps(config).items() if n not in expected}
    problems = check_weights({n: s for n, (s, _) in tensors.items()}, expected, optional=optional,
                             reader="vLLM's PEagle speculator", expects="vLLM expects")
    for name, dtype in fmt_spec.WEIGHT_DTYPES.items():
        if name in tensors and tensors[name][1] != dtype:
            problems.append(f"weight {name} has dtype {tensors[name][1]}, vLLM expects {dtype}")
    return problems


def described(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype name) of in-memory tensors, as ``weight_problems`` takes them."""
    return {n: (tuple(t.shape), DTYPE_NAMES.get(t.dtype, str(t.dtype).removeprefix("torch.")))
            for n, t in tensors.items()}


def _full(t: torch.Tensor) -> torch.Tensor:
    full = getattr(t, "full_tensor", None)  # FSDP2 DTensor: gather the whole weight
    return (full() if callable(full) else t).detach().cpu().contiguous()


def export_draft(draft: Any, out_dir: Path, fmt: str) -> dict[str, Any]:
    """Write ``config.json`` and ``model.safetensors``; return architecture, weights and config."""
    if fmt not in FORMATS:
        raise UserError(f"peagle exports {', '.join(FORMATS)} (what vLLM serves), not {fmt!r}; "
                        f"use --format {FORMATS[0]}")
    model: PeagleDraft = unwrap(draft)
    state = model.state_dict()
    config = export_config(model.config, model.fc.weight.dtype)
    tensors = {name: _full(state[name]) for name in fmt_spec.expected_weights(config) if name in state}
    problems = weight_problems(described(tensors), config)
    if problems:
        raise ValueError("refusing to write an invalid P-EAGLE export:\n  - " + "\n  - ".join(problems))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_safetensors(tensors, out_dir / WEIGHTS_FILE, metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    log.info("exported P-EAGLE draft (%s) to %s", fmt, out_dir)
    return {"architecture": fmt_spec.ARCHITECTURE, "weights": {n: list(t.shape) for n, t in tensors.items()},
            "config": config}


def load_export(export_dir: Path, info: TargetInfo) -> PeagleDraft:
    """Rebuild a draft from an export (its own embedding); the teacher head comes from ``info`` if given."""
    from safetensors.torch import load_file

    export_dir = Path(export_dir)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (export_dir / name).is_file():
            raise UserError(f"{export_dir / name} not found: not a P-EAGLE export directory")
    config = json.loads((export_dir / CONFIG_FILE).read_text())
    cfg = config_from_export(config)
    if cfg.hidden_size != info.hidden_size or cfg.vocab_size != info.vocab_size:
        raise UserError(f"the export is for hidden {cfg.hidden_size} / vocab {cfg.vocab_size}, the target has "
                        f"hidden {info.hidden_size} / vocab {info.vocab_size}")
    tensors = load_file(str(export_dir / WEIGHTS_FILE))
    problems = weight_problems(described(tensors), config)
    if problems:
        raise UserError(f"{export_dir / WEIGHTS_FILE} does not match its config: " + "; ".join(problems))
    dtype = tensors["fc.weight"].dtype
    draft = PeagleDraft(cfg, None, info.lm_head_weight).to(dtype)
    result = draft.load_state_dict(tensors, strict=False)
    absent = {n for n, p in draft.named_parameters() if not p.requires_grad}  # the teacher head
    if cfg.draft_vocab_size == cfg.vocab_size:
        absent |= {"d2t", "t2d"}  # a full draft vocabulary has no maps: the draft's default is the identity
    left = [k for k in result.missing_keys if k not in absent]
    if left or result.unexpected_keys:
        raise UserError(f"export does not fit the draft: missing {left}, unexpected {result.unexpected_keys}")
    return draft
