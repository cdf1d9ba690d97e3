"""``specforge prepare-data``: see exactly which tokens a run will train on, before it runs."""

from __future__ import annotations

import sys

import click

from specforge.config import DataSection
from specforge.errors import ConfigError
from specforge.options import parse_literal

_DEFAULTS = DataSection()


def _template_args(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--template-arg {pair!r} is not KEY=VALUE (e.g. enable_thinking=false)")
        out[key.strip()] = parse_literal(value)
    return out


@click.command("prepare-data")
@click.option("--data", "data", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False), help="Conversations JSONL (repeatable).")
@click.option("--target-model", required=True, type=click.Path(exists=True, file_okay=False),
              help="Local model directory whose tokenizer (and chat template) to use.")
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A Jinja chat template file replacing the tokenizer's own.")
@click.option("--template-arg", multiple=True, metavar="KEY=VALUE",
              help="A variable for the chat template, e.g. enable_thinking=false (repeatable).")
@click.option("--max-length", type=click.IntRange(min=1), default=_DEFAULTS.max_length, show_default=True)
@click.option("--preview", type=click.IntRange(min=0), default=3, show_default=True,
              help="How many samples to print with their trained tokens highlighted.")
@click.option("--seed", type=int, default=0, show_default=True, help="Shuffle seed (sample order).")
@click.option("--max-samples", type=click.IntRange(min=0), default=_DEFAULTS.max_samples,
              help="Use the first N usable conversations (0: all).")
@click.option("--min-loss-tokens", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--skip-bad-lines", is_flag=True, default=_DEFAULTS.skip_bad_lines,
              help="Skip and count malformed lines instead of stopping at the first.")
@click.option("--color/--no-color", default=None, help="Colour trained tokens (default: when a terminal).")
@click.option("--regenerate", "regenerate_to", type=click.Path(dir_okay=False), default=None,
              help="Write a copy of the data whose assistant turns are the target's own greedy answers.")
@click.option("--target-engine", default="hf", show_default=True, help="Engine used by --regenerate.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=256, show_default=True,
              help="Longest regenerated reply.")
@click.option("--dtype", default="float32", show_default=True, help="Target dtype for --regenerate.")
@click.option("--set", "engine_sets", multiple=True, metavar="target_engine.KEY=VALUE",
              help="An option of the --regenerate engine, e.g. --set target_engine.batch_size=32 (repeatable).")
def command(*, data: tuple[str, ...], target_model: str, chat_template: str | None, template_arg: tuple[str, ...],
            max_length: int, preview: int, seed: int, max_samples: int, min_loss_tokens: int,
            skip_bad_lines: bool, color: bool | None, regenerate_to: str | None, target_engine: str,
            max_new_tokens: int, dtype: str, engine_sets: tuple[str, ...]) -> None:
    """Tokenize conversations with the target's chat template and show what will be trained.

    Trained tokens (assistant replies and their end-of-turn) are shown [[like this]], or in
    colour on a terminal.
    """
    from specforge.data import load_samples, load_tokenizer
    from specforge.data.preview import ANSI_GREEN, BRACKETS, highlight, stats_lines

    tokenizer = load_tokenizer(target_model)
    if regenerate_to:
        data = (_regenerate(list(data), target_model, tokenizer, regenerate_to, target_engine=target_engine,
                            engine_options=_engine_options(engine_sets), max_new_tokens=max_new_tokens,
                            dtype=dtype, chat_template=chat_template,
                            template_kwargs=_template_args(template_arg), skip_bad_lines=skip_bad_lines),)
    loaded = load_samples(list(data), tokenizer, max_length=max_length, seed=seed,
                          chat_template=chat_template, template_kwargs=_template_args(template_arg),
                          skip_bad_lines=skip_bad_lines, max_samples=max_samples,
                          min_loss_tokens=min_loss_tokens)
    use_color = sys.stdout.isatty() if color is None else color
    marks = ANSI_GREEN if use_color else BRACKETS
    for sample in loaded.samples[:preview]:
        click.echo(f"=== {sample.sample_id} ({len(sample.input_ids)} tokens, "
                   f"{sample.num_loss_tokens} trained) ===")
        click.echo(highlight(tokenizer, sample, marks), color=use_color)
    for line in stats_lines(loaded.stats, loaded.report):
        click.echo(line)


def _engine_options(sets: tuple[str, ...]) -> dict:
    out = {}
    for item in sets:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or section != "target_engine" or not dot or not name:
            raise ConfigError(f"--set {item!r}: prepare-data takes only target_engine.KEY=VALUE "
                              f"(e.g. --set target_engine.batch_size=32)")
        out[name] = parse_literal(value.strip())
    return out


def _regenerate(data: list[str], target_model: str, tokenizer, out: str, *, target_engine: str,
                engine_options: dict, max_new_tokens: int, dtype: str, chat_template: str | None,
                template_kwargs: dict, skip_bad_lines: bool) -> str:
    from specforge.data.regenerate import regenerate
    from specforge.evaluation.evaluate import stop_ids
    from specforge.options import build_options
    from specforge.registry import get_registry

    reg = get_registry().get("target_engine", target_engine)
    engine = reg.spec.load()(build_options(reg.spec.options, engine_options, "target_engine"), model_path=target_model,
                             dtype=dtype, device="auto")
    try:
        report = regenerate(data, engine, tokenizer, out, max_new_tokens=max_new_tokens,
                            stop_ids=stop_ids(tokenizer), chat_template=chat_template,
                            template_kwargs=template_kwargs, skip_bad_lines=skip_bad_lines)
    finally:
        engine.close()
    click.echo(f"regenerated {report.turns} assistant turns in {report.conversations} conversations "
               f"with {target_engine} -> {report.out_path}")
    return str(report.out_path)
