"""What a run can check with files alone, before anything loads: `run --plan` and every run do it.

Torch-free: data and prompt files exist (a data path may also be a tokenized dataset or a
datasets ``save_to_disk`` folder), the target directory has its weights and tokenizer,
``max_length`` fits the target's positions, the strategy accepts the target
(``PlanningStrategy.plan_notes``: e.g. a mask token it can draft with), a read-only store exists,
evaluation has held-out prompts and a draft shape the strategy can draft (a tree needs a
``TreeDrafter``), ``run.tensorboard`` has its package, and the offline store's directory has room
for every sample's features (``store_size``: exact from a tokenized dataset, else an estimate from
a sample of the raw data). Every problem found is reported at once, each naming the key or flag
that fixes it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.config import RunConfig
from specforge.contracts import FeatureRequest, PlanningStrategy, TargetInfo
from specforge.errors import ConfigError, SpecforgeError

SHRINK = ("--topology online (captures each batch as it trains; stores nothing), --set store.dtype=\"bfloat16\" "
          "(half of float32), or fewer captured layers (the strategy's layer options: "
          "specforge plugins --kind strategy)")


def _file_problem(path: str, what: str, flag: str, *, dataset_ok: bool = False) -> str | None:
    from specforge.data.sources import is_dataset_dir
    from specforge.data.tokenized import is_tokenized_dir

    p = Path(path).expanduser()
    if not p.exists():
        return f"{what} {path!r} does not exist; pass an existing file with {flag}"
    if p.is_dir() and not (dataset_ok and (is_tokenized_dir(p) or is_dataset_dir(p))):
        also = (" (or a folder written by specforge prepare-data --output or by datasets' save_to_disk)"
                if dataset_ok else "")
        return f"{what} {path!r} is a directory; pass a conversations JSONL file with {flag}{also}"
    return None


def _target_problems(config: RunConfig) -> list[str]:
    from specforge.engines.weights import frozen_weight_names

    if not config.target.model:
        return []  # the embedded demo target, built on first use
    model_dir = Path(config.target.model).expanduser()
    out = []
    try:
        frozen_weight_names(model_dir)
    except SpecforgeError as exc:
        out.append(str(exc))
    if not any((model_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        out.append(f"target model directory {str(model_dir)!r} has no tokenizer (tokenizer.json or "
                   f"tokenizer_config.json); copy the model's tokenizer files next to its config.json")
    return out


def _tensorboard_problem(config: RunConfig) -> str | None:
    """``run.tensorboard`` without the package would fail at the first step; say so before anything loads."""
    if not config.run.tensorboard:
        return None
    try:
        import tensorboard  # noqa: F401  (light: the writer itself loads with torch, once the run starts)
    except ImportError:
        return ("run.tensorboard is on but the tensorboard package is not installed: "
                "pip install specforge-core[tensorboard], or turn run.tensorboard off")
    return None


def check(config: RunConfig, info: TargetInfo, strategy: Any) -> list[str]:
    """Raise one ConfigError listing every problem; return the strategy's notes for the plan."""
    problems = []
    data = config.data
    for path, what, flag, dataset_ok in ((data.path, "data file", "--data", True),
                                         (data.eval_path, "held-out prompts file", "--set data.eval_path=FILE", False)):
        if path:
            problem = _file_problem(path, what, flag, dataset_ok=dataset_ok)
            if problem:
                problems.append(problem)
    problems += _eval_prompt_problems(config)
    if config.eval.enabled:
        try:
            config.eval.tree(strategy)  # a tree for a chain-only strategy fails here, not after training
        except SpecforgeError as exc:
            problems.append(str(exc))
    if data.chat_template and not Path(data.chat_template).expanduser().is_file():
        problems.append(f"chat template file {data.chat_template!r} does not exist; fix data.chat_template")
    problems += _target_problems(config)
    tensorboard = _tensorboard_problem(config)
    if tensorboard:
        problems.append(tensorboard)
    if info.max_position_embeddings and data.max_length > info.max_position_embeddings:
        problems.append(f"data.max_length {data.max_length} exceeds the target's max_position_embeddings "
                        f"{info.max_position_embeddings}; lower it with --set data.max_length=N")
    notes: list[str] = []
    if isinstance(strategy, PlanningStrategy):
        try:
            notes = list(strategy.plan_notes(info))
        except SpecforgeError as exc:
            problems.append(str(exc))
    store = config.components["store"].options
    root = getattr(store, "root", "")
    marker = Path(root).expanduser() / "features" / "store.json" if root else None
    if getattr(store, "read_only", False) and marker is not None and not marker.is_file():
        problems.append(f"store.read_only is set but {root} holds no disk store; capture into it first "
                        f"(specforge capture --output-dir {root}) or drop store.read_only")
    if not problems:
        request = strategy.feature_request(info)
        size = store_size(config, info, request)
        notes += size.lines()
        if size.problem:
            problems.append(size.problem)
    if problems:
        raise ConfigError("; ".join(problems) if len(problems) == 1 else
                          f"{len(problems)} problems: " + "; ".join(problems))
    return notes


