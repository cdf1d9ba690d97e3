"""Render conversations with a chat template and locate each assistant turn in the text.

Trained text, template-agnostically: for assistant message i, the trained span is what the
model itself would write after the prompt ``render(messages[:i], add_generation_prompt=True)``,
up to and including what the template writes to close the turn (e.g. ``<|im_end|>\\n``,
``<|eot_id|>``). Everything is located in ONE render of the whole conversation, so templates
that rewrite history (Qwen3-style thinking templates strip ``<think>`` blocks from turns before
the last user query) are handled: the spans are where the template put the text, and a stripped
reasoning block is simply not there to train on.

Where a turn starts (character offset in the full render R):

1. Render ``context = render(messages[:i])`` and ``prompt = render(messages[:i], add_generation_prompt
   =True)``; ``header = prompt[len(context):]``. If ``context`` is a prefix of R, the span starts
   after the longest part of ``header`` that R repeats at that point: the whole header in the
   usual case; where the template writes less in history than in the generation prompt (an empty
   ``<think></think>`` added only when thinking is disabled) the span starts where they part.
   An empty header is fine (``[INST] ... [/INST]`` templates have none).
2. Otherwise (the template re-rendered earlier turns differently once later messages exist), the
   span starts after the earliest occurrence, at or after the end of the previous assistant span,
   of the header as the template wrote it for an earlier turn of this conversation or of the
   generation-prompt header (the longer one on a tie).

Where a turn ends: ``len(render(messages[:i+1]))`` when that render is a prefix of R; otherwise
after the first occurrence, from the span start, of the turn closer, learned by rendering
``messages[:i] + [assistant: PROBE]`` and taking what follows PROBE.

An assistant message with nothing before it (index 0) answers nothing and is not trained. A turn
that cannot be located is an error naming the message, never a silently wrong mask. The golden
tests in ``tests/data`` check the result against hand-written spans for ChatML, Qwen3-thinking
and Llama-3 style templates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from specforge.data.conversations import Conversation
from specforge.data.errors import DataError

_PROBE = "SpecforgeProbe7Q"
Span = tuple[int, int]  # [start, end) character offsets in the rendered text


def read_template_file(path: str | Path) -> str:
    """The text of a user-supplied Jinja chat template file."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"chat template file {str(file)!r} does not exist")
    text = file.read_text(encoding="utf-8")
    if not text.strip():
        raise DataError(f"chat template file {str(file)!r} is empty")
    return text


class ChatRenderer:
    """A tokenizer's (or a given) chat template, with assistant-span location.

    ``template_kwargs`` go to every render (e.g. ``{"enable_thinking": False}``).
    """

    def __init__(self, tokenizer: Any, chat_template: str | None = None,
                 template_kwargs: Mapping[str, Any] | None = None) -> None:
        if chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise DataError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; "
                "pass a Jinja template file (--chat-template FILE / data.chat_template)"
            )
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.template_kwargs = dict(template_kwargs or {})
        self._check_syntax()

    def _check_syntax(self) -> None:
        from jinja2.exceptions import TemplateSyntaxError

        try:
            self.render([{"role": "user", "content": "hi"}], ())
        except TemplateSyntaxError as exc:
            raise DataError(f"the chat template does not parse: {exc} (line {exc.lineno})") from None
        except ValueError:
            pass  # a template may reject this conversation; real ones are checked per line

    def render(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
               *, add_generation_prompt: bool = False) -> str:
        """The template's text for ``messages``; any template failure is a ValueError."""
        from jinja2.exceptions import TemplateSyntaxError

        try:
            text = self.tokenizer.apply_chat_template(
                list(messages), tools=list(tools) or None, chat_template=self.chat_template,
                add_generation_prompt=add_generation_prompt, tokenize=False, **self.template_kwargs,
            )
        except TemplateSyntaxError:
            raise
        except Exception as exc:  # jinja raises many types (TemplateError, TypeError, ...)
            raise ValueError(f"chat template failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(text, str):
            raise ValueError(f"chat template returned {type(text).__name__}, expected text")
        return text

    def render_prompt(self, conv: Conversation, end: int) -> str:
        """``messages[:end]`` followed by the generation prompt: what a served model would see."""
        return self.render(conv.template_messages(end), conv.tools, add_generation_prompt=True)

    def assistant_spans(self, conv: Conversation) -> tuple[str, list[Span]]:
        """The full render and the trained character span of every assistant turn in it."""
        messages = conv.template_messages()
        tools = conv.tools
        text = self.render(messages, tools)
        spans: list[Span] = []
        cursor = 0
        seen_header: str | None = None
        for i, message in enumerate(conv.messages):
            if message.role != "assistant" or i == 0:
                continue
            start, header = self._turn_start(messages, tools, text, i, cursor=cursor, seen_header=seen_header)
            seen_header = seen_header if header is None else header
            end = self._turn_end(messages, tools, text, i, start)
            spans.append((start, end))
            cursor = end
        return text, spans

    def _turn_start(self, messages: list[dict], tools: Sequence[Mapping[str, Any]], text: str, i: int, *,
                    cursor: int, seen_header: str | None) -> tuple[int, str | None]:
        """(start offset, header as written in ``text`` when found by alignment, else None)."""
        context = self.render(messages[:i], tools)
        prompt = self.render(messages[:i], tools, add_generation_prompt=True)
        if not prompt.startswith(context):
            raise ValueError(f"message {i}: the generation prompt does not extend the rendered context, "
                             "so assistant turns cannot be located with this chat template")
        header = prompt[len(context):]
        if text.startswith(context) and len(context) >= cursor:
            shared = _common_prefix_len(header, text[len(context):])
            if shared > 0 or not header:
                start = len(context) + shared
                return start, text[len(context):start]
        candidates = [h for h in (seen_header, header) if h]
        found = [(pos, -len(h), h) for h in candidates if (pos := text.find(h, cursor)) >= 0]
        if not found:
            raise ValueError(f"message {i}: cannot find the assistant header {header!r} in the rendered "
                             "conversation")
        pos, _, match = min(found)
        return pos + len(match), None

    def _turn_end(self, messages: list[dict], tools: Sequence[Mapping[str, Any]], text: str, i: int,
                  start: int) -> int:
        # the last message's prefix is the whole conversation, rendered already (one render of four)
        upto = text if i + 1 == len(messages) else self.render(messages[: i + 1], tools)
        if text.startswith(upto) and len(upto) >= start:
            return len(upto)
        probe = self.render([*messages[:i], {"role": "assistant", "content": _PROBE}], tools)
        at = probe.rfind(_PROBE)
        closer = probe[at + len(_PROBE):] if at >= 0 else ""
        pos = text.find(closer, start) if closer else -1
        if pos < 0:
            raise ValueError(f"message {i}: cannot find where the assistant turn ends in the rendered "
                             f"conversation (turn closer {closer!r})")
        return pos + len(closer)


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n
