"""The target's frozen embedding and lm_head, read straight from its safetensors files.

Drafts reuse these two matrices; reading them from the checkpoint (a few hundred MB of a
multi-GB model) lets any engine, including one that runs the target in another process,
provide them without instantiating the model.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from specforge.engines.target_config import TargetModelError, read_config

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
EMBED_SUFFIX = "embed_tokens.weight"
LM_HEAD_NAMES = ("lm_head.weight",)


def safetensors_header(path: Path) -> dict[str, Any]:
    """Tensor name -> {"dtype", "shape", ...} from a safetensors file's JSON header (no torch)."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                raise ValueError(f"header of {length} bytes")
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError) as exc:
        raise TargetModelError(f"{path} is not a readable safetensors file ({exc}); re-download the model") from None
    return {name: meta for name, meta in header.items() if name != "__metadata__"}


def _weight_map(model_dir: Path) -> dict[str, str]:
    """Tensor name -> file name, for a single-file or an index-sharded checkpoint."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise TargetModelError(f"cannot read the shard index {index}: {exc}; "
                                   f"re-download the model") from exc
        return dict(weight_map)
    single = model_dir / SINGLE_FILE
    if single.is_file():
        return dict.fromkeys(safetensors_header(single), SINGLE_FILE)
    raise TargetModelError(
        f"target model directory {str(model_dir)!r} has neither {SINGLE_FILE} nor {INDEX_FILE}; "
        f"specforge reads safetensors checkpoints only (convert .bin weights with save_pretrained)"
    )


def _find_embedding(names: Mapping[str, str], model_dir: Path) -> str:
    candidates = sorted(n for n in names if n.endswith(EMBED_SUFFIX))
    if not candidates:
        raise TargetModelError(f"no '*.{EMBED_SUFFIX}' tensor in the checkpoint of {str(model_dir)!r}; "
                               f"is this a decoder-only language model?")
    # The text model's embedding has the shortest prefix ("model.embed_tokens.weight").
    return min(candidates, key=len)


def _load(model_dir: Path, file_name: str, tensor_name: str) -> Any:
    from safetensors import safe_open

    path = model_dir / file_name
    if not path.is_file():
        raise TargetModelError(f"checkpoint file {path} (holding {tensor_name}) is missing; "
                               f"re-download the model")
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(tensor_name)


def _pick(names: Mapping[str, str], config: Mapping[str, Any], model_dir: Path) -> tuple[str, str]:
    embed = _find_embedding(names, model_dir)
    tied = bool(config.get("tie_word_embeddings", False))
    head = next((n for n in LM_HEAD_NAMES if n in names), None)
    if tied or head is None:
        head = embed
    return embed, head


def frozen_weight_names(model_dir: str | Path, config: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """Checkpoint names of (embedding, lm_head); equal when the embeddings are tied."""
    model_dir = Path(model_dir)
    config = read_config(model_dir) if config is None else config
    return _pick(_weight_map(model_dir), config, model_dir)


def read_frozen_weights(model_dir: str | Path, config: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """``(embed_weight [V, H], lm_head_weight [V, H])`` as stored (dtype unchanged).

    Tied checkpoints (``tie_word_embeddings`` or no ``lm_head.weight``) return the embedding
    tensor twice, the same object.
    """
    model_dir = Path(model_dir)
    config = read_config(model_dir) if config is None else config
    names = _weight_map(model_dir)
    embed_name, head_name = _pick(names, config, model_dir)
    embed = _load(model_dir, names[embed_name], embed_name)
    head = embed if head_name == embed_name else _load(model_dir, names[head_name], head_name)
    if head.shape != embed.shape:
        raise TargetModelError(f"lm_head {tuple(head.shape)} and embedding {tuple(embed.shape)} of "
                               f"{str(model_dir)!r} differ in shape; this checkpoint is not supported")
    return embed, head
