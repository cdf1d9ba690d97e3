"""Rewrite assistant turns with the target's own greedy answers (drafts trained on them accept more).

Works through any engine's ``generate()``. Turns are regenerated in order, so a later turn sees
the target's own earlier replies; conversations are batched turn by turn. Tool calls and other
message fields are kept; ``reasoning_content`` is dropped (the regenerated reply carries the
target's own). Output: conversation JSONL in the OpenAI ``messages`` form.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.contracts import TargetEngine
from specforge.data.conversations import Conversation, Message
from specforge.data.loading import _renderer
from specforge.data.reader import LineSink, PathLike, as_paths, read_conversations
from specforge.data.tokenize import chunks


@dataclass(frozen=True)
class RegenerateReport:
    conversations: int
    turns: int
    skipped_lines: int
    out_path: Path


def _record(conv: Conversation) -> dict[str, Any]:
    out: dict[str, Any] = {"id": conv.conv_id, "messages": [m.to_template_dict() for m in conv.messages]}
    if conv.tools:
        out["tools"] = [dict(t) for t in conv.tools]
    return out


def regenerate(paths: PathLike | Sequence[PathLike], engine: TargetEngine, tokenizer: Any, out_path: PathLike, *,
               max_new_tokens: int, stop_ids: Sequence[int], chat_template: PathLike | None = None,
               template_kwargs: Mapping[str, Any] | None = None, skip_bad_lines: bool = False,
               batch_size: int = 32) -> RegenerateReport:
    """Write ``out_path`` with every assistant turn replaced by the target's greedy answer."""
    renderer = _renderer(tokenizer, chat_template, template_kwargs)
    sink = LineSink(skip_bad_lines)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    conversations = turns = 0
    with tmp.open("w") as f:
        for chunk in chunks(read_conversations(as_paths(paths), sink), batch_size):
            convs = list(chunk)
            rounds = max((sum(m.role == "assistant" for m in c.messages) for c in convs), default=0)
            for r in range(rounds):
                todo = []  # (conversation slot, message index)
                for slot, conv in enumerate(convs):
                    idx = [i for i, m in enumerate(conv.messages) if m.role == "assistant"]
                    if r < len(idx) and idx[r] > 0:
                        todo.append((slot, idx[r]))
                if not todo:
                    continue
                texts = [renderer.render_prompt(convs[s], i) for s, i in todo]
                prompts = tokenizer(texts, add_special_tokens=False)["input_ids"]
                answers = engine.generate(prompts, max_new_tokens, stop_ids=stop_ids)
                for (slot, i), answer in zip(todo, answers):
                    reply = tokenizer.decode([t for t in answer if t not in stop_ids], skip_special_tokens=False)
                    messages = list(convs[slot].messages)
                    messages[i] = dataclasses.replace(messages[i], content=reply.strip(), reasoning_content=None)
                    convs[slot] = dataclasses.replace(convs[slot], messages=tuple(messages))
                    turns += 1
            for conv in convs:
                f.write(json.dumps(_record(conv)) + "\n")
            conversations += len(convs)
    tmp.replace(out)
    return RegenerateReport(conversations=conversations, turns=turns, skipped_lines=len(sink.lines), out_path=out)


__all__ = ["Message", "RegenerateReport", "regenerate"]
