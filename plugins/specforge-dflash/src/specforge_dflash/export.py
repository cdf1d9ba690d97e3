"""Write and read the serving layout: ``config.json`` + ``model.safetensors`` (format ``sglang``).

SGLang's DFlash loader reads ``config.json`` (Qwen3 dims, ``block_size``, ``num_target_layers``,
``dflash_config.{target_layer_ids, mask_token_id}``) and the draft's own weights; it takes the
embedding and lm_head from the target. It ignores unknown weight names silently, so the export
is checked here against the exact set of names and shapes the config implies, and refused with
every problem listed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from specforge.api import UserError, unwrap
from specforge.api.export import check_weights, save_safetensors

FORMATS = ("sglang",)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def weight_problems(weights: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Missing, unexpected and mis-shaped weights, one line each."""
    return check_weights(weights, expected)


def _full(t: torch.Tensor) -> torch.Tensor:
    full = getattr(t, "full_tensor", None)  # FSDP2 DTensor: gather the whole weight
    return (full() if callable(full) else t).detach().cpu().contiguous()


def export_draft(draft: Any, out_dir: Path, fmt: str) -> dict[str, Any]:
    """Write the export; return ``{"architecture", "weights": {name: shape}, "config"}``."""
    if fmt not in FORMATS:
        raise UserError(f"DFlash exports formats {list(FORMATS)}, not {fmt!r}; use --format {FORMATS[0]}")
    model = unwrap(draft)
    cfg = model.config
    weights = {name: _full(t) for name, t in model.trainable_state().items()}
    shapes = {name: tuple(t.shape) for name, t in weights.items()}
    config = cfg.to_hf_json()
    config["dtype"] = str(next(iter(weights.values())).dtype).removeprefix("torch.")
    problems = weight_problems(shapes, cfg.expected_weights()) + type(cfg).json_problems(config)
    if problems:
        raise ValueError("refusing to write an invalid DFlash export:\n  - " + "\n  - ".join(problems))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    save_safetensors(weights, out_dir / WEIGHTS_FILE, metadata={"format": "pt"})
    return {"architecture": cfg.architecture, "weights": {n: list(s) for n, s in shapes.items()},
            "config": config}


def load_export(export_dir: Path, info: Any, config_class: type, model_class: type, **model_kwargs) -> Any:
    """Rebuild a draft from an export plus the target's frozen embedding and lm_head."""
    export_dir = Path(export_dir)
    path = export_dir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; point at a directory written by `specforge export`")
    cfg = config_class.from_hf_json(json.loads(path.read_text()))
    problems = []
    if cfg.hidden_size != info.hidden_size or cfg.vocab_size != info.vocab_size:
        problems.append(f"the export is for hidden {cfg.hidden_size} / vocab {cfg.vocab_size}, the target has "
                        f"hidden {info.hidden_size} / vocab {info.vocab_size}")
    if cfg.num_target_layers != info.num_layers:
        problems.append(f"the export was trained on a {cfg.num_target_layers}-layer target, this one has "
                        f"{info.num_layers}")
    weights = load_file(str(export_dir / WEIGHTS_FILE))
    problems += weight_problems({n: tuple(t.shape) for n, t in weights.items()}, cfg.expected_weights())
    if problems:
        raise ValueError(f"cannot load {export_dir}:\n  - " + "\n  - ".join(problems))
    model = model_class(cfg, info.embed_weight, info.lm_head_weight, **model_kwargs)
    dtype = next(iter(weights.values())).dtype
    model.to(dtype=dtype)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    left = sorted(set(missing) - {"embed_tokens.weight", "lm_head.weight"})
    if left or unexpected:
        raise ValueError(f"export weights do not fit the model: missing {left}, unexpected {unexpected}")
    return model
