"""``specforge prepare-data``: see exactly which tokens a run will train on, and tokenize a corpus once.

Without ``--output`` it streams the data once (nothing but the ids seen is kept) for the
statistics and previews the first samples; with ``--output DIR`` it writes the tokenized
dataset (``specforge.data.tokenized``) that ``run`` and ``capture`` take as ``--data DIR``.
"""

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
@click.option("--data", "data", required=True, multiple=True, type=click.Path(exists=True),
              help="Conversations: JSONL, .jsonl.gz, .jsonl.zst, .parquet or a datasets save_to_disk folder "
                   "(repeatable).")
@click.option("--target-model", required=True, type=click.Path(exists=True, file_okay=False),
              help="Local model directory whose tokenizer (and chat template) to use.")
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A Jinja chat template file replacing the tokenizer's own.")
@click.option("--template-arg", multiple=True, metavar="KEY=VALUE",
              help="A variable for the chat template, e.g. enable_thinking=false (repeatable).")
@click.option("--max-length", type=click.IntRange(min=1), default=_DEFAULTS.max_length, show_default=True)
@click.option("--preview", type=click.IntRange(min=0), default=3, show_default=True,
              help="How many samples to print with their trained tokens highlighted.")
@click.option("--output", "output", type=click.Path(file_okay=False), default=None,
              help="Write the tokenized dataset here (a new folder, or one this command wrote before).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Tokenizing processes for --output (0: one per CPU core for corpora over 8 MiB).")
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
            max_length: int, preview: int, output: str | None, workers: int, max_samples: int, min_loss_tokens: int,
            skip_bad_lines: bool, color: bool | None, regenerate_to: str | None, target_engine: str,
            max_new_tokens: int, dtype: str, engine_sets: tuple[str, ...]) -> None:
    """Tokenize conversations with the target's chat template and show what will be trained.

    Trained tokens (assistant replies and their end-of-turn) are shown [[like this]], or in
    colour on a terminal.
    """
    from specforge.data import load_tokenizer
    from specforge.data.identity import TokenizeSpec
    from specforge.data.preview import ANSI_GREEN, BRACKETS, highlight, stats_lines

    tokenizer = load_tokenizer(target_model)
    if regenerate_to:
        data = (_regenerate(list(data), target_model, tokenizer, regenerate_to, target_engine=target_engine,
                            engine_options=_engine_options(engine_sets), max_new_tokens=max_new_tokens,
                            dtype=dtype, chat_template=chat_template,
                            template_kwargs=_template_args(template_arg), skip_bad_lines=skip_bad_lines),)
    spec = TokenizeSpec(sources=tuple(data), model_dir=target_model, max_length=max_length,
                        chat_template=chat_template or "", template_kwargs=_template_args(template_arg),
                        skip_bad_lines=skip_bad_lines, max_samples=max_samples, min_loss_tokens=min_loss_tokens)
    if output:
        samples, stats, report = _write(spec, tokenizer, output, preview, workers)
    else:
        samples, stats, report = _scan(spec, tokenizer, preview)
    use_color = sys.stdout.isatty() if color is None else color
    marks = ANSI_GREEN if use_color else BRACKETS
    for sample in samples:
        click.echo(f"=== {sample.sample_id} ({len(sample.input_ids)} tokens, "
                   f"{sample.num_loss_tokens} trained) ===")
        click.echo(highlight(tokenizer, sample, marks), color=use_color)
    for line in stats_lines(stats, report):
        click.echo(line)
    if output:
        click.echo(f"tokenized dataset:  {output} (pass it to run or capture with --data)")


def _scan(spec, tokenizer, preview: int):
    """One streamed pass: statistics (memory: the ids seen, to catch duplicates), the first ``preview`` samples."""
    from specforge.data import DataError
    from specforge.data.loading import _renderer
    from specforge.data.loss_mask import require_fast_tokenizer
    from specforge.data.reader import LineSink, as_paths, read_conversations
    from specforge.data.stats import StatsAccumulator
    from specforge.data.tokenize import Tally, tokenize_stream

    files = as_paths(list(spec.sources))
    require_fast_tokenizer(tokenizer)
    renderer = _renderer(tokenizer, spec.chat_template or None, spec.template_kwargs)
    sink, tally, acc, shown = LineSink(spec.skip_bad_lines), Tally(), StatsAccumulator(), []
    for outcome in tokenize_stream(read_conversations(files, sink), tokenizer, renderer, sink,
                                   max_length=spec.max_length, min_loss_tokens=spec.min_loss_tokens,
                                   require_consecutive=spec.require_consecutive):
        tally.add(outcome)
        if outcome.verdict != "kept":
            continue
        acc.add(outcome.sample)
        if len(shown) < preview:
            shown.append(outcome.sample)
        if spec.max_samples and acc.num_samples >= spec.max_samples:
            break
    report = tally.report(map(str, files), sink)
    if not acc.num_samples:
        raise DataError(f"no usable training samples in {', '.join(report.files)}: "
                        + ("; ".join(report.problems()) or "the files hold no conversations"))
    return shown, acc.stats(), report


def _write(spec, tokenizer, output: str, preview: int, workers: int):
    from pathlib import Path

    from specforge.data.build import build_tokenized
    from specforge.data.report import DataReport
    from specforge.data.tokenized import META, TokenizedDataset, is_tokenized_dir
    from specforge.demo.cache import build_once

    out = Path(output)
    if out.exists() and any(out.iterdir()) and not is_tokenized_dir(out):
        raise ConfigError(f"--output {output} exists and is not a tokenized dataset; name a new folder")
    build_once(out, META, lambda tmp: build_tokenized(spec, tokenizer, tmp, workers=workers).close(), force=True)
    dataset = TokenizedDataset(out)
    try:
        return (dataset[:min(preview, len(dataset))], dataset.stats(),
                DataReport.from_json(dataset.meta["report"]))
    finally:
        dataset.close()


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
