"""The one frozen-target builder: TargetInfo with the target's embedding, lm_head and tokenizer.

Every engine (hf, sglang) and every trainer without an engine (disaggregated trainers,
`specforge export`/`eval`) describes the target through this function, so the shape fields,
the frozen weights (read from safetensors without loading the model) and the special tokens
come from one place.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from specforge.contracts import TargetInfo


def frozen_target_info(model_path: str | Path, dtype: str = "float32", *, tokenizer: Any = None,
                       load_tokenizer: bool = True) -> TargetInfo:
    """The target's shape, frozen ``embed_weight``/``lm_head_weight`` [V, H] in ``dtype`` (on CPU;
    the same tensor twice when tied) and its tokenizer (loaded from ``model_path`` unless given)."""
    from specforge.devices import resolve_dtype
    from specforge.engines.target_config import target_info_from_config
    from specforge.engines.tokenizer_files import special_tokens_of
    from specforge.engines.weights import read_frozen_weights

    info = target_info_from_config(model_path)
    embed, head = read_frozen_weights(model_path, info.config)
    dt = resolve_dtype(dtype)
    tied = head is embed
    embed = embed.to(dt)
    head = embed if tied else head.to(dt)
    if tokenizer is None and load_tokenizer:
        from specforge.data import load_tokenizer as load

        tokenizer = load(model_path)
    special = special_tokens_of(tokenizer) if tokenizer is not None else info.special_tokens
    return dataclasses.replace(info, tokenizer=tokenizer, special_tokens=special, embed_weight=embed,
                               lm_head_weight=head)