def _eval_prompt_problems(config: RunConfig) -> list[str]:
    """Evaluation needs prompts that were not trained on: a prompts file or a held-out split."""
    from specforge.data.holdout import resolve_holdout

    data = config.data
    if not (config.eval.enabled and data.path) or data.eval_path:
        return []
    if resolve_holdout(data.eval_holdout, eval_path=data.eval_path, eval_enabled=True).mode == "none":
        return ["eval.enabled needs prompts that were not trained on, but data.eval_holdout is 0 and no "
                "data.eval_path is given; set --set data.eval_holdout=0.02 (or a count), --set data.eval_path=FILE, "
                "or --set eval.enabled=false"]
    return []


# ----------------------------------------------------------------- the store's size


@dataclass(frozen=True)
class StoreSize:
    """What the feature store will hold, where, and whether it fits."""

    cost: Any  # specforge.data.sizing.FeatureCost
    store_dtype: str
    corpus: Any = None  # specforge.data.sizing.CorpusSize, None when unknown (the demo before its build)
    holdout: str = ""
    keeps_all: bool = False  # the topology keeps every sample's features (offline)
    where: str = ""  # the directory (or "memory") the features go to
    total: int = 0
    free: int | None = None
    problem: str | None = None

    def lines(self) -> list[str]:
        from specforge.data.sizing import human_bytes

        c = self.cost
        out = [f"{c.floats_per_token} feature floats per token, {c.bytes_per_token} bytes per token "
               f"(stored as {c.float_dtype}; store.dtype = {self.store_dtype!r})"]
        if self.corpus is not None:
            out.append(f"data: {self.corpus.num_samples} training samples, {self.corpus.num_tokens} tokens "
                       f"({self.corpus.label()}{self.corpus.how})")
        if self.holdout:
            out.append(f"held out for evaluation: {self.holdout}")
        if self.keeps_all and self.corpus is not None:
            room = f"; {human_bytes(self.free)} free there" if self.free is not None else ""
            out.append(f"the offline store will hold {human_bytes(self.total)} ({self.corpus.label()}"
                       f"{self.total} bytes) in {self.where}{room}")
        elif self.corpus is not None:
            out.append(f"every sample's features would take {human_bytes(self.total)}; this topology keeps only the "
                       f"samples in flight")
        return out


def store_size(config: RunConfig, info: TargetInfo, request: FeatureRequest, *, num_tokens: int | None = None,
               num_samples: int | None = None) -> StoreSize:
    """The store's size for this run (the corpus's exact counts when given) and whether it fits."""
    from specforge.data.sizing import feature_cost

    store = config.components["store"]
    store_dtype = str(getattr(store.options, "dtype", "target"))
    cost = feature_cost(request, info, target_dtype=config.target.dtype, store_dtype=store_dtype)
    holdout = ""
    if num_tokens is not None and num_samples is not None:
        from specforge.data.sizing import CorpusSize

        corpus = CorpusSize(num_samples, num_tokens, True, "tokenized")
    else:
        corpus, holdout = plan_corpus(config)
    keeps_all = config.run.topology == "offline"  # the core's offline topology captures the corpus up front
    base = StoreSize(cost=cost, store_dtype=store_dtype, corpus=corpus, holdout=holdout, keeps_all=keeps_all)
    if corpus is None:
        return base
    total = cost.total(corpus.num_tokens, corpus.num_samples)
    if not keeps_all:
        return StoreSize(**{**base.__dict__, "total": total})
    where, free, have = _room(config, store)
    problem = None
    if free is not None and total - have > free:
        from specforge.data.sizing import human_bytes

        kind = "memory" if where == "memory" else f"free space in {where}"
        problem = (f"the offline {store.name} store needs {human_bytes(total)} ({corpus.label()}{total} bytes: "
                   f"{corpus.num_tokens} tokens x {cost.bytes_per_token} bytes per token"
                   + (f", {human_bytes(have)} already stored" if have else "")
                   + f") but there is {human_bytes(free)} ({free} bytes) of {kind}; shrink it with {SHRINK}")
    return StoreSize(**{**base.__dict__, "where": where, "total": total, "free": free, "problem": problem})


