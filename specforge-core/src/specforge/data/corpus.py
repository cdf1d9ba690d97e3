"""A run's data: the tokenized dataset, split into training samples and held-out evaluation prompts.

``open_corpus`` takes ``data.path`` as it is: a tokenized dataset (``prepare-data --output``),
checked against the run's tokenizer, chat template and max_length; or raw conversations,
tokenized once into the cache (``cache.py``) and reused. ``Corpus.train`` is what ``Run.samples``
is: a random-access sequence over the dataset (4 bytes per sample in memory), in the dataset's
order; the data plan shuffles it. ``Corpus.stats`` are the training samples' statistics: the
dataset's, less the held-out and duplicate samples.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.contracts import DataStats, Sample
from specforge.data.errors import DataError
from specforge.data.holdout import Holdout, held_out_positions, resolve_holdout
from specforge.data.identity import TokenizeSpec, mismatches, sources_of, tokenizer_hash
from specforge.data.stats import StatsAccumulator, compute_stats
from specforge.data.tokenized import TokenizedDataset, is_tokenized_dir

log = logging.getLogger(__name__)


class SampleView(Sequence[Sample]):
    """The samples of ``dataset`` at ``positions``, read on access."""

    def __init__(self, dataset: TokenizedDataset, positions: array) -> None:
        self.dataset = dataset
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.dataset[p] for p in self.positions[index]]
        return self.dataset[self.positions[index]]

    def __repr__(self) -> str:
        return f"SampleView({len(self)} samples of {self.dataset.dir})"


@dataclass
class Corpus:
    dataset: TokenizedDataset
    train: SampleView
    heldout: SampleView
    holdout: Holdout
    stats: DataStats  # of the training samples
    origin: str  # where the dataset came from, for logs and --plan

    def eval_prompts(self, limit: int) -> tuple[list[list[int]], list[str]]:
        """Up to ``limit`` held-out prompts: each sample's tokens before its last trained reply."""
        ids, names = [], []
        for sample in self.heldout:
            if len(ids) >= limit:
                break
            prompt = prompt_before_last_reply(sample)
            if prompt:
                ids.append(prompt)
                names.append(sample.sample_id)
        return ids, names

    def close(self) -> None:
        self.dataset.close()


def prompt_before_last_reply(sample: Sample) -> list[int]:
    """The tokens before the sample's last run of trained tokens (its last assistant reply)."""
    mask = sample.loss_mask
    end = len(mask)
    while end > 0 and not mask[end - 1]:
        end -= 1
    while end > 0 and mask[end - 1]:
        end -= 1
    return list(sample.input_ids[:end])


def tokenize_spec(data: Any, model_dir: str) -> TokenizeSpec:
    """The ``TokenizeSpec`` of a run's ``[data]`` section on raw data."""
    return TokenizeSpec(sources=sources_of(data.path), model_dir=model_dir, max_length=data.max_length,
                        chat_template=data.chat_template, skip_bad_lines=data.skip_bad_lines,
                        max_samples=data.max_samples)


def check_prepared(directory: Path, data: Any, model_dir: str) -> TokenizedDataset:
    """A prepared dataset, refused (naming each difference) when it was made for another tokenizer,
    chat template or max_length than this run's."""
    dataset = TokenizedDataset(directory)
    template_sha = None
    if data.chat_template:
        template_sha = TokenizeSpec((), model_dir, data.max_length, data.chat_template).template_identity()["sha256"]
    problems = mismatches(dataset.meta, tokenizer_sha=tokenizer_hash(model_dir), template_sha=template_sha,
                          max_length=data.max_length)
    if problems:
        dataset.close()
        raise DataError(f"the tokenized dataset {directory} does not fit this run: " + "; ".join(problems)
                        + "; prepare it again for this target (specforge prepare-data --output DIR) or pass the "
                          "raw conversations with --data")
    return dataset


def open_corpus(data: Any, *, eval_enabled: bool, model_dir: str, tokenizer: Any, progress: bool = True) -> Corpus:
    """The run's corpus from its ``[data]`` section (a ``DataSection``) and target directory."""
    if is_tokenized_dir(data.path):
        dataset = check_prepared(Path(data.path), data, model_dir)
        origin = f"tokenized dataset {data.path}"
        limit = data.max_samples
    else:
        from specforge.data.cache import ensure_tokenized

        dataset, built = ensure_tokenized(tokenize_spec(data, model_dir), tokenizer, progress=progress,
                                          workers=getattr(data, "tokenize_workers", 0))
        origin = f"{'tokenized into' if built else 'reused'} {dataset.dir}"
        limit = 0  # max_samples is part of the cache key: the entry holds only those
    holdout = resolve_holdout(getattr(data, "eval_holdout", None), eval_path=data.eval_path, eval_enabled=eval_enabled)
    return split_corpus(dataset, holdout, limit=limit, origin=origin)


def split_positions(dataset: TokenizedDataset, holdout: Holdout, limit: int = 0) -> tuple[int, array, array]:
    """(usable samples, training positions, held-out positions) of ``dataset``, its first ``limit``
    usable samples when > 0; duplicates the build excluded are in neither."""
    excluded = set(dataset.meta.get("excluded") or ())
    usable = array("I", (i for i in range(len(dataset)) if i not in excluded))
    if limit and limit < len(usable):
        usable = usable[:limit]
    usable_ids = (sid for i, sid in enumerate(dataset.ids()) if i not in excluded)
    usable_ids = (sid for _, sid in zip(range(len(usable)), usable_ids))
    held = set(held_out_positions(usable_ids, len(usable), holdout))  # indices into usable
    train = array("I", (p for k, p in enumerate(usable) if k not in held))
    heldout = array("I", (usable[k] for k in sorted(held)))
    return len(usable), train, heldout


def split_corpus(dataset: TokenizedDataset, holdout: Holdout, *, limit: int = 0, origin: str = "") -> Corpus:
    """Training and held-out samples of ``dataset`` (its first ``limit`` usable ones when > 0)."""
    usable, train, heldout = split_positions(dataset, holdout, limit)
    if not train:
        raise DataError(f"the held-out split ({holdout.describe()}) leaves no training sample of {usable}; "
                        f"lower data.eval_holdout")
    whole = len(dataset) - len(dataset.meta.get("excluded") or ())
    if usable < whole:  # a prefix (max_samples) of a prepared dataset: count it
        stats = compute_stats(SampleView(dataset, train))
    elif heldout:
        acc = StatsAccumulator.from_stats(dataset.stats())
        for sample in SampleView(dataset, heldout):
            acc.remove(sample)
        stats = acc.stats()
    else:
        stats = dataset.stats()
    log.info("data: %d training samples, %d held out (%s); %s", len(train), len(heldout), holdout.describe(), origin)
    return Corpus(dataset=dataset, train=SampleView(dataset, train), heldout=SampleView(dataset, heldout),
                  holdout=holdout, stats=stats, origin=origin)
