"""`specforge capture`: the capture phase alone, for what a strategy requests, with a summary."""

from __future__ import annotations

import json
import struct

import pytest

from specforge.testing.cli import run_specforge


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from specforge.testing.tiny_models import make_tiny_target

    root = tmp_path_factory.mktemp("cap")
    make_tiny_target(root / "target", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0)
    data = root / "chats.jsonl"
    data.write_text("".join(json.dumps({"id": f"s{i}", "messages": [
        {"role": "user", "content": f"repeat {i} twice"},
        {"role": "assistant", "content": f"{i} {i}"}]}) + "\n" for i in range(5)))
    return root / "target", data


def tensor_bytes_in(path) -> int:
    """Bytes of tensor data in a safetensors file: its size minus the 8-byte length and the header."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    return len(raw) - 8 - header_len


def test_capture_writes_exactly_the_requested_tensors(tiny, tmp_path):
    target, data = tiny
    out = tmp_path / "store"
    proc = run_specforge("capture", "--strategy", "example-medusa", "--data", str(data), "--target-model", str(target),
                         "--store", "disk", "--output-dir", str(out), "--set", "data.eval_holdout=0")
    assert "captured input_ids, loss_mask, last_hidden for strategy example-medusa" in proc.stdout
    files = sorted(out.rglob("*.safetensors"))
    assert len(files) == 5
    from transformers import AutoTokenizer

    from specforge.data import load_samples

    samples = load_samples(str(data), AutoTokenizer.from_pretrained(str(target)), max_length=512).samples
    hidden = 32
    expected = sum(len(s.input_ids) * (8 + 8 + hidden * 4) for s in samples)  # int64 ids, int64 mask, fp32 [S, H]
    assert sum(tensor_bytes_in(f) for f in files) == expected
    assert f"bytes    {expected} " in proc.stdout
    others = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".safetensors"]
    assert {p.name for p in others} <= {"manifest.jsonl", "store.json"}, others


def test_a_second_capture_reuses_what_the_store_holds(tiny, tmp_path):
    target, data = tiny
    args = ("capture", "--strategy", "example-medusa", "--data", str(data), "--target-model", str(target),
            "--output-dir", str(tmp_path / "store"))
    run_specforge(*args)
    again = run_specforge(*args)
    # the held-out split (2%, at least one of the five) is evaluated on, never trained on: not captured
    assert "samples  4 (0 captured, 4 already in the store)" in again.stdout


def test_capture_rejects_a_missing_target_dir(tiny, tmp_path):
    _, data = tiny
    proc = run_specforge("capture", "--strategy", "example-medusa", "--data", str(data), "--target-model",
                         str(tmp_path / "nope"), "--output-dir", str(tmp_path / "s"), check=False)
    assert proc.returncode == 2
    assert "nope" in proc.stderr and "does not exist" in proc.stderr
