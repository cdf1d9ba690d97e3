"""The one mask-token resolver for every strategy that drafts with a mask token (DFlash family,
P-EAGLE): the documented order, each candidate checked against the embedding.

Order: the strategy's option; the tokenizer's own mask token; the first embedding row the
tokenizer never produces (``len(tokenizer)`` when the embedding is larger); pad; eos; unk. The
first candidate inside ``[0, vocab_size)`` wins. Torch-free: ``run --plan`` resolves it from the
tokenizer files before anything loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from specforge.contracts import TargetInfo
from specforge.errors import UserError


@dataclass(frozen=True)
class MaskToken:
    """The resolved id and where it came from (for logs, ``--plan`` and export configs)."""

    id: int
    source: str  # "option", "tokenizer mask token", "first unused embedding row", "pad", "eos", "unk"


def resolve_mask_token(info: TargetInfo, explicit: int | None = None, *,
                       option: str = "strategy.mask_token_id") -> MaskToken:
    """The mask token to draft with, or a UserError naming the option to set."""
    vocab = info.vocab_size
    if explicit is not None:
        if not 0 <= explicit < vocab:
            raise UserError(f"{option}={explicit} is outside the target vocabulary (0..{vocab - 1}); "
                            f"set --set {option}=<an id below {vocab}>")
        return MaskToken(int(explicit), "option")
    tokens = info.special_tokens
    unused = tokens.tokenizer_size if tokens.tokenizer_size is not None and tokens.tokenizer_size < vocab else None
    for value, source in ((tokens.mask, "tokenizer mask token"), (unused, "first unused embedding row"),
                          (tokens.pad, "pad"), (tokens.eos, "eos"), (tokens.unk, "unk")):
        if value is not None and 0 <= value < vocab:
            return MaskToken(int(value), source)
    raise UserError(f"the target {info.model_path!r} has no mask token, no unused embedding row and no "
                    f"pad/eos/unk token to draft with; set --set {option}=<an unused embedding row>")
