"""The Domino draft's shape: a DFlash config plus the correction head."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from specforge_dflash.draft_config import DFlashConfig


@dataclass(frozen=True)
class DominoConfig(DFlashConfig):
    """Exported as a ``DFlashDraftModel`` whose ``dflash_config.projector_type`` is ``domino``."""

    projector_type: ClassVar[str] = "domino"

    gru_hidden_dim: int = 256
    emb_dim: int = 64
    shift_label: bool = True
    pure_draft_prefix_len: int = 1

    def problems(self) -> list[str]:
        out = super().problems()
        if self.gru_hidden_dim < 1 or self.emb_dim < 1:
            out.append(f"gru_hidden_dim ({self.gru_hidden_dim}) and emb_dim ({self.emb_dim}) must be >= 1")
        if self.pure_draft_prefix_len < 0:
            out.append(f"pure_draft_prefix_len must be >= 0, got {self.pure_draft_prefix_len}")
        return out

    @property
    def correction_start(self) -> int:
        """First block slot whose logits get the GRU correction."""
        return self.pure_draft_prefix_len + (0 if self.shift_label else 1)

    def expected_weights(self) -> dict[str, tuple[int, ...]]:
        h, g, e = self.hidden_size, self.gru_hidden_dim, self.emb_dim
        shapes = super().expected_weights()
        shapes.update({
            "prefix_gru.weight_ih_l0": (3 * g, h),
            "prefix_gru.weight_hh_l0": (3 * g, g),
            "embed_proj.0.weight": (e, h + g),
            "embed_proj.2.weight": (self.vocab_size, e),
        })
        return shapes

    def dflash_config(self) -> dict[str, Any]:
        out = super().dflash_config()
        out.update({"gru_hidden_dim": self.gru_hidden_dim, "emb_dim": self.emb_dim,
                    "shift_label": self.shift_label, "pure_draft_prefix_len": self.pure_draft_prefix_len})
        return out

    @classmethod
    def fields_from_hf_json(cls, obj: Mapping[str, Any]) -> dict[str, Any]:
        fields = super().fields_from_hf_json(obj)
        nested = obj.get("dflash_config") or {}
        for key in ("gru_hidden_dim", "emb_dim", "shift_label", "pure_draft_prefix_len"):
            fields[key] = nested[key] if key in nested else obj[key]
        return fields
