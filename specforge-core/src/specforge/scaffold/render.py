"""Render the ``strategy`` template tree into a new plugin package (torch-free, no Jinja)."""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge import __version__
from specforge.errors import SpecforgeError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
TEMPLATE_SUFFIX = ".tmpl"
PACKAGE_DIR = "PACKAGE"
MAX_NAME = 40


class ScaffoldError(SpecforgeError):
    """A name or destination ``specforge new`` cannot use."""


@dataclass(frozen=True)
class StrategyNames:
    """Every spelling of one strategy name the templates need."""

    name: str  # "my-algo": the strategy name users type
    dist: str  # "specforge-my-algo": the distribution
    package: str  # "specforge_my_algo": the import package
    class_prefix: str  # "MyAlgo": prefix of the generated classes

    def placeholders(self) -> dict[str, str]:
        return {"name": self.name, "dist": self.dist, "package": self.package,
                "class_prefix": self.class_prefix, "core_version": __version__}


def strategy_names(name: str) -> StrategyNames:
    """Validate ``name`` and derive its spellings, or raise ScaffoldError saying what is allowed."""
    from specforge.registry import FIRST_PARTY

    if not NAME_PATTERN.match(name) or len(name) > MAX_NAME:
        raise ScaffoldError(
            f"strategy name {name!r} is not usable: use lowercase letters, digits and single dashes, "
            f"starting with a letter, at most {MAX_NAME} characters (e.g. 'my-draft')")
    owner = FIRST_PARTY["strategy"].get(name)
    if owner:
        raise ScaffoldError(f"strategy name {name!r} belongs to {owner}; choose another name")
    return StrategyNames(
        name=name,
        dist=f"specforge-{name}",
        package=f"specforge_{name.replace('-', '_')}",
        class_prefix="".join(part[:1].upper() + part[1:] for part in name.split("-")),
    )


def render_text(text: str, values: dict[str, str], where: str) -> str:
    """Replace ``{{key}}`` placeholders; an unknown key is a bug in the template, named."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template {where} uses unknown placeholder {{{{{key}}}}}")
        return values[key]

    return PLACEHOLDER.sub(replace, text)


def _walk(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(relative path parts, text) of every template file under a Traversable."""
    found = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            found.extend(_walk(child, (*prefix, child.name)))
        elif child.name.endswith(TEMPLATE_SUFFIX):
            found.append(((*prefix, child.name[: -len(TEMPLATE_SUFFIX)]), child.read_text(encoding="utf-8")))
    return found


def render_strategy(name: str, dest: Path) -> list[Path]:
    """Write a new strategy plugin package for ``name`` into ``dest``; return the files written.

    ``dest`` must not exist, or be an empty directory: nothing is ever overwritten.
    """
    names = strategy_names(name)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ScaffoldError(f"{dest} already exists and is not empty; choose another --dir or remove it")
    values = names.placeholders()
    templates = _walk(importlib.resources.files("specforge.scaffold") / "strategy")
    written = []
    for parts, text in templates:
        rel = Path(*(names.package if p == PACKAGE_DIR else p for p in parts))
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_text(text, values, "/".join(parts)), encoding="utf-8")
        written.append(path)
    return written
