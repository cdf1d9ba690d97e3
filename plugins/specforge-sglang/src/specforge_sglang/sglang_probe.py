"""Load an export into SGLang's own draft class and report which weights it read.

Usage: ``python -m specforge_sglang.sglang_probe EXPORT_DIR [EXPORT_DIR ...]``.

Runs where SGLang is installed (a subprocess of the export check, or the harness tests). It
sets up a one-process gloo group as SGLang's layers require, builds the draft class named in
``config.json`` on CPU with every parameter NaN, loads the export through the class's own
``load_weights`` (whole, then one tensor at a time), and prints one JSON line per directory:
``{"export_dir", "architecture", "params": {name: shape}, "loaded": {tensor: [params]}, "ignored": [tensors],
"uncovered": [params], "error": null | str}``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from specforge_sglang.draft_weights import DFLASH_ARCHITECTURE, EAGLE3_ARCHITECTURE

MODULES = {EAGLE3_ARCHITECTURE: "sglang.srt.models.llama_eagle3", DFLASH_ARCHITECTURE: "sglang.srt.models.dflash"}
FROM_TARGET = {EAGLE3_ARCHITECTURE: ("model.embed_tokens.weight",)}
"""Parameters SGLang fills from the target model when the export has none."""


def init_sglang_single_process() -> None:
    """A world of one (gloo) with SGLang's runtime context published, as its layers need even at tp=1."""
    import torch
    from sglang.srt.distributed import parallel_state
    from sglang.srt.runtime_context import SpawnRanks, get_parallel, publish, reset_context
    from sglang.srt.server_args import ServerArgs

    if not torch.distributed.is_initialized():  # an in-memory store: a world of one listens on no port
        torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
        parallel_state.init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo")
    if parallel_state.model_parallel_is_initialized():
        return
    reset_context()
    publish(ServerArgs(model_path="dummy", tp_size=1, pp_size=1, device="cpu"), role="specforge-probe",
            ranks=SpawnRanks(world_rank=0))
    get_parallel().override_permanently(world_group=parallel_state._WORLD)
    parallel_state.initialize_model_parallel(backend="gloo")


def _logical_rows(name: str, config: Any) -> int | None:
    """Rows that hold real vocabulary entries (SGLang pads vocab-parallel weights)."""
    if name.endswith("embed_tokens.weight"):
        return int(config.vocab_size)
    if name == "lm_head.weight":
        return int(getattr(config, "draft_vocab_size", None) or config.vocab_size)
    return None


def probe(export_dir: Path) -> dict[str, Any]:
    import importlib

    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(export_dir))
    arch = next(a for a in config.architectures if a in MODULES)
    init_sglang_single_process()
    cls = getattr(importlib.import_module(MODULES[arch]), arch)
    with torch.device("cpu"):
        model = cls(config)
    params = dict(model.named_parameters())

    def fill_nan() -> None:
        with torch.no_grad():
            for p in params.values():
                p.fill_(float("nan"))

    def nan_counts() -> dict[str, int]:
        return {n: int(p.isnan().sum()) for n, p in params.items()}

    tensors = {n: t.float() if t.is_floating_point() else t
               for n, t in load_file(str(export_dir / "model.safetensors")).items()}
    # 1. The whole checkpoint at once, as SGLang loads it: its own checks run, then coverage.
    fill_nan()
    model.load_weights(list(tensors.items()))
    uncovered = []
    for name, p in params.items():
        if name in FROM_TARGET.get(arch, ()):
            continue
        rows = _logical_rows(name, config)
        region = p[:rows] if rows is not None else p
        if bool(region.isnan().any()):
            uncovered.append(name)
    # 2. One tensor at a time: which parameters each name reaches (completeness checks that
    # fire on a partial checkpoint are expected here and ignored; step 1 passed them).
    fill_nan()
    loaded: dict[str, list[str]] = {}
    ignored: list[str] = []
    for name, tensor in tensors.items():
        before = nan_counts()
        hot_before = getattr(model, "hot_token_id", None)
        with contextlib.suppress(ValueError):
            model.load_weights([(name, tensor)])
        after = nan_counts()
        touched = [n for n in params if after[n] != before[n]]
        if getattr(model, "hot_token_id", None) is not hot_before:
            touched.append("hot_token_id")
        if touched:
            loaded[name] = touched
        else:
            ignored.append(name)
    return {"architecture": arch, "params": {n: list(p.shape) for n, p in params.items()}, "loaded": loaded,
            "ignored": ignored, "uncovered": uncovered, "error": None}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m specforge_sglang.sglang_probe EXPORT_DIR [EXPORT_DIR ...]", file=sys.stderr)
        return 2
    for arg in args:  # one JSON line per directory, in order
        try:
            result = probe(Path(arg))
        except Exception as exc:  # reported as the verdict: SGLang refuses this draft
            traceback.print_exc(file=sys.stderr)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"export_dir": arg, **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
