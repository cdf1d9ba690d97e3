"""Would compressing the disk store's feature files pay? Bytes per token and read speed, with and without.

    python benchmarks/store_compression.py                    # 64 demo samples, EAGLE3's features
    python benchmarks/store_compression.py --samples 256 --levels 1,3,9

Captures real features (the demo target through the hf engine, EAGLE3's request: three layers
and the last hidden state) for held-out-free demo training samples, serializes each sample the
way the disk store writes it (one safetensors file: features plus ``input_ids`` and
``loss_mask``), in the target's dtype and in bfloat16 (``store.dtype``), and compresses each file
with zstd (``zstandard``) at the given levels. Prints per row: bytes per token, the size against
the uncompressed file, and the read throughput (MiB of uncompressed file per second: decompress +
deserialize, against deserializing the plain bytes), best of ``--repeats``. In memory: disk speed
is not measured, only what compression itself costs and saves.
"""

from __future__ import annotations

import argparse
import json
import time


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--levels", default="1,3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    import zstandard
    from safetensors.torch import load, save

    from specforge.contracts import FeatureRequest
    from specforge.data import load_samples, load_tokenizer
    from specforge.demo.assets import ensure_demo_assets
    from specforge.engines.hf import HFEngine

    torch.set_num_threads(1)
    assets = ensure_demo_assets(progress=False)
    engine = HFEngine(model_path=str(assets.target_dir), dtype="float32", device="cpu")
    info = engine.info()
    tokenizer = load_tokenizer(assets.tokenizer_dir)
    samples = load_samples(str(assets.train_path), tokenizer, max_length=256, max_samples=args.samples).samples
    layers = (1, info.num_layers // 2 - 1, info.num_layers - 4)  # EAGLE3's default rule
    features = engine.capture(samples, FeatureRequest(layers=layers, last_hidden=True))
    engine.close()
    tokens = sum(len(s.input_ids) for s in samples)

    rows = []
    for dtype in ("float32", "bfloat16"):
        files = []
        for sample, feats in zip(samples, features):
            tensors = {k: (v.to(getattr(torch, dtype)) if v.is_floating_point() else v).contiguous()
                       for k, v in feats.items()}
            tensors["input_ids"] = torch.tensor(sample.input_ids, dtype=torch.int64)
            tensors["loss_mask"] = torch.tensor(sample.loss_mask, dtype=torch.int64)
            files.append(save(tensors))
        plain = sum(len(f) for f in files)
        read_plain = best(lambda files=files: [load(f) for f in files], args.repeats)
        rows.append({"dtype": dtype, "codec": "none", "bytes_per_token": plain / tokens, "size": 1.0,
                     "read_mib_s": plain / 2**20 / read_plain})
        for level in (int(x) for x in args.levels.split(",")):
            compressed = [zstandard.ZstdCompressor(level=level).compress(f) for f in files]
            size = sum(len(c) for c in compressed)
            decompressor = zstandard.ZstdDecompressor()
            seconds = best(lambda d=decompressor, cs=compressed: [load(d.decompress(c)) for c in cs], args.repeats)
            rows.append({"dtype": dtype, "codec": f"zstd-{level}", "bytes_per_token": size / tokens,
                         "size": size / plain, "read_mib_s": plain / 2**20 / seconds})
    if args.json:
        print(json.dumps({"samples": len(samples), "tokens": tokens, "rows": rows}, indent=2))
        return
    print(f"{len(samples)} demo samples, {tokens} tokens, EAGLE3 features (layers {layers} + last hidden)")
    print(f"{'dtype':>9} {'codec':>7} {'bytes/token':>11} {'size':>6} {'read MiB/s':>10}")
    for r in rows:
        print(f"{r['dtype']:>9} {r['codec']:>7} {r['bytes_per_token']:>11.0f} {r['size']:>6.2f} "
              f"{r['read_mib_s']:>10.0f}")


if __name__ == "__main__":
    main()
