"""The ``[strategy]`` keys of Domino: every DFlash key plus the correction head and λ schedule."""

from __future__ import annotations

from dataclasses import dataclass

from specforge_dflash.options import DFlashOptions


@dataclass(frozen=True)
class DominoOptions(DFlashOptions):
    """DFlash options plus the GRU correction head and the base-loss curriculum."""

    gru_hidden_dim: int | None = None  # None: hidden_size // 4 (1024 for Qwen3-8B, as shipped)
    emb_dim: int | None = None  # None: hidden_size // 16 (256 for Qwen3-8B, as shipped)
    shift_label: bool = True  # slot k predicts x_{p+k+1} (all slots supervised)
    pure_draft_prefix_len: int = 1  # leading slots that keep the uncorrected base logits
    lambda_base_start: float = 1.0  # λ at step 0 in (1-λ)·CE(final) + λ·CE(base)
    decay_ratio: float = 1.0  # λ reaches 0 after decay_ratio × total optimizer steps

    def problems(self) -> list[str]:
        out = super().problems()
        for key in ("gru_hidden_dim", "emb_dim"):
            value = getattr(self, key)
            if value is not None and value < 1:
                out.append(f"strategy.{key} must be >= 1, got {value}")
        if self.pure_draft_prefix_len < 0:
            out.append(f"strategy.pure_draft_prefix_len must be >= 0, got {self.pure_draft_prefix_len}")
        if not 0.0 <= self.lambda_base_start <= 1.0:
            out.append(f"strategy.lambda_base_start must be within [0, 1], got {self.lambda_base_start}")
        if self.decay_ratio < 0:
            out.append(f"strategy.decay_ratio must be >= 0, got {self.decay_ratio}")
        return out
