"""Put a run together in one process: data, strategy, feature request, store, observers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from specforge.config import RunConfig
from specforge.contracts import TargetEngine, TargetInfo
from specforge.run.context import Run

STORE_ENV = "SPECFORGE_STORE_DESCRIPTOR"  # set by a launcher: reopen its store instead of building one
FEATURES_NAMESPACE = "features"


def build_engine(config: RunConfig, device: Any, dtype: str | None = None) -> TargetEngine:
    """The configured target engine on ``device`` (in ``dtype``, default the target's)."""
    return config.components["target_engine"].build(model_path=config.target.model,
                                                    dtype=dtype or config.target.dtype, device=str(device))


def trainer_target_info(config: RunConfig) -> TargetInfo:
    """The target for a process that trains without an engine: shape, frozen weights, tokenizer."""
    from specforge.engines.frozen import frozen_target_info

    return frozen_target_info(config.target.model, config.target.dtype)


def build_store(config: RunConfig) -> Any:
    """The run's feature store (the disk store writes under ``runs/<name>/features``)."""
    return config.components["store"].build(root=config.run_dir / FEATURES_NAMESPACE, namespace=FEATURES_NAMESPACE)


def open_run_store(config: RunConfig, dist: Any) -> Any:
    """One store per run: a launcher's (from the environment), or rank 0's shared with the other
    ranks by descriptor when it is cross-process (a managed service then starts once)."""
    from specforge.stores.reopen import open_store
    from specforge.training.distributed import broadcast_object

    if os.environ.get(STORE_ENV):
        return open_store(json.loads(os.environ[STORE_ENV]))
    component = config.components["store"]
    shared = dist.distributed and getattr(component.spec, "cross_process", False)
    store = None
    if not shared or dist.is_main:
        store = build_store(config)
    descriptor = broadcast_object(dist, store.descriptor() if dist.is_main else None) if shared else None
    return open_store(descriptor) if shared and not dist.is_main else store


def feature_identity(config: RunConfig, request: Any) -> Any:
    """What decides this run's stored features besides each sample (see ``specforge.capture``)."""
    from specforge.capture import FeatureIdentity
    from specforge.engines.target_identity import target_identity
    from specforge.options import options_to_dict

    engine = config.components["target_engine"]
    store_options = config.components["store"].options
    return FeatureIdentity.of(target=target_identity(config.target.model), engine=engine.name,
                              engine_options=options_to_dict(engine.options), target_dtype=config.target.dtype,
                              request=request, store_dtype=str(getattr(store_options, "dtype", "target")))


def assemble(config: RunConfig, dist: Any, *, engine: TargetEngine | None, info: TargetInfo,
             resume_from: Path | None = None, init_draft: Path | None = None) -> Run:
    """Data, strategy, feature request and observers around an engine (or its info alone).

    Nothing is written but the tokenized dataset (in the cache, once): the store opens with
    ``attach_store`` once the run folder is claimed, after the store's free space was checked
    against the exact token count.
    """
    from specforge.registry import get_registry
    from specforge.run import preflight

    corpus = open_data(config, info.tokenizer, progress=dist.rank <= 0)
    strategy = config.strategy.build()
    request = strategy.feature_request(info)
    request.check_layers(info.num_layers)
    preflight.check_store_space(config, info, request, num_tokens=corpus.stats.num_tokens,
                                num_samples=corpus.stats.num_samples)
    registry = get_registry()
    return Run(config=config, dist=dist, engine=engine, info=info, samples=corpus.train, stats=corpus.stats,
               corpus=corpus, strategy=strategy, request=request, identity=feature_identity(config, request),
               resume_from=resume_from, init_draft=init_draft, observe_hook=registry.call_observers)


def open_data(config: RunConfig, tokenizer: Any, *, progress: bool = True) -> Any:
    """The run's corpus (``specforge.data.corpus``): its tokenized dataset, built once into the cache
    when ``data.path`` is raw, split into training samples and held-out prompts."""
    from specforge.data.corpus import open_corpus

    return open_corpus(config.data, eval_enabled=config.eval.enabled, model_dir=config.target.model,
                       tokenizer=tokenizer, progress=progress)


def attach_store(run: Run) -> Run:
    """Open the run's feature store (shared between ranks when it is cross-process)."""
    run.store = open_run_store(run.config, run.dist)
    return run


def heldout_prompts(config: RunConfig, tokenizer: Any, limit: int, corpus: Any = None) -> tuple[list, list, str]:
    """(prompt ids, names, source) of up to ``limit`` held-out samples of the run's data."""
    from specforge.errors import UserError

    own = corpus is None
    corpus = open_data(config, tokenizer, progress=False) if own else corpus
    try:
        if not len(corpus.heldout):
            raise UserError(f"no held-out prompts to evaluate on: the held-out split of {config.data.path} is "
                            f"{corpus.holdout.describe()}; set data.eval_holdout (a fraction or a count), "
                            f"data.eval_path (a prompts file), or eval.enabled=false")
        ids, names = corpus.eval_prompts(limit)
    finally:
        if own:
            corpus.close()
    return ids, names, f"{config.data.path} (held out: {len(corpus.heldout)} samples, {corpus.holdout.describe()})"
