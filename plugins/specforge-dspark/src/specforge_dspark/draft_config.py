"""The DSpark draft's shape: a DFlash config plus the Markov and confidence heads (torch-free).

Exported as SGLang's ``Qwen3DSparkModel``: ``dflash_config`` carries ``projector_type: dspark``
and the head fields, and the four fields SGLang's loader reads from the top level
(``markov_rank``, ``markov_head_type``, ``enable_confidence_head``,
``confidence_head_with_markov``) are promoted there as well, as the reference normaliser does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from specforge_dflash.draft_config import DFlashConfig
from specforge_dspark.options import MARKOV_HEAD_TYPES

PROMOTED = ("markov_rank", "markov_head_type", "enable_confidence_head", "confidence_head_with_markov")
"""dflash_config fields the export repeats at the top level of config.json."""


@dataclass(frozen=True)
class DSparkConfig(DFlashConfig):
    """A DFlash draft whose logits get a previous-token bias, plus an acceptance-confidence logit."""

    architecture: ClassVar[str] = "Qwen3DSparkModel"
    projector_type: ClassVar[str] = "dspark"

    markov_rank: int = 256
    markov_head_type: str = "vanilla"
    enable_confidence_head: bool = True
    confidence_head_with_markov: bool = True
    attention_mode: str = "gqa"

    def problems(self) -> list[str]:
        out = super().problems()
        if self.markov_rank < 0:
            out.append(f"markov_rank must be >= 0, got {self.markov_rank}")
        if self.markov_head_type not in MARKOV_HEAD_TYPES:
            out.append(f"markov_head_type must be one of {list(MARKOV_HEAD_TYPES)}, got {self.markov_head_type!r}")
        if self.enable_confidence_head and self.confidence_head_with_markov and self.markov_rank == 0:
            out.append("confidence_head_with_markov needs markov_rank > 0")
        heads, kv = self.num_attention_heads, self.num_key_value_heads
        if self.attention_mode == "gqa" and not kv < heads:
            out.append(f"attention_mode gqa needs fewer key/value heads than query heads, the target has "
                       f"{kv} and {heads}; set strategy.attention_mode=mha for equal counts")
        elif self.attention_mode == "mha" and kv != heads:
            out.append(f"attention_mode mha needs as many key/value heads as query heads, the target has "
                       f"{kv} and {heads}; use strategy.attention_mode=gqa")
        elif self.attention_mode not in ("gqa", "mha"):
            out.append(f"attention_mode must be gqa or mha, got {self.attention_mode!r}")
        return out

    @property
    def confidence_width(self) -> int:
        """Input width of the confidence head: the draft hidden, plus W1[x_prev] when it reads the Markov embedding."""
        return self.hidden_size + (self.markov_rank if self.confidence_head_with_markov else 0)

    def expected_weights(self) -> dict[str, tuple[int, ...]]:
        h, r, v = self.hidden_size, self.markov_rank, self.vocab_size
        shapes = super().expected_weights()
        if r > 0:
            shapes.update({"markov_head.markov_w1.weight": (v, r), "markov_head.markov_w2.weight": (v, r)})
            if self.markov_head_type == "gated":
                shapes.update({"markov_head.gate_proj.weight": (r, h + r), "markov_head.gate_proj.bias": (r,)})
            elif self.markov_head_type == "rnn":
                shapes.update({"markov_head.joint_proj.weight": (3 * r, 2 * r + h),
                               "markov_head.joint_proj.bias": (3 * r,)})
        if self.enable_confidence_head:
            shapes.update({"confidence_head.proj.weight": (1, self.confidence_width),
                           "confidence_head.proj.bias": (1,)})
        return shapes

    def dflash_config(self) -> dict[str, Any]:
        out = super().dflash_config()
        out.update({"markov_rank": self.markov_rank, "markov_head_type": self.markov_head_type,
                    "enable_confidence_head": self.enable_confidence_head,
                    "confidence_head_with_markov": self.confidence_head_with_markov,
                    "attention_mode": self.attention_mode})
        return out

    def to_hf_json(self) -> dict[str, Any]:
        config = super().to_hf_json()
        nested = config["dflash_config"]
        config.update({key: nested[key] for key in PROMOTED})
        return config

    @classmethod
    def fields_from_hf_json(cls, obj: Mapping[str, Any]) -> dict[str, Any]:
        fields = super().fields_from_hf_json(obj)
        nested = obj.get("dflash_config") or {}
        for key in PROMOTED:
            fields[key] = nested[key] if key in nested else obj[key]
        fields["attention_mode"] = nested.get("attention_mode", "gqa")
        return fields

    @classmethod
    def json_problems(cls, obj: Mapping[str, Any]) -> list[str]:
        out = super().json_problems(obj)
        nested = obj.get("dflash_config") or {}
        for key in PROMOTED:
            if key in nested and key in obj and nested[key] != obj[key]:
                out.append(f"{key} is {obj[key]!r} at the top level but {nested[key]!r} in dflash_config")
        return out
