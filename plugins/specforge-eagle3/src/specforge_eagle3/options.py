"""Options of the ``eagle3`` strategy (config table ``[strategy]``, ``--set strategy.KEY=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Eagle3Options:
    """EAGLE3 knobs; the defaults are the published recipe's."""

    aux_layer_ids: tuple[int, ...] | None = None
    """Three 0-based target layers whose outputs feed the draft; default ``[1, L//2-1, L-4]``."""
    ttt_length: int = 7
    """Training-time-test steps: how many chained draft steps each position is trained on."""
    draft_vocab_size: int = 32000
    """Size of the draft's output vocabulary (most frequent supervised tokens); clamped to the target's."""
    decay: float = 0.8
    """Weight of TTT step k is ``decay**k``; the step losses are summed, not averaged."""
    intermediate_size: int | None = None
    """Width of the draft MLP; default the target's."""
    initializer_range: float | None = None
    """Std of the normal init of trainable linear layers; default the target config's, else 0.02."""

    def __post_init__(self) -> None:
        if self.aux_layer_ids is not None and len(self.aux_layer_ids) != 3:
            raise ValueError(f"strategy.aux_layer_ids needs exactly 3 layer ids (low, mid, high), "
                             f"got {list(self.aux_layer_ids)}")
        if self.ttt_length < 1:
            raise ValueError(f"strategy.ttt_length must be >= 1, got {self.ttt_length}")
        if self.draft_vocab_size < 1:
            raise ValueError(f"strategy.draft_vocab_size must be >= 1, got {self.draft_vocab_size}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"strategy.decay must be in (0, 1], got {self.decay}")
        if self.intermediate_size is not None and self.intermediate_size < 1:
            raise ValueError(f"strategy.intermediate_size must be >= 1, got {self.intermediate_size}")
        if self.initializer_range is not None and self.initializer_range <= 0:
            raise ValueError(f"strategy.initializer_range must be > 0, got {self.initializer_range}")
