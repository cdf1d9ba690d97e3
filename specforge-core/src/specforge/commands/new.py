"""`specforge new strategy NAME`: a plugin package to start a new draft algorithm from."""

from __future__ import annotations

from pathlib import Path

import click


def _check_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from specforge.scaffold.render import ScaffoldError, strategy_names

    try:
        strategy_names(value)
    except ScaffoldError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.group("new")
def command() -> None:
    """Start a new plugin package from a template."""


@command.command("strategy")
@click.argument("name", callback=_check_name)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to create.  [default: ./specforge-NAME]")
def strategy(name: str, directory: Path | None) -> None:
    """Write package specforge-NAME: the strategy NAME, a working multi-token drafter to make your own.

    It installs as is (`pip install --no-deps -e DIR`), but SpecForge lists it as incomplete, and
    `specforge run` and its conformance kit (`pytest DIR/tests`) refuse it, until the sections
    marked TODO(author) in DIR/src/PACKAGE/model.py (the draft, the loss, the decoding) are your
    method and their marker lines are deleted.
    """
    from specforge.scaffold.render import render_strategy, strategy_names

    names = strategy_names(name)
    dest = directory if directory is not None else Path.cwd() / names.dist
    render_strategy(name, dest)
    model = dest / "src" / names.package / "model.py"
    click.echo(f"created {names.dist} in {dest}\n"
               f"next:\n"
               f"  pip install --no-deps -e {dest}\n"
               f"  specforge plugins       # lists strategy {name!r}, incomplete until the sections below are done\n"
               f"  edit the TODO(author) sections of {model} (model, loss, decoding),\n"
               f"  then delete their marker lines (grep -n 'TODO(author)' {model})\n"
               f"  pytest {dest / 'tests'}    # the conformance kit and the float64 reference tests")
