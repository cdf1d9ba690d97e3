"""`specforge export RUN`: a serving directory, judged by every installed plugin."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("run", type=click.Path(exists=True))
@click.option("--format", "fmt", default="sglang", show_default=True, help="hf | sglang (what the strategy supports)")
@click.option("--output-dir", type=click.Path(), help="Where to write.  [default: RUN/export]")
def command(run: str, fmt: str, output_dir: str | None) -> None:
    """Export a run's newest checkpoint (run folder or checkpoint folder)."""
    from specforge.export import export_run

    result = export_run(run, fmt, output_dir)
    click.echo(f"exported {result.info.get('architecture', 'draft')} ({fmt}) to {result.out_dir}")
