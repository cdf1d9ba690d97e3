"""Export to the ``LlamaForCausalLMEagle3`` layout SGLang serves, and load such a directory back.

``config.json`` + ``model.safetensors`` with ``midlayer.*``, ``fc.weight``, ``norm.weight``,
``lm_head.weight``, ``d2t``, ``t2d`` (and EAGLE3.1's ``fc_norm.{0,1,2}.weight``; ``config.json``
carries ``fc_norm`` and ``norm_output``). Format ``sglang`` has no embedding (SGLang takes the
target's); format ``hf`` adds ``embed_tokens.weight`` (the target's, frozen), so the directory
is self-contained for warm starts and other loaders. SGLang ignores unknown keys silently, so
the names and shapes are checked here before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from specforge.api import TargetInfo, UserError
from specforge.api.export import check_weights as check_shapes
from specforge.api.export import save_safetensors
from specforge.api.nn import rope_config_fields, rope_parameters
from specforge_eagle3.model import Eagle3Config, Eagle3Draft

log = logging.getLogger(__name__)

ARCHITECTURE = "LlamaForCausalLMEagle3"
FORMATS = ("sglang", "hf")
EMBEDDING = "embed_tokens.weight"  # only in the hf format
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
COPIED_TARGET_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")


def expected_weights(cfg: Eagle3Config) -> dict[str, tuple[int, ...]]:
    """Every exported tensor name and its shape."""
    h, i, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    fc_norms = {f"fc_norm.{j}.weight": (cfg.target_hidden_size,)
                for j in range(len(cfg.aux_layer_ids))} if cfg.fc_norm else {}
    return {
        **fc_norms,
        "midlayer.input_layernorm.weight": (h,),
        "midlayer.hidden_norm.weight": (h,),
        "midlayer.self_attn.q_proj.weight": (q, 2 * h),
        "midlayer.self_attn.k_proj.weight": (kv, 2 * h),
        "midlayer.self_attn.v_proj.weight": (kv, 2 * h),
        "midlayer.self_attn.o_proj.weight": (h, q),
        "midlayer.post_attention_layernorm.weight": (h,),
        "midlayer.mlp.gate_proj.weight": (i, h),
        "midlayer.mlp.up_proj.weight": (i, h),
        "midlayer.mlp.down_proj.weight": (h, i),
        "fc.weight": (h, len(cfg.aux_layer_ids) * cfg.target_hidden_size),
        "norm.weight": (h,),
        "lm_head.weight": (cfg.draft_vocab_size, h),
        "d2t": (cfg.draft_vocab_size,),
        "t2d": (cfg.vocab_size,),
    }


def check_weights(tensors: dict[str, torch.Tensor], cfg: Eagle3Config, *, with_embedding: bool = False) -> list[str]:
    """Problems with the tensors about to be exported (empty when they are what SGLang loads)."""
    expected = expected_weights(cfg)
    if with_embedding:
        expected[EMBEDDING] = (cfg.vocab_size, cfg.hidden_size)
    problems = check_shapes({n: tuple(t.shape) for n, t in tensors.items()}, expected)
    if "d2t" in tensors and tensors["d2t"].dtype != torch.int64:
        problems.append(f"d2t has dtype {tensors['d2t'].dtype}, expected int64")
    if "t2d" in tensors and tensors["t2d"].dtype != torch.bool:
        problems.append(f"t2d has dtype {tensors['t2d'].dtype}, expected bool")
    if "d2t" in tensors and "t2d" in tensors and not problems:
        d2t, t2d = tensors["d2t"], tensors["t2d"]
        if not torch.equal(torch.nonzero(t2d).flatten(), d2t + torch.arange(d2t.numel())):
            problems.append("d2t and t2d disagree: nonzero(t2d) != d2t + arange(draft_vocab_size)")
    return problems


def export_config(cfg: Eagle3Config, dtype: torch.dtype) -> dict[str, Any]:
    config: dict[str, Any] = {
        "architectures": [ARCHITECTURE],
        "model_type": "llama",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "num_hidden_layers": 1,
        "vocab_size": cfg.vocab_size,
        "draft_vocab_size": cfg.draft_vocab_size,
        "target_hidden_size": cfg.target_hidden_size,
        "hidden_act": cfg.hidden_act,
        "rms_norm_eps": cfg.rms_norm_eps,
        "max_position_embeddings": cfg.max_position_embeddings,
        "initializer_range": cfg.initializer_range,
        "tie_word_embeddings": False,
        "fc_norm": cfg.fc_norm,
        "norm_output": cfg.norm_output,
        "torch_dtype": str(dtype).removeprefix("torch."),
        **rope_config_fields(cfg.rope),
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": list(cfg.aux_layer_ids),
                         "use_aux_hidden_state": True},
    }
    config.update({k: cfg.target_config[k] for k in COPIED_TARGET_KEYS if cfg.target_config.get(k) is not None})
    return config


def config_from_export(config: dict[str, Any]) -> Eagle3Config:
    """The draft shape an exported ``config.json`` describes."""
    if ARCHITECTURE not in (config.get("architectures") or []):
        raise ValueError(f"config.json architectures {config.get('architectures')} lack {ARCHITECTURE}: "
                         f"not an EAGLE3 export")
    if config.get("num_hidden_layers", 1) != 1:
        raise ValueError(f"EAGLE3 drafts have 1 layer; config.json says {config['num_hidden_layers']}")
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    ids = (config.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids")
    if not ids:
        raise ValueError("config.json lacks eagle_config.eagle_aux_hidden_state_layer_ids")
    return Eagle3Config(
        hidden_size=hidden,
        intermediate_size=config["intermediate_size"],
        num_attention_heads=heads,
        num_key_value_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or hidden // heads,
        vocab_size=config["vocab_size"],
        draft_vocab_size=config.get("draft_vocab_size") or config["vocab_size"],
        target_hidden_size=config.get("target_hidden_size") or hidden,
        aux_layer_ids=tuple(ids),
        rope=rope_parameters(config),
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        max_position_embeddings=config.get("max_position_embeddings", 4096),
        hidden_act=config.get("hidden_act", "silu"),
        initializer_range=config.get("initializer_range", 0.02),
        fc_norm=bool(config.get("fc_norm", False)),
        norm_output=bool(config.get("norm_output", True)),
        target_config={k: config[k] for k in COPIED_TARGET_KEYS if k in config},
    )


def export_draft(draft: Eagle3Draft, out_dir: Path, fmt: str) -> dict[str, Any]:
    """Write ``config.json`` and ``model.safetensors``; return architecture, weights and config."""
    if fmt not in FORMATS:
        raise UserError(f"eagle3 exports to {', '.join(FORMATS)}, not {fmt!r}; use --format sglang")
    cfg = draft.config
    state = draft.state_dict()
    names = list(expected_weights(cfg)) + ([EMBEDDING] if fmt == "hf" else [])
    tensors = {name: state[name].detach().cpu().contiguous() for name in names if name in state}
    if EMBEDDING in tensors:
        tensors[EMBEDDING] = tensors[EMBEDDING].to(draft.fc.weight.dtype)
    problems = check_weights(tensors, cfg, with_embedding=fmt == "hf")
    if problems:
        raise ValueError("the EAGLE3 export would not load in SGLang:\n  " + "\n  ".join(problems))
    config = export_config(cfg, draft.fc.weight.dtype)
    if not cfg.norm_output:
        log.warning("this draft was trained with norm_output false (logits from the un-normed hidden); "
                    "SGLang's EAGLE3 head normalises before lm_head, so check the serving stack's "
                    "norm_output semantics before serving it")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_safetensors(tensors, out_dir / WEIGHTS_FILE, metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    log.info("exported EAGLE3 draft (%s) to %s", fmt, out_dir)
    return {"architecture": ARCHITECTURE, "weights": {n: list(t.shape) for n, t in tensors.items()},
            "config": config}


def load_export(export_dir: Path, info: TargetInfo, ttt_length: int = 7) -> Eagle3Draft:
    """Rebuild a draft from an export; the embedding (and teacher head, if given) come from ``info``."""
    from safetensors.torch import load_file

    export_dir = Path(export_dir)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (export_dir / name).is_file():
            raise FileNotFoundError(f"{export_dir / name} not found: not an EAGLE3 export directory")
    if info.embed_weight is None:
        raise ValueError("loading an EAGLE3 export needs the target's embedding (TargetInfo.embed_weight)")
    cfg = dataclasses.replace(config_from_export(json.loads((export_dir / CONFIG_FILE).read_text())),
                              ttt_length=ttt_length)
    tensors = load_file(str(export_dir / WEIGHTS_FILE))
    tensors.pop(EMBEDDING, None)  # an hf export carries the target's embedding; the draft takes info's
    problems = check_weights(tensors, cfg)
    if problems:
        raise ValueError(f"{export_dir / WEIGHTS_FILE} does not match its config:\n  " + "\n  ".join(problems))
    dtype = tensors["fc.weight"].dtype
    draft = Eagle3Draft(cfg, info.embed_weight, info.lm_head_weight).to(dtype)
    result = draft.load_state_dict(tensors, strict=False)
    frozen = {n for n, p in draft.named_parameters() if not p.requires_grad}
    left = [k for k in result.missing_keys if k not in frozen]
    if left or result.unexpected_keys:
        raise ValueError(f"export does not fit the draft: missing {left}, unexpected {result.unexpected_keys}")
    return draft