def check_store_space(config: RunConfig, info: TargetInfo, request: FeatureRequest, *, num_tokens: int,
                      num_samples: int) -> None:
    """Refuse a run whose offline store cannot fit (before the store opens, so nothing is written)."""
    size = store_size(config, info, request, num_tokens=num_tokens, num_samples=num_samples)
    if size.problem:
        raise ConfigError(size.problem)


def _room(config: RunConfig, store: Any) -> tuple[str, int | None, int]:
    """(where, free bytes there or None when unknown, bytes of features already there)."""
    spec = store.spec
    if getattr(spec, "persistent", False) and hasattr(store.options, "root"):
        root = Path(store.options.root).expanduser() if store.options.root else config.run_dir / "features"
        directory = root / "features"
        probe = directory
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        have = sum(f.stat().st_size for f in directory.rglob("*.safetensors")) if directory.is_dir() else 0
        return str(directory), shutil.disk_usage(probe).free, have
    if not getattr(spec, "cross_process", False) and not getattr(spec, "persistent", False):
        return "memory", _available_memory(), 0
    return f"the {store.name} store", None, 0


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def plan_corpus(config: RunConfig) -> tuple[Any, str]:
    """(the training corpus's size, the held-out split in words), torch-free; size None for the demo."""
    from specforge.data.corpus import tokenize_spec
    from specforge.data.holdout import resolve_holdout
    from specforge.data.tokenized import is_tokenized_dir

    data = config.data
    holdout = resolve_holdout(data.eval_holdout, eval_path=data.eval_path, eval_enabled=config.eval.enabled)
    if not data.path or not config.target.model:
        return None, holdout.describe()
    if is_tokenized_dir(data.path):
        return _exact(Path(data.path), holdout, data.max_samples, f"tokenized dataset {data.path}")
    from specforge.data.cache import find_cached

    spec = tokenize_spec(data, config.target.model)
    cached = find_cached(spec)
    if cached is not None:
        return _exact(cached, holdout, 0, f"tokenized cache {cached}")
    from specforge.data.sizing import CorpusSize, estimate_raw

    raw = estimate_raw(spec)
    held = holdout.count_for(raw.num_samples)
    held = round(holdout.value * raw.num_samples) if held is None else held
    share = 1 - held / raw.num_samples if raw.num_samples else 1.0
    corpus = CorpusSize(raw.num_samples - held, round(raw.num_tokens * share), False, raw.how)
    return corpus, f"{holdout.describe()}: about {held} samples"


def _exact(directory: Path, holdout: Any, limit: int, how: str) -> tuple[Any, str]:
    from specforge.data.corpus import SampleView, split_positions
    from specforge.data.sizing import CorpusSize
    from specforge.data.tokenized import TokenizedDataset

    dataset = TokenizedDataset(directory)
    try:
        usable, train, heldout = split_positions(dataset, holdout, limit)
        whole = len(dataset) - len(dataset.meta.get("excluded") or ())
        if usable < whole:
            tokens = sum(len(s.input_ids) for s in SampleView(dataset, train))
        else:
            tokens = dataset.meta["stats"]["num_tokens"] - sum(len(s.input_ids) for s in SampleView(dataset, heldout))
    finally:
        dataset.close()
    return CorpusSize(len(train), tokens, True, how), f"{holdout.describe()}: {len(heldout)} samples"
