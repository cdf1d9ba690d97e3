"""Evaluate what is on disk: a run folder (newest checkpoint) or an export directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from specforge.errors import ConfigError
from specforge.evaluation.evaluate import EvalSettings, evaluate_draft, load_eval_prompts, stop_ids
from specforge.trained import EXPORT_MARKER, open_run


def _from_export(path: Path) -> tuple[Any, Any]:
    from specforge.config import resolve
    from specforge.registry import get_registry

    marker = json.loads((path / EXPORT_MARKER).read_text())
    sets = [f"strategy.{k}={json.dumps(v)}" for k, v in marker["strategy_options"].items()]
    config = resolve(get_registry(), flags={"strategy": marker["strategy"], "target_model": marker["target_model"]},
                     sets=sets)
    return config, None


def evaluate_path(path: Path, *, prompts: str | None = None, k: int | None = None, num_prompts: int | None = None,
                  dtype: str | None = None) -> dict:
    if (path / EXPORT_MARKER).is_file():
        config, checkpoint = _from_export(path)
    elif (path / "config.toml").is_file() or (path / "state.pt").is_file():
        run = open_run(path)
        config, checkpoint = run.config, run.checkpoint
    else:
        raise ConfigError(f"{str(path)!r} is not a run folder, checkpoint folder or export directory "
                          f"(no config.toml, state.pt or {EXPORT_MARKER})")
    dtype = dtype or config.eval.dtype or config.target.dtype
    engine = config.components["target_engine"].build(model_path=config.target.model, dtype=dtype,
                                                      device=config.target.device)
    try:
        info = engine.info()
        strategy = config.strategy.build()
        request = strategy.feature_request(info)
        if checkpoint is None:
            draft = strategy.load_export(path, info)
        else:
            from specforge.trained import trained_draft

            draft = trained_draft(strategy, info, checkpoint)
        draft = draft.to(info.embed_weight.device, info.embed_weight.dtype).eval()
        source = prompts or config.data.eval_path or config.data.path
        if not source:
            raise ConfigError("no prompts: pass --prompts FILE (conversations JSONL)")
        ids, names = load_eval_prompts(source, info.tokenizer, num_prompts or config.eval.num_prompts)
        settings = EvalSettings(k=k or config.eval.k, num_prompts=len(ids), max_new_tokens=config.eval.max_new_tokens,
                                check_lossless=config.eval.check_lossless)
        result = evaluate_draft(engine, strategy, draft, request, ids, names, settings, stop_ids(info.tokenizer))
    finally:
        engine.close()
    return {"strategy": config.run.strategy, "prompts": source, "dtype": dtype,
            "lossless_checked": settings.check_lossless, **result.to_json()}
