"""A ``TargetEngine`` over the synthetic rule language, for running the real evaluator in kits.

It captures ``synthetic.synthetic_features`` for any ids, so a strategy sees exactly the features
it was trained on, and generates greedily from the argmax of those features' logits, which is the
rule's next token (``synthetic.next_token``). ``specforge.evaluation.speculative`` can then
measure τ and check losslessness against it in milliseconds, with no model at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from specforge.contracts import FeatureRequest, Sample, SampleFeatures, TargetInfo
from specforge.testing import synthetic


class SyntheticTargetEngine:
    """The synthetic target as an engine: ``info()``, ``capture``, greedy ``generate``, ``close``."""

    def __init__(self, info: TargetInfo | None = None) -> None:
        self._info = info if info is not None else synthetic.tiny_target_info()

    def info(self) -> TargetInfo:
        return self._info

    def capture(self, samples: Sequence[Sample], request: FeatureRequest) -> list[SampleFeatures]:
        return [synthetic.synthetic_features(self._info, request, s.input_ids, s.loss_mask) for s in samples]

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 stop_ids: Iterable[int] = ()) -> list[list[int]]:
        """Greedy continuation: the argmax of the synthetic logits at the newest position, token by token."""
        stops = set(stop_ids)
        request = FeatureRequest(logits=True)
        out = []
        for prompt in prompts:
            ids, new = list(prompt), []
            while len(new) < max_new_tokens and not (new and new[-1] in stops):
                logits = synthetic.synthetic_features(self._info, request, ids[-2:], logits=True)["logits"]
                new.append(int(torch.argmax(logits[-1])))
                ids.append(new[-1])
            out.append(new)
        return out

    def close(self) -> None:
        pass
