"""`specforge export RUN`: a serving directory, judged by every installed plugin."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("run", type=click.Path())
@click.option("--format", "fmt", default=None,
              help="An export format of the run's strategy (`specforge plugins` lists them).  "
                   "[default: the strategy's first, the one its serving engine loads]")
@click.option("--output-dir", type=click.Path(), help="Where to write.  [default: RUN/export]")
def command(run: str, fmt: str | None, output_dir: str | None) -> None:
    """Export a run's newest checkpoint (run folder or checkpoint folder)."""
    from specforge.errors import UserError
    from specforge.export import choose_format
    from specforge.run.finish import write_export
    from specforge.run.folder import locate
    from specforge.run.rebuild import config_of, rebuild

    located = locate(run)
    if located.kind == "export":
        raise UserError(f"{run} is already an export; pass the run folder it came from")
    config = config_of(located)
    fmt = choose_format(config.run.strategy, config.strategy_spec.export_formats, fmt)  # before any work
    located.require_checkpoint("nothing to export")
    rebuilt = rebuild(located)
    assert located.run_dir is not None
    out_dir = Path(output_dir) if output_dir else located.run_dir / "export"
    result = write_export(rebuilt.config, rebuilt.strategy, rebuilt.draft, out_dir, fmt)
    click.echo(f"exported {result.info.get('architecture', 'draft')} ({fmt}) to {result.out_dir}")
