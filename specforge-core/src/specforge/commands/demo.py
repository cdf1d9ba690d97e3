"""``specforge demo build``: build (or find) the embedded default assets and say where they are.

Imports no torch at import time; the build imports it when it starts.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("demo", help="The embedded default: synthetic chats, a small tokenizer, a tiny target.")
def command() -> None:
    """Commands for the offline demo assets."""


@command.command("build")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache directory (default: $SPECFORGE_CACHE_DIR, else ~/.cache/specforge).")
@click.option("--force", is_flag=True, help="Rebuild even if a complete build is cached.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build(cache_dir: Path | None, force: bool, quiet: bool) -> None:
    """Build the demo data, tokenizer and target once (about 3-4 minutes on 2 CPU cores)."""
    from specforge.demo.assets import PHASES, ensure_demo_assets

    assets = ensure_demo_assets(cache_dir, progress=not quiet, force=force)
    manifest = assets.manifest
    target = manifest["target"]
    verb = "built" if assets.built_now else "already built (--force rebuilds)"
    click.echo(f"demo assets {manifest['version']} {verb}: {assets.root}")
    click.echo(f"  target     {assets.target_dir}  (Qwen3, {manifest['shape']['num_hidden_layers']} layers, "
               f"hidden {manifest['shape']['hidden_size']}, vocab {manifest['shape']['vocab_size']})")
    click.echo(f"  tokenizer  {assets.tokenizer_dir}")
    click.echo(f"  train      {assets.train_path}")
    click.echo(f"  held-out   {assets.heldout_path}")
    per_task = ", ".join(f"{task} {acc:.2f}" for task, acc in sorted(target["per_task"].items()))
    click.echo(f"  accuracy   {assets.accuracy:.3f} on {target['heldout_size']} held-out prompts "
               f"after {target['steps']} steps ({per_task})")
    phases = ", ".join(f"{name} {manifest['seconds'][name]:.1f}s" for name in PHASES)
    click.echo(f"  build time {phases}")
