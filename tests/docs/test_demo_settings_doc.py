"""docs/configuration.md's table of the embedded demo's settings is what the demo layer applies."""

from __future__ import annotations

import re
from pathlib import Path

from specforge.options import parse_literal
from specforge.run.demo import DEMO_DEFAULTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
ROW = re.compile(r"^\| `(\w+)\.(\w+)` \| ([^|]+) \| ([^|]+) \|$", re.M)


def test_the_documented_demo_layer_is_the_core_demo_layer() -> None:
    documented = {(section, key): value.strip() for section, key, value, _ in ROW.findall(DOC.read_text())}
    actual = {(section, key): value for section, values in DEMO_DEFAULTS.items() for key, value in values.items()}
    assert set(documented) == set(actual)
    for where, value in actual.items():
        assert parse_literal(documented[where]) == value or documented[where] == str(value), where
