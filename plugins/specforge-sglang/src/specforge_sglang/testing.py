"""Export directories for tests: configs of tiny EAGLE3 / DFlash / Domino drafts and weights from ``draft_weights``.

Used by this plugin's tests (main venv) and by the SGLang harness, which loads the same
directories into SGLang's own draft classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from specforge_sglang.draft_weights import DFLASH_ARCHITECTURE, EAGLE3_ARCHITECTURE, EXPECTED_BY_ARCHITECTURE

VOCAB = 272
HIDDEN = 64


def eagle3_config(*, draft_vocab_size: int = 100, **overrides: Any) -> dict[str, Any]:
    """A tiny EAGLE3 ``config.json`` in the layout specforge-eagle3 writes."""
    config = {
        "architectures": [EAGLE3_ARCHITECTURE], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "num_hidden_layers": 1, "vocab_size": VOCAB, "draft_vocab_size": draft_vocab_size,
        "target_hidden_size": HIDDEN, "hidden_act": "silu", "rms_norm_eps": 1e-6, "max_position_embeddings": 512,
        "tie_word_embeddings": False, "rope_theta": 10000.0, "torch_dtype": "float32",
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": [0, 1, 2], "use_aux_hidden_state": True},
    }
    config.update(overrides)
    return config


def dflash_config(*, domino: bool = False, **overrides: Any) -> dict[str, Any]:
    """A tiny DFlash (or Domino) ``config.json`` in the layout specforge-dflash writes."""
    nested: dict[str, Any] = {"target_layer_ids": [0, 2], "mask_token_id": 259, "block_size": 4,
                              "num_target_layers": 4, "projector_type": "dflash"}
    if domino:
        nested.update(projector_type="domino", gru_hidden_dim=16, emb_dim=8, shift_label=True,
                      pure_draft_prefix_len=1)
    config = {
        "architectures": [DFLASH_ARCHITECTURE], "model_type": "qwen3", "hidden_size": HIDDEN,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "vocab_size": VOCAB, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "max_position_embeddings": 512, "hidden_act": "silu", "attention_bias": False, "tie_word_embeddings": False,
        "layer_types": ["full_attention", "full_attention"], "block_size": 4, "num_target_layers": 4,
        "dflash_config": nested,
    }
    config.update(overrides)
    return config


def write_export(out_dir: Path, config: dict[str, Any], *, drop: tuple[str, ...] = (),
                 extra: dict[str, tuple[int, ...]] | None = None,
                 reshape: dict[str, tuple[int, ...]] | None = None, seed: int = 0) -> Path:
    """Write ``config.json`` and ``model.safetensors`` holding every weight the kept list loads for ``config``
    (required, optional and known-unused), minus ``drop``, plus ``extra``, with ``reshape`` overrides."""
    import torch
    from safetensors.torch import save_file

    expected = EXPECTED_BY_ARCHITECTURE[config["architectures"][0]](config)
    shapes = {**expected.allowed(), **(extra or {}), **(reshape or {})}
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in shapes.items():
        if name in drop:
            continue
        if name == "d2t":
            tensors[name] = torch.ones(shape, dtype=torch.int64)  # draft id k -> target id k+1
        elif name == "t2d":
            t2d = torch.zeros(shape, dtype=torch.bool)
            t2d[1:1 + config.get("draft_vocab_size", VOCAB)] = True
            tensors[name] = t2d
        else:
            tensors[name] = torch.randn(shape, generator=gen) * 0.02
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return out_dir
