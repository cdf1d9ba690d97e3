"""Several sequences through one ``HFEngine`` KV cache: batched incremental verification.

On a small target each verification pass costs mostly per-call overhead (module calls, kernel
launches), not arithmetic, so verifying B sequences in one pass costs little more than one.
Rows run different numbers of new tokens per round, so a round's tokens are padded to the
longest row, and the positions a row rejects stay in the cache, masked out, instead of being
cut (a row's cache cannot be cropped alone). Every call passes an explicit additive mask
[B, 1, n, cached + n]: a row's query sees its row's kept positions and its own earlier new
tokens; positions are explicit too, so a row's tokens sit where unbatched decoding puts them.
The cache is compacted (each row's kept positions gathered to the front) once the holes
outweigh the kept positions, and finished rows leave the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from specforge.contracts import FeatureRequest, SampleFeatures

if TYPE_CHECKING:
    import torch

    from specforge.engines.hf import HFEngine


def map_cache(cache: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Replace every layer's cached keys and values [B, H, S, D] by ``fn`` of them."""
    if hasattr(cache, "layers"):  # transformers >= 4.54: one layer object each
        for layer in cache.layers:
            if getattr(layer, "keys", None) is not None:  # a layer the model has not run yet holds none
                layer.keys, layer.values = fn(layer.keys), fn(layer.values)
    else:  # older DynamicCache: lists of tensors
        for i in range(len(cache.key_cache)):
            cache.key_cache[i] = fn(cache.key_cache[i])
            cache.value_cache[i] = fn(cache.value_cache[i])


class HFBatchDecodeSession:
    """B sequences decoded together (``BatchDecodingEngine``): ``extend`` a round, ``keep`` what
    each row accepted, ``retain`` the rows still decoding."""

    def __init__(self, engine: HFEngine, request: FeatureRequest) -> None:
        from transformers import DynamicCache

        self.engine = engine
        self.request = request
        self.cache = DynamicCache()
        self.kept: torch.Tensor | None = None  # [B, cached] bool: the cached positions each row keeps
        self.lengths: list[int] = []  # per row: positions kept (its sequence length so far)
        self._round: list[int] = []  # per row: tokens the last extend ran

    def extend(self, rows: Sequence[Sequence[int]]) -> list[SampleFeatures]:
        """Run each row's ``rows[i]`` after its kept positions (the first call: the prompts), which
        it then keeps; the request's features and ``"logits"`` per row, for its new tokens only."""
        import torch

        model = self.engine._require_open()
        device, dtype = self.engine.device, model.dtype
        if self.kept is None:
            self.kept = torch.zeros(len(rows), 0, dtype=torch.bool)
            self.lengths = [0] * len(rows)
        if len(rows) != len(self.lengths):
            raise ValueError(f"extend got {len(rows)} rows for a batch of {len(self.lengths)}")
        if self.kept.shape[1] > 2 * max(self.lengths) + 16:
            self._compact()
        n = max(len(r) for r in rows)
        counts = [len(r) for r in rows]
        ids = torch.zeros(len(rows), n, dtype=torch.long)  # [B, n], right padded
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(list(r), dtype=torch.long)
        own = torch.arange(n)
        sees = own[None, :] <= own[:, None]  # [n, n]: causal within the round
        new_keys = own[None, :] < torch.tensor(counts)[:, None]  # [B, n]: real (not padding) tokens
        allowed_new = sees[None] & new_keys[:, None, :]  # [B, n, n]
        allowed_new |= torch.eye(n, dtype=torch.bool)[None]  # a padding query sees itself: no empty row
        allowed = torch.cat([self.kept[:, None, :].expand(-1, n, -1), allowed_new], dim=-1)  # [B, n, cached+n]
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        positions = torch.tensor(self.lengths)[:, None] + own[None, :]  # [B, n]
        with torch.no_grad():
            captured, out = self.engine._forward_features(
                model, ids.to(device), self.request, past_key_values=self.cache, use_cache=True,
                attention_mask=mask[:, None].to(device), position_ids=positions.to(device))
        self.kept = torch.cat([self.kept, new_keys], dim=1)  # until ``keep`` drops what a row rejects
        self.lengths = [length + c for length, c in zip(self.lengths, counts)]
        self._round = counts
        head = model.get_output_embeddings()
        last = out.last_hidden_state  # [B, n, H]
        features = []
        for i, c in enumerate(counts):
            f: dict[str, Any] = {"input_ids": ids[i, :c]}
            if self.request.layers:
                f["hidden_states"] = torch.cat([captured[j][i, :c] for j in self.request.layers], dim=-1).cpu()
            if self.request.last_hidden:
                f["last_hidden"] = last[i, :c].cpu().clone()
            f["logits"] = head(last[i, :c]).cpu()  # [c, V]
            features.append(f)
        return features

    def keep(self, counts: Sequence[int]) -> None:
        """Row ``i`` keeps only the first ``counts[i]`` tokens of the last ``extend`` (each row keeps
        all of them until this is called); the rest are masked out."""
        assert self.kept is not None
        width = max(self._round)
        start = self.kept.shape[1] - width
        for i, (c, ran) in enumerate(zip(counts, self._round)):
            if not 0 <= c <= ran:
                raise ValueError(f"row {i} ran {ran} tokens and cannot keep {c}")
            self.kept[i, start + c:] = False
            self.lengths[i] -= ran - c

    def retain(self, rows: Sequence[int]) -> None:
        """Keep only the batch rows ``rows`` (indices into the current batch, in order)."""
        import torch

        assert self.kept is not None
        index = torch.tensor(list(rows), dtype=torch.long)
        on_device = index.to(self.engine.device)
        map_cache(self.cache, lambda t: t.index_select(0, on_device))
        self.kept = self.kept.index_select(0, index)
        self.lengths = [self.lengths[i] for i in rows]
        self._round = [self._round[i] for i in rows] if self._round else []

    def _compact(self) -> None:
        """Gather each row's kept positions to the front of the cache (in order), then cut the rest."""
        import torch

        assert self.kept is not None
        width = max(self.lengths)
        order = torch.argsort((~self.kept).to(torch.int8), dim=1, stable=True)[:, :width]  # [B, width]
        index = order.to(self.engine.device)[:, None, :, None]  # [B, 1, width, 1]

        def gather(t: torch.Tensor) -> torch.Tensor:
            return t.gather(2, index.expand(-1, t.shape[1], -1, t.shape[3]))

        map_cache(self.cache, gather)
        self.kept = torch.arange(width)[None, :] < torch.tensor(self.lengths)[:, None]

    def close(self) -> None:
        self.cache = None
