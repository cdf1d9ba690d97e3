"""Every run-config snippet in the docs parses and resolves: TOML blocks, `specforge run` lines, `--set` items.

Covers docs/, README.md, every plugin README, the example plugin's README and the scaffold's
README template. A snippet that names a section, key, component or value the resolver rejects
fails here with the file and the resolver's message, so the docs never show a config that
does not work. Lines with placeholders (``<...>``, ``HOST``, ``...``) are documentation of a
shape, not a command, and are skipped.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from specforge.config import COMPONENT_SECTIONS, CORE_SECTIONS, resolve
from specforge.errors import ConfigError
from specforge.options import tomllib
from specforge.registry import get_registry

REPO = Path(__file__).resolve().parents[2]
FILES = sorted({*REPO.glob("docs/**/*.md"), REPO / "README.md", *REPO.glob("plugins/*/README.md"),
                REPO / "tests/fixtures/specforge-example/README.md",
                REPO / "specforge-core/src/specforge/scaffold/strategy/README.md.tmpl"})
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE_SET = re.compile(r"--set\s+([A-Za-z_]+\.[A-Za-z_.-]+=[^\s`)]+)")
PLACEHOLDER = re.compile(r"<|\w\|\w|\bHOST\b|\.\.\.|\{\{|\bsection\.key\b|\bKEY\b|\bVALUE\b")
CONFIG_SECTIONS = set(CORE_SECTIONS) | set(COMPONENT_SECTIONS)


def blocks(path: Path) -> Iterator[tuple[str, str]]:
    for match in FENCE.finditer(path.read_text()):
        yield match.group(1), match.group(2)


def run_lines(text: str) -> Iterator[str]:
    """`specforge run ...` command lines (continuations joined, comments dropped)."""
    joined = text.replace("\\\n", " ")
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith("specforge run") and not PLACEHOLDER.search(line):
            yield line


def _names_a_user_file(line: str) -> bool:
    """``-c run.toml``: a file the reader writes, not one in this repository."""
    args = shlex.split(line)
    for flag in ("-c", "--config"):
        if flag in args and args.index(flag) + 1 < len(args):
            return not (REPO / args[args.index(flag) + 1]).is_file()
    return False


def resolve_run_line(line: str) -> None:
    from specforge.cli import run_command

    args = shlex.split(line)[2:]
    args = [a for a in args if a != "--plan"]
    ctx = run_command.make_context("run", args, resilient_parsing=False)
    params = dict(ctx.params)
    config_file, sets = params.pop("config_file"), params.pop("sets")
    params.pop("plan")
    resolve(get_registry(), config_file=REPO / config_file if config_file else None, flags=params, sets=sets)


def snippets() -> Iterator[tuple[str, str, str]]:
    for path in FILES:
        rel = str(path.relative_to(REPO))
        text = path.read_text()
        for lang, body in blocks(path):
            if lang == "toml":
                yield rel, "toml", body
            for line in run_lines(body):
                if not _names_a_user_file(line):
                    yield rel, "run", line
        for item in INLINE_SET.findall(text):
            if not PLACEHOLDER.search(item):
                yield rel, "set", item


SNIPPETS = list(snippets())


def test_the_docs_have_snippets_to_check() -> None:
    kinds = {kind for _, kind, _ in SNIPPETS}
    assert kinds == {"toml", "run", "set"}, kinds
    assert len(SNIPPETS) > 20


@pytest.mark.parametrize(("where", "kind", "snippet"), SNIPPETS,
                         ids=[f"{w}:{k}:{i}" for i, (w, k, _) in enumerate(SNIPPETS)])
def test_a_doc_snippet_parses_and_resolves(where: str, kind: str, snippet: str, tmp_path: Path) -> None:
    registry = get_registry()
    if kind == "toml":
        data = tomllib.loads(snippet)
        if not set(data) <= CONFIG_SECTIONS:
            return  # a pyproject.toml fragment: parsing is the check
        config = tmp_path / "run.toml"
        config.write_text(snippet)
        strategy = data.get("run", {}).get("strategy")
        flags = {} if strategy else {"strategy": "eagle3"}
        resolve(registry, config_file=config, flags=flags)
    elif kind == "run":
        resolve_run_line(snippet)
    else:  # one --set item: some installed component of its section must accept it
        section = snippet.split(".", 1)[0]
        kind = COMPONENT_SECTIONS.get(section, "strategy")
        flag = {"strategy": "strategy", "target_engine": "target_engine", "feature_store": "store",
                "topology": "topology"}[kind]
        errors = []
        for name in registry.names(kind):
            flags = {"strategy": "eagle3", flag: name}
            if kind == "topology" and name == "disaggregated":
                flags["store"] = "disk"
            try:
                resolve(registry, flags=flags, sets=[snippet])
                return
            except ConfigError as exc:
                errors.append(f"{flag} {name}: {exc}")
        pytest.fail(f"{where}: --set {snippet} is refused by every {kind}:\n  " + "\n  ".join(errors))


if __name__ == "__main__":  # pragma: no cover - list what would be checked
    for item in SNIPPETS:
        print(*item, sep=" | ", file=sys.stdout)
