"""The regenerate phase of the demo build: the train split answered by the target itself.

Drafts learn the target's own answers best, so the build rewrites the train split with its greedy
replies through the same path as ``specforge prepare-data --regenerate``. The target was trained
on those very conversations and already answers almost all of them word for word; decoding each
answer token by token would spend most of the phase confirming that. ``CheckedAnswers`` first
checks a reference answer in one teacher-forced forward pass (greedy decoding reproduces it
exactly when the target's argmax at every answer position is the reference's next token, the same
test lossless speculative decoding applies to a draft) and decodes only the prompts that fail it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from specforge.demo import recipe


class CheckedAnswers:
    """A target engine's ``generate`` that returns a known answer when greedy decoding would give it.

    ``answers`` maps prompt ids to the answer ids they were trained with (ending with a stop id).
    A prompt with no known answer, or whose answer the target would not produce, is decoded by
    ``engine``. ``checked``/``decoded`` count the two kinds.
    """

    def __init__(self, engine: Any, model: Any, answers: Mapping[tuple[int, ...], tuple[int, ...]],
                 *, pad_id: int, batch_size: int = 64) -> None:
        self.engine, self.model, self.answers, self.pad_id = engine, model, answers, pad_id
        self.batch_size = batch_size
        self.checked = self.decoded = 0

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 stop_ids: Iterable[int] = ()) -> list[list[int]]:
        stops = frozenset(stop_ids)
        results: list[list[int] | None] = [None] * len(prompts)
        known = [i for i, p in enumerate(prompts) if self._usable(tuple(p), max_new_tokens, stops)]
        # Rows of similar length together: little padding in each checking batch.
        known.sort(key=lambda i: len(prompts[i]) + len(self.answers[tuple(prompts[i])]))
        for start in range(0, len(known), self.batch_size):
            chunk = known[start:start + self.batch_size]
            answers = [self.answers[tuple(prompts[i])] for i in chunk]
            for i, answer, ok in zip(chunk, answers, self._greedy_agrees([prompts[i] for i in chunk], answers)):
                if ok:
                    results[i] = list(answer)
        rest = [i for i, r in enumerate(results) if r is None]
        if rest:
            for i, new in zip(rest, self.engine.generate([prompts[i] for i in rest], max_new_tokens, stops)):
                results[i] = new
        self.checked += len(prompts) - len(rest)
        self.decoded += len(rest)
        return [r if r is not None else [] for r in results]

    def _usable(self, prompt: tuple[int, ...], max_new_tokens: int, stops: frozenset[int]) -> bool:
        """A known answer that ends at its first stop id and fits ``max_new_tokens``."""
        answer = self.answers.get(prompt)
        if not answer or len(answer) > max_new_tokens or answer[-1] not in stops:
            return False
        return not any(t in stops for t in answer[:-1])

    def _greedy_agrees(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[bool]:
        """Per row: is the target's argmax after ``prompt + answer[:j]`` equal to ``answer[j]`` for all j?"""
        import torch

        rows = [list(p) + list(a[:-1]) for p, a in zip(prompts, answers)]  # the last token is never input
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # [B, S], right padded
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # [B, S]
        for r, row in enumerate(rows):
            ids[r, :len(row)] = torch.tensor(row)
            mask[r, :len(row)] = 1
        with torch.no_grad():
            predicted = self.model(input_ids=ids, attention_mask=mask).logits.argmax(-1)  # [B, S]
        out = []
        for r, (p, a) in enumerate(zip(prompts, answers)):
            at = len(p) - 1  # the logits at the prompt's last token predict the first answer token
            out.append(predicted[r, at:at + len(a)].tolist() == list(a))
        return out


def answers_by_prompt(tokenizer: Any, conversations: Sequence[Any]) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Prompt ids -> answer ids up to and including ``<|im_end|>``, as the target was trained on them."""
    from specforge.demo.target import encode

    eos = tokenizer.convert_tokens_to_ids(recipe.SPECIAL_TOKENS["eos"])
    out = {}
    for ex in encode(tokenizer, conversations):
        answer = ex.input_ids[ex.prompt_len:]
        out[ex.input_ids[:ex.prompt_len]] = answer[:answer.index(eos) + 1]
    return out


def regenerate_with_target(target_dir: Path, source: Path, out: Path, *, batch_size: int,
                           max_new_tokens: int) -> dict[str, int]:
    """Rewrite ``source`` into ``out`` with the target's greedy replies; returns how many were decoded."""
    from transformers import AutoModelForCausalLM

    from specforge.data import load_tokenizer
    from specforge.data.regenerate import regenerate
    from specforge.demo.tasks import read_jsonl
    from specforge.engines.hf import HFEngine, HFEngineOptions
    from specforge.evaluation.evaluate import stop_ids

    tokenizer = load_tokenizer(target_dir)
    conversations = read_jsonl(source)
    model = AutoModelForCausalLM.from_pretrained(str(target_dir), dtype="float32").eval()
    engine = HFEngine(HFEngineOptions(batch_size=batch_size), model_path=str(target_dir), dtype="float32",
                      device="cpu")
    checked = CheckedAnswers(engine, model, answers_by_prompt(tokenizer, conversations),
                             pad_id=tokenizer.pad_token_id)
    try:
        regenerate(source, checked, tokenizer, out, max_new_tokens=max_new_tokens,
                   stop_ids=stop_ids(tokenizer), batch_size=batch_size)
    finally:
        engine.close()
    return {"conversations": len(conversations), "checked": checked.checked, "decoded": checked.decoded}
