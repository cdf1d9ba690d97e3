"""Mooncake object keys: one object per tensor plus one small record object per sample.

    {namespace}/{sample_id}/g{generation}/{feature_name}   raw tensor bytes, no header
    {namespace}/{sample_id}/g{generation}                  the FeatureRecord as canonical JSON

``/`` and ``%`` inside a sample id or feature name are percent-encoded, so ids like
``e0/00000007`` cannot collide with another sample's keys; every other character is kept.
The generation is in the key because Mooncake's ``put`` of an existing key keeps the old bytes.
"""

from __future__ import annotations

import json

from specforge.api import FeatureKey, FeatureRecord


def escape(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


def sample_prefix(key: FeatureKey) -> str:
    return f"{key.namespace}/{escape(key.sample_id)}"


def record_key(key: FeatureKey) -> str:
    """The object holding the sample's record; written last, so its presence means complete."""
    return f"{sample_prefix(key)}/g{key.generation}"


def tensor_key(key: FeatureKey, name: str) -> str:
    return f"{record_key(key)}/{escape(name)}"


def record_blob(record: FeatureRecord) -> bytes:
    """The record as canonical JSON bytes: equal records give equal bytes."""
    return json.dumps(record.to_json(), sort_keys=True, separators=(",", ":")).encode()


_REGEX_SPECIALS = frozenset(".^$|?*+()[]{}\\")


def regex_literal(text: str) -> str:
    """``text`` as a literal in Mooncake's (ECMAScript) regex syntax."""
    return "".join("\\" + c if c in _REGEX_SPECIALS else c for c in text)


def below(n: int) -> str:
    """A regex matching exactly the decimal integers 0 <= k < n (no leading zeros); n >= 1."""
    digits = str(n)
    arms = []
    if len(digits) > 1:
        arms.append(r"\d")  # every 1-digit number is below a 2+-digit n
        arms += [rf"[1-9]\d{{{k - 1}}}" for k in range(2, len(digits))]
    for i, d in enumerate(digits):
        low = 1 if i == 0 and len(digits) > 1 else 0
        if int(d) > low:
            rest = len(digits) - i - 1
            tail = rf"\d{{{rest}}}" if rest else ""
            arms.append(f"{digits[:i]}[{low}-{int(d) - 1}]{tail}")
    return "(?:" + "|".join(arms) + ")"


def older_generations(key: FeatureKey) -> str:
    """A regex over every object of ``key``'s sample in a generation older than ``key``'s."""
    return f"^{regex_literal(sample_prefix(key))}/g{below(key.generation)}(?:/.*)?$"
