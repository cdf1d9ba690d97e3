"""The hook and API reference, generated from the code: ``docs/api.md`` and the API snapshot.

    python -m specforge.api.reference --markdown > docs/api.md
    python -m specforge.api.reference --snapshot > specforge-core/tests/api/api_snapshot.txt

The snapshot lists every public name with its signature (fields for records, methods for
protocols), no prose: a test compares it with the committed file, so a change to the plugin API
is always deliberate (see docs/api-stability.md). Tests check docs/api.md is this output too.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import sys
import typing
from collections.abc import Iterator
from typing import Any

MODULES = ("specforge.api", "specforge.api.nn", "specforge.api.stores", "specforge.api.engines",
           "specforge.api.export", "specforge.api.net")
HOOKS_MODULE = "specforge.hookspecs"


def _doc(obj: Any) -> str:
    text = inspect.getdoc(obj) or ""
    return text.strip()


def _first_paragraph(obj: Any) -> str:
    return _doc(obj).split("\n\n")[0].replace("\n", " ")


def _clean(text: str) -> str:
    for prefix in ("typing.", "collections.abc.", "pathlib.", "click.core."):
        text = text.replace(prefix, "")
    return re.sub(r"\bspecforge(?:\.[a-z_]+)+\.([A-Z]\w*)", r"\1", text)


def _type_str(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else _clean(str(tp))


def _signature(obj: Any) -> str:
    try:
        sig = inspect.signature(obj, eval_str=True)
    except NameError:  # an annotation only importable for type checkers (click.Group)
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    return _clean(str(sig))


def _is_protocol(obj: Any) -> bool:
    return isinstance(obj, type) and getattr(obj, "_is_protocol", False)


def _protocol_members(cls: type) -> Iterator[tuple[str, str]]:
    hints = typing.get_type_hints(cls) if not cls.__module__.startswith("typing") else {}
    for name, tp in hints.items():
        yield name, f": {_type_str(tp)}"
    for name, member in cls.__dict__.items():
        if name.startswith("_"):
            continue
        func = member.__func__ if isinstance(member, classmethod) else member
        if callable(func):
            suffix = "  (classmethod)" if isinstance(member, classmethod) else ""
            yield name, f"{_signature(func)}{suffix}"


def _fields(cls: type) -> Iterator[tuple[str, str]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints.get(f.name, f.type)
        default = ""
        if f.default is not dataclasses.MISSING:
            value = f.default
            default = f" = {value.__name__ if isinstance(value, type) else repr(value)}"
        elif f.default_factory is not dataclasses.MISSING:
            default = " = <factory>"
        yield f.name, f": {_type_str(tp)}{default}"


def _kind(obj: Any) -> str:
    if _is_protocol(obj):
        return "protocol"
    if dataclasses.is_dataclass(obj) and isinstance(obj, type):
        return "record"
    if isinstance(obj, type):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "function"
    return "constant"


def public_names() -> Iterator[tuple[str, str, Any]]:
    """(module, name, object) for every public name of the plugin API, module by module."""
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in sorted(module.__all__):
            yield module_name, name, getattr(module, name)


def snapshot() -> str:
    """Names and signatures only: what a plugin can depend on."""
    lines = []
    for module_name, name, obj in public_names():
        kind = _kind(obj)
        if kind == "constant":
            lines.append(f"{module_name}.{name}: constant {type(obj).__name__}")
        elif kind in ("function",):
            lines.append(f"{module_name}.{name}{_signature(obj)}")
        else:
            lines.append(f"{module_name}.{name}: {kind}")
            members = (_protocol_members(obj) if kind == "protocol" else _fields(obj) if kind == "record"
                       else ((n, _signature(m)) for n, m in vars(obj).items()
                             if not n.startswith("_") and callable(m)))
            lines.extend(f"    {n}{sig}" for n, sig in members)
    for name, func in hooks():
        lines.append(f"hook {name}{_signature(func)}")
    return "\n".join(lines) + "\n"


def hooks() -> list[tuple[str, Any]]:
    module = importlib.import_module(HOOKS_MODULE)
    found = [(n, f) for n, f in vars(module).items() if n.startswith("specforge_") and callable(f)]
    return sorted(found, key=lambda item: inspect.getsourcelines(item[1])[1])


def markdown() -> str:
    """The reference page: hooks (in lifecycle order), then every public name with its doc."""
    out = ["# Plugin API reference", "",
           "Generated from the code by `python -m specforge.api.reference --markdown` (a test keeps this page",
           "equal to that output). A plugin imports only these names: `specforge.plugin` (the same as",
           "`specforge.api`), the submodules below, and the kits in `specforge.testing`. What may change",
           "and how is in [api-stability.md](api-stability.md).", "", "## Hooks", "",
           "Implement them with `@hookimpl` in the module your `specforge` entry point names.", ""]
    for name, func in hooks():
        out += [f"### `{name}{_signature(func)}`", "", _doc(func), ""]
    current = None
    for module_name, name, obj in public_names():
        if module_name != current:
            current = module_name
            module = importlib.import_module(module_name)
            out += [f"## `{module_name}`", "", _first_paragraph(module), ""]
        kind = _kind(obj)
        if kind == "constant":
            out += [f"### `{name}`", "", f"constant: `{obj!r}`", ""]
            continue
        title = f"{name}{_signature(obj)}" if kind == "function" else name
        out += [f"### `{title}` ({kind})", "", _doc(obj) or "(no docstring)", ""]
        if kind == "record":
            out += [f"- `{n}{sig}`" for n, sig in _fields(obj)] + [""]
        elif kind == "protocol":
            out += [f"- `{n}{sig}`" for n, sig in _protocol_members(obj)] + [""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the plugin API reference or snapshot.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true")
    group.add_argument("--snapshot", action="store_true")
    args = parser.parse_args(argv)
    sys.stdout.write(markdown() if args.markdown else snapshot())


if __name__ == "__main__":
    main()
