"""Cost of getting captured features out of SGLang: JSON float lists vs the capture class's binary files.

Run in the SGLang test venv (plugins/specforge-sglang/harness/build_venv.sh):

    .venv-sglang/bin/python benchmarks/sglang_capture_transport.py --hidden 1024 --seq-lens 128,512,1024

One in-process SGLang engine serves a random tiny Qwen3 (``--hidden`` wide, ``--layers``
deep) that captures three layers plus the final hidden state, i.e. 4 x hidden floats per
token. Each prompt batch is sent three ways through the same engine, so the forward pass is
identical and only the transport differs:

* ``prefill``: no features at all (the compute floor);
* ``json``: ``return_hidden_states`` -- SGLang's scheduler turns the rows into Python float
  lists, pickles them to the tokenizer process, and (over HTTP) JSON-encodes them;
* ``shm``: the capture class writes the rows as raw bytes to /dev/shm; the engine reads them
  with one ``torch.from_file``.

For each sequence length it prints seconds per batch (fastest of ``--repeats``, the three ways
interleaved so noise from a shared machine hits them alike), captured
tokens per second, the feature bytes per token in binary and as JSON text (what an HTTP
client receives), and the speed-up of shm over json. CPU numbers here; the ratio is what
carries over (on a GPU the forward gets ~100x faster, the JSON conversion does not).
The target is built (random, offline) on CPU either way; ``--device cuda`` runs SGLang on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

CAPTURED = (0, 1, 2)  # three layers, as EAGLE3 captures


def build_target(root: Path, hidden: int, layers: int) -> Path:
    from specforge.testing.tiny_models import make_tiny_target

    heads = max(1, hidden // 64)
    return make_tiny_target(root / "target", arch="qwen3", num_layers=layers, hidden=hidden, heads=heads,
                            kv_heads=max(1, heads // 2), max_positions=4096, seed=0)


def timed_round_robin(fns: dict, repeats: int) -> dict[str, float]:
    """Fastest of ``repeats`` runs per function, interleaved so machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seq-lens", default="128,512,1024")
    parser.add_argument("--batch", type=int, default=4, help="prompts per request batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cpu", help="cpu (the harness venv) or cuda (a GPU machine)")
    args = parser.parse_args(argv)

    import torch

    from specforge_sglang.capture_plan import RID_PREFIX
    from specforge_sglang.engine import SGLangEngine
    from specforge_sglang.options import SGLangEngineOptions
    from specforge_sglang.transport import read_rows, rows_from_json

    seq_lens = [int(s) for s in args.seq_lens.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        target = build_target(Path(tmp), args.hidden, args.layers)
        engine = SGLangEngine(SGLangEngineOptions(capture_layers=CAPTURED, batch_size=args.batch,
                                                  max_total_tokens=max(16384, 2 * args.batch * max(seq_lens))),
                              model_path=str(target), dtype=args.dtype, device=args.device)
        try:
            plan = engine._ensure(CAPTURED)
            backend = engine._backend
            dtype = getattr(torch, args.dtype)
            width = plan.num_blocks * args.hidden
            gen = torch.Generator().manual_seed(0)
            counter = iter(range(10**9))
            params = {"temperature": 0.0, "max_new_tokens": 1}
            results = []
            for n in seq_lens:
                prompts = [torch.randint(0, 256, (n,), generator=gen).tolist() for _ in range(args.batch)]
                json_bytes = []

                def prefill(prompts=prompts) -> None:
                    backend.generate(prompts, [params] * len(prompts), rids=[f"plain-{next(counter)}" for _ in prompts])

                def via_json(prompts=prompts, json_bytes=json_bytes) -> None:
                    rids = [f"plain-{next(counter)}" for _ in prompts]
                    outs = backend.generate(prompts, [params] * len(prompts), rids=rids, return_hidden_states=True)
                    for rid, p, out in zip(rids, prompts, outs):
                        hs = out["meta_info"]["hidden_states"]
                        rows_from_json(hs, rid=rid, num_tokens=len(p), width=width, dtype=dtype)
                        if not json_bytes:
                            json_bytes.append(len(json.dumps(hs[0])) / len(p))

                def via_shm(prompts=prompts) -> None:
                    rids = [f"{RID_PREFIX}bench-{next(counter)}" for _ in prompts]
                    backend.generate(prompts, [params] * len(prompts), rids=rids)
                    for rid, p in zip(rids, prompts):
                        read_rows(plan.shm_dir, rid, num_tokens=len(p), width=width, dtype=dtype)

                prefill()  # warm up this length
                row = {"seq_len": n, "batch": args.batch, "hidden": args.hidden, "floats_per_token": width}
                best = timed_round_robin({"prefill": prefill, "json": via_json, "shm": via_shm}, args.repeats)
                row.update({f"{name}_s": round(t, 4) for name, t in best.items()})
                tokens = n * args.batch
                row["json_tokens_per_s"] = round(tokens / row["json_s"], 1)
                row["shm_tokens_per_s"] = round(tokens / row["shm_s"], 1)
                row["binary_bytes_per_token"] = width * torch.empty((), dtype=dtype).element_size()
                row["json_bytes_per_token"] = round(json_bytes[0])
                row["transport_json_s"] = round(row["json_s"] - row["prefill_s"], 4)
                row["transport_shm_s"] = round(row["shm_s"] - row["prefill_s"], 4)
                row["speedup_shm_over_json"] = round(row["json_s"] / row["shm_s"], 2)
                results.append(row)
                print(json.dumps(row), flush=True)
        finally:
            engine.close()

    print(f"\n{'seq':>6} {'prefill s':>10} {'json s':>9} {'shm s':>9} {'json B/tok':>11} {'bin B/tok':>10} "
          f"{'shm vs json':>12}", file=sys.stderr)
    for r in results:
        print(f"{r['seq_len']:>6} {r['prefill_s']:>10.3f} {r['json_s']:>9.3f} {r['shm_s']:>9.3f} "
              f"{r['json_bytes_per_token']:>11} {r['binary_bytes_per_token']:>10} "
              f"{r['speedup_shm_over_json']:>11.2f}x", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
