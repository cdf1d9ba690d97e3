"""The tokenized dataset: what load_samples computes, on disk, read one sample at a time."""

from __future__ import annotations

import json

import pytest

from specforge.data import DataError, compute_stats, load_samples
from specforge.data.build import build_tokenized
from specforge.data.identity import TokenizeSpec
from specforge.data.tokenized import TokenizedDataset


def chats(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"q{i}", "messages": [{"role": "user", "content": f"Count to {i % 9}"},
                                         {"role": "assistant", "content": " ".join(["one"] * (1 + i % 9))}]}
            for i in range(start, start + n)]


def spec_for(path, model_dir, **kw) -> TokenizeSpec:
    return TokenizeSpec(sources=(str(path),), model_dir=str(model_dir), max_length=kw.pop("max_length", 64), **kw)


def test_random_access_returns_exactly_the_samples_load_samples_makes(chatml, chatml_dir, write_jsonl, tmp_path):
    path = write_jsonl(chats(40))
    dataset = build_tokenized(spec_for(path, chatml_dir), chatml, tmp_path / "ds", shard_tokens=200)
    assert len(dataset.shards) > 3, "small shards: samples span several files"
    expected = {s.sample_id: s for s in load_samples(path, chatml, max_length=64).samples}
    assert len(dataset) == 40
    assert [dataset[i] for i in range(40)] == [expected[f"q{i}"] for i in range(40)], "file order, same tokens"
    assert dataset[-1] == expected["q39"]
    assert dataset.stats() == compute_stats(expected.values())
    assert list(dataset.ids()) == [f"q{i}" for i in range(40)]


def test_shards_are_plain_safetensors_files(chatml, chatml_dir, write_jsonl, tmp_path):
    from safetensors import safe_open

    dataset = build_tokenized(spec_for(write_jsonl(chats(5)), chatml_dir), chatml, tmp_path / "ds")
    with safe_open(str(tmp_path / "ds" / dataset.shards[0].file), framework="numpy") as f:
        offsets, ids, mask = f.get_tensor("offsets"), f.get_tensor("input_ids"), f.get_tensor("loss_mask")
        names = bytes(f.get_tensor("sample_ids")).decode()
    first = dataset[0]
    assert tuple(ids[offsets[0]:offsets[1]].tolist()) == first.input_ids
    assert tuple(mask[offsets[0]:offsets[1]].tolist()) == first.loss_mask
    assert names.startswith("q0q1q2")


def test_metadata_names_tokenizer_template_and_max_length(chatml, chatml_dir, write_jsonl, tmp_path):
    build_tokenized(spec_for(write_jsonl(chats(3)), chatml_dir, max_length=32), chatml, tmp_path / "ds")
    meta = json.loads((tmp_path / "ds" / "tokenized.json").read_text())
    assert meta["max_length"] == 32
    assert len(meta["tokenizer"]["sha256"]) == 64
    assert meta["chat_template"]["source"] == "tokenizer" and len(meta["chat_template"]["sha256"]) == 64
    assert meta["stats"]["num_samples"] == 3


def test_worker_processes_write_the_same_dataset(chatml, chatml_dir, write_jsonl, tmp_path):
    spec = spec_for(write_jsonl(chats(300)), chatml_dir)
    one = build_tokenized(spec, chatml, tmp_path / "one", workers=1)
    two = build_tokenized(spec, chatml, tmp_path / "two", workers=2)
    for info in one.shards:
        assert (tmp_path / "one" / info.file).read_bytes() == (tmp_path / "two" / info.file).read_bytes()
    assert one.stats() == two.stats()


def test_a_duplicate_id_fails_naming_both_lines(chatml, chatml_dir, write_jsonl, tmp_path):
    path = write_jsonl(chats(3) + chats(1, start=1))
    with pytest.raises(DataError, match=r"chats\.jsonl:4: duplicate id 'q1' \(first seen at .*chats\.jsonl:2\)"):
        build_tokenized(spec_for(path, chatml_dir), chatml, tmp_path / "ds")


def test_skipped_duplicates_are_excluded_from_the_usable_samples_and_statistics(chatml, chatml_dir, write_jsonl,
                                                                                 tmp_path):
    path = write_jsonl(chats(3) + chats(1, start=1))
    dataset = build_tokenized(spec_for(path, chatml_dir, skip_bad_lines=True), chatml, tmp_path / "ds")
    assert dataset.meta["excluded"] == [3]
    assert dataset.stats() == compute_stats(load_samples(write_jsonl(chats(3), "three.jsonl"), chatml,
                                                         max_length=64).samples)
    assert dataset.meta["report"]["totals"]["skipped_lines"] == 1


def test_max_samples_keeps_the_first_usable_conversations(chatml, chatml_dir, write_jsonl, tmp_path):
    dataset = build_tokenized(spec_for(write_jsonl(chats(10)), chatml_dir, max_samples=4), chatml, tmp_path / "ds")
    assert list(dataset.ids()) == ["q0", "q1", "q2", "q3"]


def test_an_unfinished_or_foreign_folder_is_not_opened(tmp_path):
    (tmp_path / "tokenized.json").write_text(json.dumps({"format": "other", "version": 9}))
    with pytest.raises(DataError, match="prepare the data again"):
        TokenizedDataset(tmp_path)
