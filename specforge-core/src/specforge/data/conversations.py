"""Conversation records and the parser that turns one JSONL object into one.

Accepted forms (one JSON object per line):

* OpenAI: ``{"messages": [{"role": ..., "content": ...}, ...]}``; the key may also be
  ``"conversations"`` (what upstream SpecForge's data preparation writes).
* ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|..., "value": ...}, ...]}``.

Optional per line: ``"id"`` (string or integer), ``"tools"`` (a list of JSON schemas) and
``"category"`` (a string: `specforge bench` reports τ per category).
Messages may carry ``reasoning_content``, ``tool_calls``, ``name`` and ``tool_call_id``; other
keys are dropped. Every problem is a ``ValueError`` whose message says what is wrong; the reader
adds the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "user": "user", "human": "user",
    "assistant": "assistant", "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant",
    "bard": "assistant",
    "tool": "tool",
}
_STRING_EXTRAS = ("reasoning_content", "name", "tool_call_id")


@dataclass(frozen=True)
class Message:
    """One normalised chat message (roles: system, user, assistant, tool)."""

    role: str
    content: str
    reasoning_content: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    name: str | None = None
    tool_call_id: str | None = None

    def to_template_dict(self) -> dict[str, Any]:
        """The dict a Jinja chat template sees; absent extras are left out, not None."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            out["tool_calls"] = [dict(call) for call in self.tool_calls]
        if self.name is not None:
            out["name"] = self.name
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(frozen=True)
class Conversation:
    """A parsed line: its stable id, where it came from, its messages and tools."""

    conv_id: str
    path: str
    line: int
    messages: tuple[Message, ...]
    tools: tuple[Mapping[str, Any], ...] = field(default=())
    category: str = ""  # the line's optional "category" ("" when it has none)

    @property
    def source(self) -> str:
        return f"{self.path}:{self.line}"

    def template_messages(self, end: int | None = None) -> list[dict[str, Any]]:
        return [m.to_template_dict() for m in self.messages[:end]]


def parse_conversation(obj: Any) -> tuple[str | None, tuple[Message, ...], tuple[Mapping[str, Any], ...]]:
    """Validate one decoded JSON line; return (id or None, messages, tools)."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object per line, got {type(obj).__name__}")
    conv_id = _parse_id(obj.get("id"))
    if "messages" in obj and "conversations" in obj:
        raise ValueError("line has both 'messages' and 'conversations'; keep one")
    raw = obj.get("messages", obj.get("conversations"))
    if raw is None:
        raise ValueError("no 'messages' (or 'conversations') list in this line")
    if not isinstance(raw, list) or not raw:
        raise ValueError("'messages' must be a non-empty list of message objects")
    messages = tuple(_parse_message(m, i) for i, m in enumerate(raw))
    return conv_id, messages, _parse_tools(obj.get("tools"))


def parse_category(obj: Mapping[str, Any]) -> str:
    """A line's optional ``"category"`` (a non-empty string), or ""."""
    value = obj.get("category")
    if value is None:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'category' must be a non-empty string, got {value!r}")
    return value.strip()


def _parse_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"'id' must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if not text:
        raise ValueError("'id' is empty; remove it or give it a value")
    return text


def _parse_tools(value: Any) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # stored JSON-encoded by some exporters
        value = _json_or_error(value, "'tools'")
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError("'tools' must be a list of JSON objects (function schemas)")
    return tuple(value)


def _parse_message(raw: Any, index: int) -> Message:
    where = f"message {index}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is a {type(raw).__name__}, expected an object")
    if "role" in raw:
        role_key, content_key = "role", "content"
    elif "from" in raw:
        role_key, content_key = "from", "value"
    else:
        raise ValueError(f"{where} has neither 'role' (OpenAI form) nor 'from' (ShareGPT form)")
    role_raw = raw[role_key]
    if not isinstance(role_raw, str):
        raise ValueError(f"{where}: '{role_key}' must be a string")
    role = ROLE_ALIASES.get(role_raw.strip().lower())
    if role is None:
        known = ", ".join(sorted(ROLE_ALIASES))
        raise ValueError(f"{where} has unknown role {role_raw!r} (known: {known})")
    tool_calls = _parse_tool_calls(raw.get("tool_calls"), where)
    content = _parse_content(raw.get(content_key), where, content_key,
                             may_be_empty=role == "assistant" and bool(tool_calls))
    extras: dict[str, str | None] = {}
    for key in _STRING_EXTRAS:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: '{key}' must be a string, got {type(value).__name__}")
        extras[key] = value
    return Message(role=role, content=content, tool_calls=tool_calls, **extras)


def _parse_content(value: Any, where: str, key: str, *, may_be_empty: bool) -> str:
    if value is None:
        if may_be_empty:
            return ""
        raise ValueError(f"{where} has no '{key}'")
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts: text only
        texts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise ValueError(f"{where}: only text content parts ({{'type': 'text', 'text': ...}}) "
                                 "are supported")
            texts.append(part["text"])
        return "".join(texts)
    raise ValueError(f"{where}: '{key}' must be a string, got {type(value).__name__}")


def _parse_tool_calls(value: Any, where: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = _json_or_error(value, f"{where}: 'tool_calls'")
    if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
        raise ValueError(f"{where}: 'tool_calls' must be a list of objects")
    return tuple(_decode_arguments(call) for call in value)


def _decode_arguments(call: dict[str, Any]) -> dict[str, Any]:
    """Templates render ``arguments`` with ``tojson``: a JSON-encoded string would be encoded twice."""
    nested = isinstance(call.get("function"), dict)
    target = call["function"] if nested else call
    args = target.get("arguments")
    if not isinstance(args, str):
        return dict(call)
    try:
        decoded = json.loads(args)
    except json.JSONDecodeError:
        return dict(call)
    if not isinstance(decoded, dict):
        return dict(call)
    if nested:
        return {**call, "function": {**target, "arguments": decoded}}
    return {**call, "arguments": decoded}


def _json_or_error(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is a string but not valid JSON ({exc.msg})") from None
