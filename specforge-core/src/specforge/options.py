"""Options dataclasses: strict parsing, declared ranges, every problem reported at once.

One style for the core's config sections and every component's options (torch-free)::

    @dataclass(frozen=True)
    class MyOptions:
        block_size: Annotated[int, Range(ge=2)] = 16
        \"\"\"Tokens per block: the anchor plus block_size - 1 drafted slots.\"\"\"

        def problems(self) -> list[str]:  # optional: checks that involve several fields
            return [] if ... else ["strategy.x and strategy.y disagree; set ..."]

A field's valid range is declared with it (``Range``), its documentation is the attribute
docstring under it, and ``problems()`` holds what one field cannot say alone. ``build_options``
collects unknown keys, wrong types, out-of-range values and ``problems()`` into one
``ConfigError``; ``describe_options`` lists fields with type, default, range and doc.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import math
import sys
import textwrap
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from specforge.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_literal(text: str) -> Any:
    """A --set value: a TOML literal (number, bool, list, quoted string) or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# ----------------------------------------------------------------- declared ranges


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric option (or of each item of a list option).

    ``Annotated[float, Range(ge=0, note="0 means no clipping")]``; ``None`` is always allowed
    for an optional field (it means "unset").
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    note: str = ""

    def describe(self) -> str:
        """``at least 1``, ``greater than 0``, ``in [0, 1]``, ``in (0, 1]``, ... (plus the note)."""
        if (self.ge is not None or self.gt is not None) and (self.le is not None or self.lt is not None):
            low = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}"
            high = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})"
            text = f"in {low}, {high}"
        elif self.ge is not None:
            text = f"at least {_num(self.ge)}"
        elif self.gt is not None:
            text = f"greater than {_num(self.gt)}"
        elif self.le is not None:
            text = f"at most {_num(self.le)}"
        elif self.lt is not None:
            text = f"less than {_num(self.lt)}"
        else:
            text = "any value"
        return f"{text} ({self.note})" if self.note else text

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def problem(self, value: Any, where: str) -> str | None:
        """A one-line problem naming the key, the allowed range and the value; None when fine."""
        if value is None:
            return None
        items = value if isinstance(value, (list, tuple)) else [value]
        bad = [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)
               and not self.contains(v)]
        if not bad:
            return None
        got = value if not isinstance(value, (list, tuple)) else list(value)
        each = " (each item)" if isinstance(value, (list, tuple)) else ""
        return f"{where} must be {self.describe()}{each}, got {got!r}"


def _num(x: float | None) -> str:
    return repr(int(x)) if x is not None and float(x).is_integer() and abs(x) < 1e15 else repr(x)


def _range_of(hint: Any) -> Range | None:
    """The Range in ``Annotated[T, Range(...)]``, also inside ``Optional[...]``."""
    if typing.get_origin(hint) is typing.Annotated:
        return next((m for m in hint.__metadata__ if isinstance(m, Range)), None)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            found = _range_of(arm)
            if found is not None:
                return found
    return None


def field_ranges(cls: type) -> dict[str, Range]:
    """Declared ranges of an options dataclass, by field name."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(cls):
        found = _range_of(hints.get(f.name))
        if found is not None:
            out[f.name] = found
    return out


# ----------------------------------------------------------------- attribute docstrings


def option_docs(cls: type) -> dict[str, str]:
    """The attribute docstring under each field (``x: int = 1`` then ``\"\"\"doc\"\"\"``), by name.

    Read from the source of ``cls`` and of its dataclass bases; empty where none is written.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, [*body[1:], None]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@dataclass(frozen=True)
class OptionInfo:
    """One option as users see it: key, type, default, valid range, documentation."""

    name: str
    type: str
    default: Any
    range: Range | None
    doc: str


def describe_options(cls: type) -> list[OptionInfo]:
    """Every init field of an options dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    ranges = field_ranges(cls)
    docs = option_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append(OptionInfo(f.name, _type_name(hints.get(f.name)), default, ranges.get(f.name),
                              docs.get(f.name, "")))
    return out


# ----------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples where asked."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Annotated:
        return coerce(value, args[0], where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # Optional[X]: X's own message is the precise one
            return coerce(value, arms[0], where)
        for arg in arms:
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            choices = " or ".join(map(repr, args)) if len(args) == 2 else f"one of {', '.join(map(repr, args))}"
            raise ConfigError(f"{where} must be {choices}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
        items = [coerce(v, args[0], f"{where}[{i}]") if args else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def option_problems(obj: Any, section: str) -> list[str]:
    """Out-of-range values and the object's own ``problems()``, each a line naming the key."""
    out = []
    for name, rng in field_ranges(type(obj)).items():
        problem = rng.problem(getattr(obj, name), f"{section}.{name}")
        if problem:
            out.append(problem)
    check = getattr(obj, "problems", None)
    if callable(check):
        out.extend(check())
    return out


class Options:
    """Base of options dataclasses: constructing one checks its declared ranges and ``problems()``,
    so options built in code are as checked as options read from a config.

    Use the base of the component kind (``StrategyOptions``, ``TargetEngineOptions``, ``StoreOptions``,
    ``TopologyOptions``): its ``section`` names the config section in messages.
    """

    section: ClassVar[str] = "options"

    def __post_init__(self) -> None:
        problems = option_problems(self, self.section)
        if problems:
            raise ConfigError("; ".join(problems))


class StrategyOptions(Options):
    section: ClassVar[str] = "strategy"


class TargetEngineOptions(Options):
    section: ClassVar[str] = "target_engine"


class StoreOptions(Options):
    section: ClassVar[str] = "store"


class TopologyOptions(Options):
    section: ClassVar[str] = "topology"


def build_options(cls: type, values: Mapping[str, Any], section: str) -> Any:
    """Instantiate the dataclass ``cls`` from ``values``: strict names and types, checked ranges.

    Every problem (unknown keys, wrong types, out-of-range values, ``problems()``) is collected
    into one ``ConfigError``, so a user fixes a config in one round.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    problems = []
    for key, value in values.items():
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            problems.append(f"unknown key {section}.{key}{suggest(key, list(fields))}; "
                            f"known keys of [{section}]: {known}")
            continue
        try:
            kwargs[key] = coerce(value, hints[key], f"{section}.{key}")
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise  # an Options subclass checked itself, naming its section
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}]: {exc}") from exc
    if isinstance(obj, Options):
        return obj
    problems = option_problems(obj, section)
    if problems:
        raise ConfigError("; ".join(problems))
    return obj


def options_to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain TOML-friendly values (tuples become lists, None is dropped)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(sections: Mapping[str, Mapping[str, Any]],
              notes: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """Write ``{section: {key: value}}`` as TOML; ``notes[section][key]`` becomes a trailing comment."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if v is None:
                continue
            note = (notes or {}).get(section, {}).get(k)
            lines.append(f"{k} = {_toml_value(v)}" + (f"  # {note}" if note else ""))
        lines.append("")
    return "\n".join(lines)
