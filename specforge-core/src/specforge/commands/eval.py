"""`specforge eval RUN_OR_EXPORT`: acceptance length by real speculative decoding."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("eval")
@click.argument("path", type=click.Path(exists=True))
@click.option("--prompts", type=click.Path(exists=True), help="Conversations JSONL (default: the run's held-out data).")
@click.option("--k", type=int, help="Draft tokens per verification (default: the run's eval.k).")
@click.option("--num-prompts", type=int, help="How many prompts (default: the run's eval.num_prompts).")
@click.option("--dtype", help="Target and draft dtype for evaluation (default: the run's).")
def command(path: str, prompts: str | None, k: int | None, num_prompts: int | None, dtype: str | None) -> None:
    """Measure τ of a trained run (newest checkpoint) or an export directory; lossless is checked."""
    from specforge.evaluation.run import evaluate_path

    report = evaluate_path(Path(path), prompts=prompts, k=k, num_prompts=num_prompts, dtype=dtype)
    click.echo(json.dumps(report, indent=2))
    click.echo(f"acceptance length τ: {report['tau']:.2f} (strategy {report['strategy']}, k={report['k']}, "
               f"{report['num_prompts']} prompts, lossless checked: {report['lossless_checked']})")
