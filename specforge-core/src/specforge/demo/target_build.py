"""The target phase of the demo build: train until accurate enough, then save a normal HF dir."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from specforge.demo import recipe as demo_recipe
from specforge.demo.recipe import TargetShape, TrainRecipe

log = logging.getLogger(__name__)

REPORT = "specforge_demo.json"


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads and a forked RNG, restoring both after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(before)


def new_trainer(tokenizer_dir: Path, train_path: Path, *, seed: int = demo_recipe.SEED,
                shape: TargetShape = demo_recipe.TARGET_SHAPE,
                recipe: TrainRecipe = demo_recipe.TRAIN_RECIPE) -> Any:
    """A fresh seeded target and its trainer over the train split; ``.run(n)`` trains n steps."""
    from transformers import AutoTokenizer

    from specforge.demo.target import TargetTrainer, build_model, encode
    from specforge.demo.tasks import read_jsonl

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    examples = encode(tokenizer, read_jsonl(train_path))
    model = build_model(shape, seed)
    return TargetTrainer(model, examples, recipe, seed)


def train_and_save_target(tokenizer_dir: Path, train_path: Path, heldout_path: Path, target_dir: Path,
                          *, seconds: dict[str, float] | None = None, progress: bool = True,
                          recipe: TrainRecipe = demo_recipe.TRAIN_RECIPE) -> dict[str, Any]:
    """Train the demo target until its held-out accuracy reaches ``recipe.min_accuracy``; save it.

    Returns the report also written to ``target_dir/specforge_demo.json``.
    """
    import torch
    from transformers import AutoTokenizer

    from specforge.demo.accuracy import measure_accuracy
    from specforge.demo.tasks import read_jsonl

    seconds = {} if seconds is None else seconds
    heldout = read_jsonl(heldout_path)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    # Never more threads than the process was given: on a busy machine (OMP_NUM_THREADS=1, as the
    # test suite sets) a second thread that waits for a core makes each step 10-30x slower.
    threads = max(1, min(recipe.threads, torch.get_num_threads()))
    with torch_threads(threads):
        start = time.perf_counter()
        trainer = new_trainer(tokenizer_dir, train_path, recipe=recipe)
        with _progress_bar(recipe.steps, progress) as bar:
            trainer.run(recipe.steps, bar)
        seconds["target_train"] = round(time.perf_counter() - start, 2)

        start = time.perf_counter()
        accuracy = measure_accuracy(trainer.model, tokenizer, heldout, recipe.eval_max_new_tokens)
        log.info("demo target: held-out accuracy %.3f after %d steps", accuracy.overall, trainer.step_count)
        for _ in range(recipe.extra_rounds):
            if accuracy.overall >= recipe.min_accuracy:
                break
            trainer.run(recipe.extra_steps)
            accuracy = measure_accuracy(trainer.model, tokenizer, heldout, recipe.eval_max_new_tokens)
            log.info("demo target: held-out accuracy %.3f after %d steps", accuracy.overall,
                     trainer.step_count)
        seconds["target_eval"] = round(time.perf_counter() - start, 2)
    if accuracy.overall < recipe.min_accuracy:
        raise RuntimeError(
            f"the demo target reached only {accuracy.overall:.3f} held-out accuracy after "
            f"{trainer.step_count} steps (needs {recipe.min_accuracy}); the recipe in "
            "specforge/demo/recipe.py needs more steps or a higher learning rate"
        )

    start = time.perf_counter()
    target_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(target_dir), safe_serialization=True)
    _add_legacy_rope_theta(target_dir / "config.json")
    for item in sorted(tokenizer_dir.iterdir()):
        shutil.copy2(item, target_dir / item.name)
    report = {
        "accuracy": accuracy.overall, "per_task": accuracy.per_task, "heldout_size": accuracy.count,
        "steps": trainer.step_count, "min_accuracy": recipe.min_accuracy, "threads": threads,
        "seconds": {k: seconds[k] for k in ("target_train", "target_eval")},
        "recipe": dataclasses.asdict(recipe),
        "hashes": {"model.safetensors": _sha256(target_dir / "model.safetensors")},
    }
    (target_dir / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    seconds["target_save"] = round(time.perf_counter() - start, 2)
    return report


def _add_legacy_rope_theta(config_path: Path) -> None:
    """Also write ``rope_theta`` at the top level, where transformers 4.x and engines read it.

    transformers 5 saves it only inside ``rope_parameters``; an older reader would silently
    fall back to Qwen3's default (1e6) and compute different positions.
    """
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["rope_theta"] = config["rope_parameters"]["rope_theta"]
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar, the log still says what happens
        yield None
        return
    # disable=None: a bar on a terminal, nothing in a CI log.
    with tqdm(total=total, desc="demo target", unit="step", leave=False, disable=None) as bar:
        yield bar
