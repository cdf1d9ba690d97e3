"""The embedded default: synthetic data, tokenizer and tiny target, built once into the cache.

``ensure_demo_assets()`` returns the paths, building them on first use (about 3-4 minutes on
two CPU cores) under ``<cache>/demo-<version>/``. ``demo_target_info()`` describes the target
without building or importing anything heavy, for ``specforge run --plan``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specforge.contracts import SpecialTokens, TargetInfo
from specforge.demo import recipe
from specforge.demo.cache import build_once, default_cache_dir

log = logging.getLogger(__name__)

MANIFEST = "specforge_demo_manifest.json"  # written last: its presence means the build is complete
MASK_TOKEN_ID = list(recipe.SPECIAL_TOKENS).index("mask")
PAD_TOKEN_ID = list(recipe.SPECIAL_TOKENS).index("pad")
EOS_TOKEN_ID = list(recipe.SPECIAL_TOKENS).index("eos")
# Build phases, in order, as recorded under "seconds" (target_eval includes any extra training rounds).
PHASES = ("data", "tokenizer", "target_train", "target_eval", "target_save", "regenerate", "total")


@dataclass(frozen=True)
class DemoAssets:
    """Where the built demo lives, and how good its target is."""

    root: Path
    target_dir: Path  # HF model dir: config.json, model.safetensors, tokenizer files
    tokenizer_dir: Path
    train_path: Path  # conversations JSONL (OpenAI messages): what the target was trained on
    regenerated_path: Path  # the same conversations with the target's own greedy answers (for drafts)
    heldout_path: Path
    accuracy: float  # held-out exact-match accuracy of the target's greedy answers
    manifest: Mapping[str, Any] = field(default_factory=dict)
    built_now: bool = False  # this call built them (False: a cached build was reused)


def demo_root(cache_dir: Path | str | None = None) -> Path:
    """``<cache>/demo-<version>`` (``-quick`` after it for the tests' recipe); the cache defaults to
    ``$SPECFORGE_CACHE_DIR``."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    name = recipe.recipe_name()
    return base / f"demo-{recipe.DEMO_VERSION}{'' if name == 'full' else '-' + name}"


def _layout(root: Path) -> dict[str, Path]:
    return {"target_dir": root / "target", "tokenizer_dir": root / "tokenizer",
            "train_path": root / "data" / "train.jsonl", "heldout_path": root / "data" / "heldout.jsonl",
            "regenerated_path": root / "data" / "train_regenerated.jsonl"}


def demo_target_info(cache_dir: Path | str | None = None) -> TargetInfo:
    """The demo target's shape from the recipe alone: no build, no torch."""
    shape = recipe.TARGET_SHAPE
    return TargetInfo(
        model_path=str(_layout(demo_root(cache_dir))["target_dir"]), model_type="qwen3",
        num_layers=shape.num_hidden_layers, hidden_size=shape.hidden_size, vocab_size=shape.vocab_size,
        num_attention_heads=shape.num_attention_heads, num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim, intermediate_size=shape.intermediate_size, rms_norm_eps=shape.rms_norm_eps,
        max_position_embeddings=shape.max_position_embeddings, config=dataclasses.asdict(shape),
        special_tokens=SpecialTokens(mask=MASK_TOKEN_ID, pad=PAD_TOKEN_ID, eos=EOS_TOKEN_ID,
                                     tokenizer_size=shape.vocab_size),
    )


def ensure_demo_assets(cache_dir: Path | str | None = None, *, progress: bool = True,
                       force: bool = False) -> DemoAssets:
    """Return the demo assets, building them first if no complete build is cached.

    Safe to call from several processes at once: one builds, the others wait and reuse it.
    """
    root = demo_root(cache_dir)
    built = build_once(root, MANIFEST, lambda tmp: build_demo(tmp, progress=progress), force=force)
    if built:
        log.info("built the demo assets in %s", root)
    return dataclasses.replace(load_demo_assets(root), built_now=built)


def load_demo_assets(root: Path) -> DemoAssets:
    """Read a complete build's manifest into ``DemoAssets``."""
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root} holds no complete demo build (no {MANIFEST}); "
                                "run `specforge demo build` to build it")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return DemoAssets(root=root, accuracy=float(manifest["target"]["accuracy"]), manifest=manifest,
                      **_layout(root))


# ------------------------------------------------------------------------------------ build

def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def _phase(seconds: dict[str, float], name: str) -> Any:
    start = time.perf_counter()
    log.info("demo build: %s ...", name)
    yield
    seconds[name] = round(time.perf_counter() - start, 2)
    log.info("demo build: %s done in %.1f s", name, seconds[name])


def build_data_and_tokenizer(root: Path, seconds: dict[str, float] | None = None) -> dict[str, str]:
    """Write the two splits and train the tokenizer under ``root``; returns their sha256 hashes."""
    from specforge.demo.tasks import build_splits, write_jsonl
    from specforge.demo.tokenizer import train_tokenizer

    seconds = {} if seconds is None else seconds
    paths = _layout(root)
    with _phase(seconds, "data"):
        train, heldout = build_splits(recipe.SEED, recipe.TRAIN_PER_TASK, recipe.HELDOUT_PER_TASK)
        write_jsonl(train, paths["train_path"])
        write_jsonl(heldout, paths["heldout_path"])
    with _phase(seconds, "tokenizer"):
        train_tokenizer(train, paths["tokenizer_dir"], recipe.DEMO_VOCAB_SIZE)
    return {"train.jsonl": sha256(paths["train_path"]), "heldout.jsonl": sha256(paths["heldout_path"]),
            "tokenizer.json": sha256(paths["tokenizer_dir"] / "tokenizer.json")}


def build_demo(root: Path, *, progress: bool = True) -> None:
    """Build everything into ``root`` (normally a temp dir), the manifest last."""
    from specforge.demo.regenerate import regenerate_with_target
    from specforge.demo.target_build import torch_threads, train_and_save_target

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    train_recipe = recipe.train_recipe()
    hashes = build_data_and_tokenizer(root, seconds)
    paths = _layout(root)
    report = train_and_save_target(paths["tokenizer_dir"], paths["train_path"], paths["heldout_path"],
                                   paths["target_dir"], seconds=seconds, progress=progress,
                                   recipe=train_recipe)
    hashes["model.safetensors"] = report["hashes"]["model.safetensors"]
    with _phase(seconds, "regenerate"), torch_threads(report["threads"]):
        regenerated = regenerate_with_target(
            paths["target_dir"], paths["train_path"], paths["regenerated_path"],
            batch_size=recipe.REGENERATE_BATCH_SIZE, max_new_tokens=train_recipe.eval_max_new_tokens)
    hashes["train_regenerated.jsonl"] = sha256(paths["regenerated_path"])
    manifest = {
        "version": recipe.DEMO_VERSION, "recipe": recipe.recipe_name(), "seed": recipe.SEED, "hashes": hashes,
        "threads": report["threads"], "regenerated": regenerated,
        "seconds": {**seconds, "total": round(time.perf_counter() - start, 2)},
        "target": {key: report[key] for key in ("accuracy", "per_task", "steps", "heldout_size")},
        "shape": dataclasses.asdict(recipe.TARGET_SHAPE),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
