"""Every data format reads to the same conversations, lazily; a folder that is no dataset is refused."""

from __future__ import annotations

import gzip
import json

import pytest

from specforge.data import DataError, load_samples
from specforge.data.reader import LineSink, read_conversations

ROWS = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"What is {i}+{i}?"},
                                    {"role": "assistant", "content": f"It is {2 * i}."}]} for i in range(6)]
ROWS[2]["tools"] = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]


def read(path, skip=False):
    return list(read_conversations(path, LineSink(skip)))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gzip_zstd_parquet_and_a_datasets_folder_read_like_the_jsonl(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    plain = read(write_jsonl(tmp_path / "chats.jsonl", ROWS))
    text = (tmp_path / "chats.jsonl").read_bytes()
    with gzip.open(tmp_path / "chats.jsonl.gz", "wb") as f:
        f.write(text)
    (tmp_path / "chats.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    columns = [{**r, "tools": r.get("tools")} for r in ROWS]  # a column only one row fills: nulls elsewhere
    pq.write_table(pa.Table.from_pylist(columns), tmp_path / "chats.parquet")
    datasets.Dataset.from_list(columns).save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(columns),
                          "test": datasets.Dataset.from_list(ROWS[:1])}).save_to_disk(str(tmp_path / "splits"))

    def content(convs):
        return [(c.conv_id, c.messages, c.tools) for c in convs]

    assert len(plain) == 6 and plain[2].tools and not plain[0].tools
    for name in ("chats.jsonl.gz", "chats.jsonl.zst", "chats.parquet", "saved", "splits"):
        assert content(read(tmp_path / name)) == content(plain), name


def test_default_ids_drop_the_compression_suffix_and_count_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{k: v for k, v in r.items() if k != "id"} for r in ROWS[:2]]
    with gzip.open(tmp_path / "chats.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    assert [c.conv_id for c in read(tmp_path / "chats.jsonl.gz")] == ["chats-1", "chats-2"]
    assert [c.source for c in read(tmp_path / "rows.parquet")] == [f"{tmp_path / 'rows.parquet'}:1",
                                                                   f"{tmp_path / 'rows.parquet'}:2"]


def test_a_bad_compressed_line_names_file_and_line(tmp_path):
    with gzip.open(tmp_path / "bad.jsonl.gz", "wt") as f:
        f.write(json.dumps(ROWS[0]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz:2: invalid JSON"):
        read(tmp_path / "bad.jsonl.gz")
    assert len(read(tmp_path / "bad.jsonl.gz", skip=True)) == 1


def test_a_folder_that_is_not_a_dataset_is_refused_in_one_line(tmp_path, chatml):
    (tmp_path / "notes").mkdir()
    with pytest.raises(DataError, match=r"is a directory but not a dataset saved with save_to_disk"):
        load_samples(tmp_path / "notes", chatml, max_length=64)


def test_a_datasets_dict_without_a_train_split_names_its_splits(tmp_path):
    import datasets

    datasets.DatasetDict({"a": datasets.Dataset.from_list(ROWS), "b": datasets.Dataset.from_list(ROWS)}).save_to_disk(
        str(tmp_path / "d"))
    with pytest.raises(DataError, match=r"splits a, b and none is called 'train'"):
        read(tmp_path / "d")
    assert len(read(tmp_path / "d" / "b")) == 6


def test_reading_is_lazy(tmp_path):
    path = write_jsonl(tmp_path / "chats.jsonl", ROWS)
    with path.open("a") as f:
        f.write("{not json\n")
    first = next(iter(read_conversations(path, LineSink(False))))  # the bad last line is never reached
    assert first.conv_id == "r0"
