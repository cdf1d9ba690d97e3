"""Draft trees: SGLang's top-k tree from a next-token function, and the longest accepted path.

``topk_tree`` builds the tree SGLang's EAGLE worker verifies for ``--speculative-num-steps S
--speculative-eagle-topk K --speculative-num-draft-tokens N``: the root's K best children; then,
S-1 times, the K best children of each of the K beams, of which the K with the highest
cumulative log-probability become the next beams; finally the N-1 nodes with the highest
cumulative log-probability over everything expanded. A child never scores above its parent,
so the chosen nodes are closed under ancestors. With K = 1 and N = S+1 it is the greedy chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from specforge.contracts import DraftTree, TreeDrafter, TreeShape
from specforge.errors import UserError

if TYPE_CHECKING:  # torch-free at import: specforge.api re-exports topk_tree
    import torch

Expand = Callable[[list[tuple[int, ...]]], "torch.Tensor"]  # paths after the accepted ids -> [len, V] log-probs


def tree_capacity(shape: TreeShape) -> int:
    """Nodes the expansion produces (the most ``num_draft_tokens - 1`` can choose from)."""
    return shape.topk + (shape.num_steps - 1) * shape.topk * shape.topk


def check_shape(shape: TreeShape) -> None:
    if shape.num_steps < 1 or shape.topk < 1 or shape.num_draft_tokens < 2:
        raise UserError(f"tree shape {shape}: num_steps and topk must be >= 1 and num_draft_tokens >= 2")
    if shape.num_draft_tokens - 1 > tree_capacity(shape):
        raise UserError(f"num_draft_tokens {shape.num_draft_tokens} exceeds what {shape.num_steps} steps of top-"
                        f"{shape.topk} expand ({tree_capacity(shape)} nodes, plus the root); lower it to at most "
                        f"{tree_capacity(shape) + 1}")


def topk_tree(expand: Expand, shape: TreeShape) -> DraftTree:
    """The tree SGLang would verify, drafted with ``expand`` (see the module docstring)."""
    tokens: list[int] = []
    parents: list[int] = []
    scores: list[float] = []
    paths: list[tuple[int, ...]] = []

    def add(token: int, parent: int, score: float) -> int:
        tokens.append(token)
        parents.append(parent)
        scores.append(score)
        paths.append((*paths[parent], token) if parent >= 0 else (token,))
        return len(tokens) - 1

    first = expand([()])[0].double()  # [V]
    values, ids = first.topk(shape.topk)
    beams = [add(int(t), -1, float(v)) for v, t in zip(values, ids)]
    for _ in range(shape.num_steps - 1):
        logp = expand([paths[b] for b in beams]).double()  # [beams, V]
        values, ids = logp.topk(shape.topk, dim=-1)  # [beams, topk]
        children = [add(int(t), b, scores[b] + float(v))
                    for b, row_v, row_t in zip(beams, values, ids) for v, t in zip(row_v, row_t)]
        beams = sorted(children, key=lambda i: (-scores[i], i))[:shape.topk]
    chosen = sorted(sorted(range(len(tokens)), key=lambda i: (-scores[i], i))[:shape.num_draft_tokens - 1])
    where = {old: new for new, old in enumerate(chosen)}
    if any(parents[i] >= 0 and parents[i] not in where for i in chosen):
        raise AssertionError("a chosen node's parent was not chosen (scores must not rise along a path)")
    return DraftTree(tokens=tuple(tokens[i] for i in chosen),
                     parents=tuple(where[parents[i]] if parents[i] >= 0 else -1 for i in chosen))


def accepted_path(tree: DraftTree, target: Sequence[int]) -> list[int]:
    """Tree nodes accepted from the root down: a node is accepted when its token is the target's
    greedy choice after its parent. ``target[0]`` is the choice after the root (the newest
    accepted token), ``target[i + 1]`` the choice after node ``i``."""
    path: list[int] = []
    at = -1
    while True:
        want = target[at + 1]
        child = next((i for i, p in enumerate(tree.parents) if p == at and tree.tokens[i] == want), None)
        if child is None:
            return path
        path.append(child)
        at = child


def eval_tree(k: int, topk: int, num_draft_tokens: int, strategy: Any = None) -> TreeShape | None:
    """The tree ``eval.k`` / ``eval.topk`` / ``eval.num_draft_tokens`` ask for, None for a chain
    (topk 1). ``num_draft_tokens`` 0 verifies the whole expansion. Refused, in one line, for a
    shape SGLang would not accept or a ``strategy`` that drafts chains only."""
    if topk == 1:
        if num_draft_tokens not in (0, k + 1):
            raise UserError(f"eval.num_draft_tokens {num_draft_tokens} with eval.topk 1: a chain of eval.k = {k} "
                            f"verifies {k + 1} tokens (the newest accepted one and k drafts); set "
                            f"eval.num_draft_tokens = {k + 1} or 0, or raise eval.topk for a tree")
        return None
    shape = TreeShape(num_steps=k, topk=topk, num_draft_tokens=num_draft_tokens or tree_capacity(
        TreeShape(num_steps=k, topk=topk, num_draft_tokens=2)) + 1)
    check_shape(shape)
    if strategy is not None and not isinstance(strategy, TreeDrafter):
        raise UserError(f"strategy {strategy.name!r} drafts chains, not trees: set eval.topk = 1 (its serving "
                        f"engine verifies a chain)")
    return shape


def describe_tree(k: int, shape: TreeShape | None) -> str:
    """The draft settings in SGLang's terms, for ``--plan`` and logs."""
    if shape is None:
        return f"chain of k={k} draft tokens (--speculative-num-steps {k} --speculative-eagle-topk 1 " \
               f"--speculative-num-draft-tokens {k + 1})"
    return (f"tree: depth {shape.num_steps}, top-{shape.topk} per step, {shape.num_draft_tokens} tokens verified "
            f"per round, root included (--speculative-num-steps {shape.num_steps} --speculative-eagle-topk "
            f"{shape.topk} --speculative-num-draft-tokens {shape.num_draft_tokens})")
