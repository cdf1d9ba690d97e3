"""The DFlash draft's shape: built from target info and options, written as ``config.json``.

Pure data (torch-free at import): the same record drives the model, the checkpoint's extra state, the
export's ``config.json`` and the export's weight-shape check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from specforge_dflash.options import FULL_ATTENTION, LAYER_TYPES, SLIDING_ATTENTION


@dataclass(frozen=True)
class DFlashConfig:
    """A Qwen3-style draft with no embedding and no lm_head of its own."""

    architecture: ClassVar[str] = "DFlashDraftModel"
    projector_type: ClassVar[str] = "dflash"

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    num_target_layers: int
    target_layer_ids: tuple[int, ...]
    mask_token_id: int
    block_size: int
    rms_norm_eps: float = 1e-6
    rope_parameters: dict[str, Any] = field(default_factory=lambda: {"rope_type": "default",
                                                                     "rope_theta": 10000.0})
    max_position_embeddings: int = 4096
    layer_types: tuple[str, ...] = ()
    sliding_window: int | None = None

    def __post_init__(self) -> None:
        if not self.layer_types:
            object.__setattr__(self, "layer_types", (FULL_ATTENTION,) * self.num_hidden_layers)
        object.__setattr__(self, "layer_types", tuple(self.layer_types))
        object.__setattr__(self, "target_layer_ids", tuple(self.target_layer_ids))
        problems = self.problems()
        if problems:
            raise ValueError("invalid DFlash draft config: " + "; ".join(problems))

    # ------------------------------------------------------------------ checks

    def problems(self) -> list[str]:
        out = []
        if self.block_size < 2:
            out.append(f"block_size must be >= 2, got {self.block_size}")
        if len(self.layer_types) != self.num_hidden_layers:
            out.append(f"layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers")
        if set(self.layer_types) - set(LAYER_TYPES):
            out.append(f"layer_types may only hold {LAYER_TYPES}, got {list(self.layer_types)}")
        if SLIDING_ATTENTION in self.layer_types and not (self.sliding_window and self.sliding_window > 0):
            out.append("a sliding_attention layer needs a positive sliding_window")
        if not 0 <= self.mask_token_id < self.vocab_size:
            out.append(f"mask_token_id {self.mask_token_id} is outside the vocabulary of {self.vocab_size}")
        bad = [i for i in self.target_layer_ids if not 0 <= i < self.num_target_layers]
        if not self.target_layer_ids or bad:
            out.append(f"target_layer_ids {list(self.target_layer_ids)} must be non-empty and within "
                       f"0..{self.num_target_layers - 1}")
        if self.num_attention_heads % max(self.num_key_value_heads, 1):
            out.append(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                       f"num_key_value_heads {self.num_key_value_heads}")
        return out

    @property
    def context_width(self) -> int:
        """Width of the captured feature ``hidden_states``: K target layers of hidden_size."""
        return len(self.target_layer_ids) * self.hidden_size

    def window_of(self, layer_type: str) -> int | None:
        return self.sliding_window if layer_type == SLIDING_ATTENTION else None

    # ------------------------------------------------------------------ weights

    def expected_weights(self) -> dict[str, tuple[int, ...]]:
        """Every exported weight and its shape; nothing else may be in the export."""
        h, hd, inter = self.hidden_size, self.head_dim, self.intermediate_size
        q_out, kv_out = self.num_attention_heads * hd, self.num_key_value_heads * hd
        shapes: dict[str, tuple[int, ...]] = {
            "fc.weight": (h, self.context_width),
            "hidden_norm.weight": (h,),
            "norm.weight": (h,),
        }
        for i in range(self.num_hidden_layers):
            p = f"layers.{i}."
            shapes.update({
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
                p + "self_attn.q_proj.weight": (q_out, h),
                p + "self_attn.k_proj.weight": (kv_out, h),
                p + "self_attn.v_proj.weight": (kv_out, h),
                p + "self_attn.o_proj.weight": (h, q_out),
                p + "self_attn.q_norm.weight": (hd,),
                p + "self_attn.k_norm.weight": (hd,),
                p + "mlp.gate_proj.weight": (inter, h),
                p + "mlp.up_proj.weight": (inter, h),
                p + "mlp.down_proj.weight": (h, inter),
            })
        return shapes

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (checkpoint extra state)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def dflash_config(self) -> dict[str, Any]:
        return {"target_layer_ids": list(self.target_layer_ids), "mask_token_id": self.mask_token_id,
                "block_size": self.block_size, "num_target_layers": self.num_target_layers,
                "projector_type": self.projector_type}

    def to_hf_json(self) -> dict[str, Any]:
        """The serving ``config.json``: Qwen3 dims plus the DFlash fields SGLang reads."""
        from specforge.api.nn import rope_config_fields
        sliding = SLIDING_ATTENTION in self.layer_types
        return {
            "architectures": [self.architecture],
            "model_type": "qwen3",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.rms_norm_eps,
            **rope_config_fields(self.rope_parameters),
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": "silu",
            "attention_bias": False,
            "tie_word_embeddings": False,
            "layer_types": list(self.layer_types),
            "use_sliding_window": sliding,
            "sliding_window": self.sliding_window if sliding else None,
            "block_size": self.block_size,
            "num_target_layers": self.num_target_layers,
            "dflash_config": self.dflash_config(),
        }

    @classmethod
    def fields_from_hf_json(cls, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments from a ``config.json``; a missing key raises KeyError."""
        from specforge.api.nn import rope_parameters
        nested = obj.get("dflash_config") or {}
        return {
            "hidden_size": obj["hidden_size"],
            "intermediate_size": obj["intermediate_size"],
            "num_hidden_layers": obj["num_hidden_layers"],
            "num_attention_heads": obj["num_attention_heads"],
            "num_key_value_heads": obj["num_key_value_heads"],
            "head_dim": obj.get("head_dim") or obj["hidden_size"] // obj["num_attention_heads"],
            "vocab_size": obj["vocab_size"],
            "num_target_layers": obj.get("num_target_layers", nested.get("num_target_layers")),
            "target_layer_ids": tuple(nested["target_layer_ids"]),
            "mask_token_id": nested["mask_token_id"],
            "block_size": obj.get("block_size", nested.get("block_size", 16)),
            "rms_norm_eps": obj.get("rms_norm_eps", 1e-6),
            "rope_parameters": rope_parameters(obj),
            "max_position_embeddings": obj.get("max_position_embeddings", 4096),
            "layer_types": tuple(obj.get("layer_types") or ()),
            "sliding_window": obj.get("sliding_window"),
        }

    @classmethod
    def from_hf_json(cls, obj: Mapping[str, Any]) -> DFlashConfig:
        """Read an exported ``config.json``; raise ValueError naming what is wrong."""
        problems = cls.json_problems(obj)
        if problems:
            raise ValueError("not a valid export for this strategy: " + "; ".join(problems))
        try:
            return cls(**cls.fields_from_hf_json(obj))
        except KeyError as exc:
            raise ValueError(f"config.json lacks {exc.args[0]!r}; re-export the draft") from None

    @classmethod
    def json_problems(cls, obj: Mapping[str, Any]) -> list[str]:
        """What makes ``obj`` unfit to be read as this config class."""
        out = []
        if obj.get("architectures") != [cls.architecture]:
            out.append(f"architectures is {obj.get('architectures')!r}, expected {[cls.architecture]!r}")
        if obj.get("model_type") != "qwen3":
            out.append(f"model_type is {obj.get('model_type')!r}, expected 'qwen3'")
        projector = (obj.get("dflash_config") or {}).get("projector_type", "dflash")
        if projector != cls.projector_type:
            out.append(f"dflash_config.projector_type is {projector!r}: this export belongs to "
                       f"--strategy {projector}, not {cls.projector_type}")
        return out
