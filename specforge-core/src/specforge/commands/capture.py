"""`specforge capture`: just the capture phase of `offline`, for the features a strategy requests."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("capture")
@click.option("--strategy", required=True, help="Whose feature request to capture.")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="Conversations (JSONL, .gz, .zst, Parquet, a datasets folder) or a tokenized dataset.")
@click.option("--target-model", required=True, type=click.Path(), help="Local Hugging Face model directory.")
@click.option("--store", default="disk", show_default=True, help="Feature store to write.")
@click.option("--target-engine", default="hf", show_default=True)
@click.option("--output-dir", required=True, type=click.Path(), help="Store root (the disk store writes here).")
@click.option("--max-length", default=512, show_default=True, type=click.IntRange(min=1))
@click.option("--dtype", default="float32", show_default=True,
              type=click.Choice(["float32", "float64", "bfloat16", "float16"]))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Strategy/engine/store options.")
def command(strategy: str, data: str, target_model: str, store: str, target_engine: str, output_dir: str,
            max_length: int, dtype: str, batch_size: int, sets: tuple[str, ...]) -> None:
    """Capture target features into a store, with a summary of what was written."""
    from specforge.capture import NAMESPACE, capture_into_store
    from specforge.config import resolve
    from specforge.registry import get_registry
    from specforge.run.assemble import feature_identity, open_data

    config = resolve(get_registry(), flags={"strategy": strategy, "store": store, "target_engine": target_engine,
                                            "target_model": target_model, "data": data},
                     sets=[*sets, f"data.max_length={max_length}", f'target.dtype="{dtype}"'])
    engine = config.components["target_engine"].build(model_path=target_model, dtype=dtype,
                                                      device=config.target.device)
    try:
        info = engine.info()
        strat = config.strategy.build()
        request = strat.feature_request(info)
        request.check_layers(info.num_layers)
        corpus = open_data(config, info.tokenizer)  # the samples a run with these settings trains on
        feature_store = config.components["store"].build(root=Path(output_dir), namespace=NAMESPACE)
        try:
            summary = capture_into_store(engine, corpus.train, request, feature_store, batch_size=batch_size,
                                         identity=feature_identity(config, request),
                                         read_only=bool(getattr(feature_store, "read_only", False)))
        finally:
            feature_store.close()
            corpus.close()
    finally:
        engine.close()
    click.echo(f"captured {', '.join(request.feature_names())} for strategy {strategy} into {output_dir}")
    for line in summary.lines():
        click.echo(f"  {line}")
