"""The P-EAGLE attention mask over a flattened list of (anchor, depth) elements.

Query (a, d) sees key (a', d') iff both lie in the same document, the query is not padding, and
either the key is a real token (d' = 0) at or before the query's anchor (a' <= a), or the key is
an earlier-or-equal depth of the query's own chain (a' = a, d' <= d). So a drafted position sees
the context up to its anchor and the mask positions before it, never another chain.
"""

from __future__ import annotations

import torch


def peagle_mask(anchors: torch.Tensor, depths: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, N, N] (True: the query row may attend the key column).

    anchors, depths [B, N] int64; documents [B, N]: the document of each element's anchor, -1 for
    padding elements. A padding query sees only itself, so its (unused) row stays finite.
    """
    qa, ka = anchors[:, :, None], anchors[:, None, :]  # [B, N, 1], [B, 1, N]
    qd, kd = depths[:, :, None], depths[:, None, :]
    qdoc, kdoc = documents[:, :, None], documents[:, None, :]
    context = (kd == 0) & (ka <= qa)
    chain = (ka == qa) & (kd <= qd)
    allowed = (qdoc >= 0) & (qdoc == kdoc) & (context | chain)  # [B, N, N]
    n = anchors.shape[1]
    own = torch.eye(n, dtype=torch.bool, device=anchors.device)[None] & (qdoc < 0)
    return (allowed | own)[:, None]
