"""A local Hugging Face model directory, read without torch: validation and TargetInfo shape fields.

`specforge run --plan` uses this to check a target and print the strategy's feature request
before anything heavy is imported; the HF engine uses it to fail early with a message that
names the path and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from specforge.contracts import TargetInfo
from specforge.errors import UserError

SUPPORTED_ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3MoeForCausalLM": "qwen3_moe",
}
"""Dense-residual decoder-only models whose base model is ``embed -> layers -> norm``."""


class TargetModelError(UserError):
    """A target model directory that cannot be used (missing, incomplete, unsupported)."""


def validate_model_dir(path: str | Path) -> Path:
    """The directory as a Path, or a TargetModelError saying what is missing and how to fix it."""
    model_dir = Path(path).expanduser()
    if not model_dir.exists():
        raise TargetModelError(
            f"target model directory {str(model_dir)!r} does not exist; pass the path of a local "
            f"Hugging Face model (download it first, e.g. `huggingface-cli download <repo> --local-dir "
            f"{model_dir}`): specforge never downloads at run time"
        )
    if not model_dir.is_dir():
        raise TargetModelError(f"target model path {str(model_dir)!r} is a file; pass the directory "
                               f"that holds config.json and the *.safetensors weights")
    if not (model_dir / "config.json").is_file():
        raise TargetModelError(
            f"target model directory {str(model_dir)!r} has no config.json; point the target at the "
            f"directory of a Hugging Face causal LM (the one with config.json and *.safetensors)"
        )
    return model_dir


def read_config(path: str | Path) -> dict[str, Any]:
    """The raw config.json of a validated model directory."""
    model_dir = validate_model_dir(path)
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TargetModelError(f"cannot read {model_dir / 'config.json'}: {exc}; "
                               f"re-download the model or fix the file") from exc
    if not isinstance(config, dict):
        raise TargetModelError(f"{model_dir / 'config.json'} is not a JSON object; re-download the model")
    return config


def check_architecture(config: Mapping[str, Any], model_dir: str | Path) -> str:
    """The supported architecture name of ``config``, or a TargetModelError listing what is supported."""
    architectures = list(config.get("architectures") or [])
    by_type = {t: a for a, t in SUPPORTED_ARCHITECTURES.items()}
    if not architectures and config.get("model_type") in by_type:
        return by_type[config["model_type"]]
    for arch in architectures:
        if arch in SUPPORTED_ARCHITECTURES:
            return arch
    found = ", ".join(architectures) or f"model_type {config.get('model_type')!r}"
    raise TargetModelError(
        f"target model {str(model_dir)!r} has unsupported architecture {found}; the hf engine "
        f"supports {', '.join(sorted(SUPPORTED_ARCHITECTURES))}. Use one of those, or a target "
        f"engine plugin that supports this model"
    )


def _required(config: Mapping[str, Any], key: str, model_dir: str | Path) -> int:
    if key not in config:
        raise TargetModelError(f"{Path(model_dir) / 'config.json'} has no {key!r}; "
                               f"is this a causal language model's config?")
    return int(config[key])


def _optional(config: Mapping[str, Any], key: str, kind: type) -> Any:
    value = config.get(key)
    return None if value is None else kind(value)


def target_info_from_config(path: str | Path) -> TargetInfo:
    """TargetInfo with the shape fields of the model at ``path`` (no weights, no tokenizer).

    Fields the config leaves out take Hugging Face's defaults where those are defined (kv heads =
    heads, head_dim = hidden / heads); others stay None ("unknown"). Special tokens are read
    from the tokenizer files beside the config, when present.
    """
    from specforge.engines.tokenizer_files import read_special_tokens

    model_dir = validate_model_dir(path)
    config = read_config(model_dir)
    check_architecture(config, model_dir)
    hidden = _required(config, "hidden_size", model_dir)
    heads = _required(config, "num_attention_heads", model_dir)
    return TargetInfo(
        model_path=str(model_dir),
        model_type=str(config.get("model_type", "")),
        num_layers=_required(config, "num_hidden_layers", model_dir),
        hidden_size=hidden,
        vocab_size=_required(config, "vocab_size", model_dir),
        num_attention_heads=heads,
        num_key_value_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        intermediate_size=_optional(config, "intermediate_size", int),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=_optional(config, "max_position_embeddings", int),
        hidden_act=_optional(config, "hidden_act", str),
        config=config,
        special_tokens=read_special_tokens(model_dir),
    )
