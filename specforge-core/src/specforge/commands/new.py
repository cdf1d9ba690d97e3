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
    """Write package specforge-NAME: the strategy NAME, with its model and loss left to fill in.

    It installs as is (`pip install --no-deps -e DIR`) and SpecForge lists it at once; its
    conformance tests (`pytest DIR/tests`) pass once the sections marked TODO(author) in
    strategy.py are written.
    """
    from specforge.scaffold.render import render_strategy, strategy_names

    names = strategy_names(name)
    dest = directory if directory is not None else Path.cwd() / names.dist
    render_strategy(name, dest)
    click.echo(f"created {names.dist} in {dest}\n"
               f"next:\n"
               f"  pip install --no-deps -e {dest}\n"
               f"  specforge plugins                  # lists strategy {name!r}\n"
               f"  fill in the TODO(author) sections of {dest / 'src' / names.package / 'strategy.py'}\n"
               f"  pytest {dest / 'tests'}")
