"""``specforge run --strategy eagle3 --target-engine sglang`` trains end to end on CPU through SGLang.

The run starts SGLang in its own process (the in-process engine, as a user gets by default),
captures into the disk store, trains a few steps, exports with ``--format sglang`` (judged by
the export check, which here also loads the export into SGLang's own EAGLE3 class) and
evaluates by speculative decoding with the lossless check. The stored features must equal the
hf engine's for the same tokens, and nothing the run starts (SGLang's processes included) may
listen beyond loopback.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from harness_settings import DEVICE, TOLERANCE
from safetensors.torch import load_file

from specforge.contracts import FeatureRequest, Sample
from specforge.testing.cli import run_specforge
from specforge.testing.sockets import SocketSampler, describe

EAGLE3_LAYERS = (1, 3, 4)  # EAGLE3's default rule on an 8-layer target: [1, L//2-1, L-4]


def write_chats(path: Path, n: int = 12, start: int = 0) -> Path:
    lines = []
    for i in range(start, start + n):
        a, b = i % 7, (i * 3) % 5
        lines.append({"id": f"c{i}", "messages": [{"role": "user", "content": f"add {a} and {b}"},
                                                   {"role": "assistant", "content": f"{a} plus {b} is {a + b}"}]})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_eagle3_trains_through_sglang_with_the_hf_engines_features(harness_target_dir: Path, hf_engine,
                                                                   tmp_path: Path) -> None:
    data = write_chats(tmp_path / "chats.jsonl")
    # Evaluation prompts of their own: no held-out split, so the 12 chats are the training set; the
    # 3 planned steps of 2 read 6 of them, and only those 6 are captured.
    eval_prompts = write_chats(tmp_path / "eval.jsonl", n=2, start=12)
    with SocketSampler() as sockets:  # the run, SGLang's scheduler process and its torch.distributed store
        run_specforge(
            "run", "--strategy", "eagle3", "--target-engine", "sglang", "--target-model", str(harness_target_dir),
            "--data", str(data), "--output-dir", str(tmp_path / "runs"), "--name", "eagle3-sglang",
            "--set", f"target.device={DEVICE}", "--set", "training.batch_size=2", "--set", "training.max_steps=3",
            "--set", "strategy.draft_vocab_size=64", "--set", "export.format=sglang",
            "--set", "eval.num_prompts=2", "--set", "eval.max_new_tokens=8",
            "--set", f"data.eval_path={eval_prompts}", "--set", "target_engine.batch_size=4", timeout=900)
    assert sockets.samples > 3 and not sockets.exposed(), describe(sockets.exposed())
    run_dir = tmp_path / "runs" / "eagle3-sglang"

    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    export_config = json.loads((run_dir / "export" / "config.json").read_text())
    assert export_config["architectures"] == ["LlamaForCausalLMEagle3"]
    assert json.loads((run_dir / "eval.json").read_text())["lossless_checked"] is True

    files = sorted((run_dir / "features").rglob("*.safetensors"))
    stems = [f.stem.split(".")[0] for f in files]
    assert len(files) == 6 and len(set(stems)) == 6, stems
    assert set(stems) <= {f"c{i}" for i in range(12)}, stems
    stored = [load_file(str(f)) for f in files]
    samples = [Sample(f.stem, tuple(s["input_ids"].tolist()), tuple(s["loss_mask"].tolist()))
               for f, s in zip(files, stored)]
    want = hf_engine.capture(samples, FeatureRequest(layers=EAGLE3_LAYERS, last_hidden=True))
    for got, ref in zip(stored, want):
        for name in ("hidden_states", "last_hidden"):
            torch.testing.assert_close(got[name], ref[name].cpu(), atol=TOLERANCE, rtol=TOLERANCE)
