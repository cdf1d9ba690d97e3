"""A run's corpus: tokenized once into the cache and reused, never reused for another tokenizer,
template or max_length; the held-out split decided by each sample's id."""

from __future__ import annotations

import json
import shutil

import pytest

from specforge.config import DataSection
from specforge.data import DataError, compute_stats, load_samples
from specforge.data.corpus import open_corpus, prompt_before_last_reply, split_corpus
from specforge.data.holdout import AUTO_MAX, Holdout, held_out_positions, holdout_hash, resolve_holdout


def chats(n: int) -> list[dict]:
    return [{"id": f"q{i}", "messages": [{"role": "user", "content": f"Count to {i % 9}"},
                                         {"role": "assistant", "content": " ".join(["one"] * (1 + i % 9))}]}
            for i in range(n)]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFORGE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tokenized"


def corpus_of(path, model_dir, tokenizer, **data):
    data.setdefault("max_length", 64)
    return open_corpus(DataSection(path=str(path), **data), eval_enabled=True, model_dir=str(model_dir),
                       tokenizer=tokenizer, progress=False)


def test_raw_data_is_tokenized_once_then_reused(chatml, chatml_dir, write_jsonl, cache):
    path = write_jsonl(chats(20))
    first = corpus_of(path, chatml_dir, chatml)
    assert first.origin.startswith("tokenized into")
    again = corpus_of(path, chatml_dir, chatml)
    assert again.origin.startswith("reused") and again.dataset.dir == first.dataset.dir
    assert len(list(cache.glob("*/tokenized.json"))) == 1


def test_a_changed_tokenizer_template_max_length_or_file_is_a_new_cache_entry(chatml, chatml_dir, write_jsonl,
                                                                                cache, tmp_path):
    path = write_jsonl(chats(20))
    base = corpus_of(path, chatml_dir, chatml).dataset.dir
    shorter = corpus_of(path, chatml_dir, chatml, max_length=30).dataset.dir
    template = tmp_path / "t.jinja"
    template.write_text((chatml_dir / "chat_template.jinja").read_text().replace("<|im_end|>", "<|im_end|>\n"))
    templated = corpus_of(path, chatml_dir, chatml, chat_template=str(template)).dataset.dir
    other_tok = tmp_path / "tok"
    shutil.copytree(chatml_dir, other_tok)
    config = json.loads((other_tok / "tokenizer_config.json").read_text())
    (other_tok / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 77}))
    retokenized = corpus_of(path, other_tok, chatml).dataset.dir
    write_jsonl(chats(21))  # the same file, changed
    changed = corpus_of(path, chatml_dir, chatml).dataset.dir
    assert len({base, shorter, templated, retokenized, changed}) == 5
    assert max(len(s.input_ids) for s in corpus_of(path, chatml_dir, chatml, max_length=30).dataset) == 30


def test_a_prepared_dataset_for_another_tokenizer_or_max_length_is_refused(chatml, chatml_dir, write_jsonl, cache,
                                                                           tmp_path):
    prepared = corpus_of(write_jsonl(chats(5)), chatml_dir, chatml).dataset.dir
    other_tok = tmp_path / "tok"
    shutil.copytree(chatml_dir, other_tok)
    (other_tok / "special_tokens_map.json").write_text("{}")
    ok = corpus_of(prepared, chatml_dir, chatml)
    assert ok.origin == f"tokenized dataset {prepared}" and len(ok.train) + len(ok.heldout) == 5
    with pytest.raises(DataError, match=r"another tokenizer .* cut at max_length 64, this run asks for 32"):
        corpus_of(prepared, other_tok, chatml, max_length=32)


def test_held_out_samples_are_never_trained_and_the_statistics_leave_them_out(chatml, chatml_dir, write_jsonl, cache):
    path = write_jsonl(chats(100))
    corpus = corpus_of(path, chatml_dir, chatml, eval_holdout=0.1)
    train_ids = {s.sample_id for s in corpus.train}
    held_ids = {s.sample_id for s in corpus.heldout}
    assert not train_ids & held_ids and len(train_ids | held_ids) == 100
    assert held_ids == {f"q{i}" for i in range(100) if holdout_hash(f"q{i}") < 0.1 * 2**64}
    assert corpus.stats == compute_stats(corpus.train)
    everything = {s.sample_id: s for s in load_samples(path, chatml, max_length=64).samples}
    assert [s for s in corpus.train] == [everything[i] for i in sorted(train_ids, key=lambda x: int(x[1:]))]


def test_the_split_depends_on_ids_only_so_every_shard_and_order_agrees():
    ids = [f"conv-{i}" for i in range(1000)]
    rule = Holdout("fraction", 0.05)
    whole = {ids[i] for i in held_out_positions(ids, len(ids), rule)}
    halves = {ids[:500][i] for i in held_out_positions(ids[:500], 500, rule)} | \
             {ids[500:][i] for i in held_out_positions(ids[500:], 500, rule)}
    backwards = {ids[::-1][i] for i in held_out_positions(ids[::-1], 1000, rule)}
    assert whole == halves == backwards and 20 < len(whole) < 80
    count = {ids[i] for i in held_out_positions(ids, 1000, Holdout("count", 7))}
    assert count == {ids[::-1][i] for i in held_out_positions(ids[::-1], 1000, Holdout("count", 7))}
    assert len(count) == 7 and count <= whole


def test_auto_holds_out_two_percent_capped_and_nothing_with_an_eval_file_or_no_eval():
    auto = resolve_holdout(None, eval_path="", eval_enabled=True)
    assert auto.mode == "auto" and auto.count_for(24) == 1 and auto.count_for(1000) == 20
    assert auto.count_for(10**6) == AUTO_MAX
    assert resolve_holdout(None, eval_path="held.jsonl", eval_enabled=True).mode == "none"
    assert resolve_holdout(None, eval_path="", eval_enabled=False).mode == "none"
    assert resolve_holdout(0.0, eval_path="", eval_enabled=True).mode == "none"
    assert resolve_holdout(12.0, eval_path="", eval_enabled=True) == Holdout("count", 12.0)


def test_eval_holdout_is_declared_in_the_options_style():
    from specforge.errors import ConfigError
    from specforge.options import build_options

    assert build_options(DataSection, {"eval_holdout": 0.05}, "data").eval_holdout == 0.05
    assert build_options(DataSection, {"eval_holdout": 100}, "data").eval_holdout == 100
    with pytest.raises(ConfigError, match=r"data\.eval_holdout must be at least 0"):
        build_options(DataSection, {"eval_holdout": -1}, "data")
    with pytest.raises(ConfigError, match="a count must be a whole number"):
        build_options(DataSection, {"eval_holdout": 2.5}, "data")


def test_held_out_prompts_end_where_the_last_reply_starts(chatml, chatml_dir, write_jsonl, cache):
    corpus = corpus_of(write_jsonl(chats(50)), chatml_dir, chatml, eval_holdout=5)
    ids, names = corpus.eval_prompts(3)
    assert len(ids) == 3 and names == [s.sample_id for s in corpus.heldout][:3]
    sample = corpus.heldout[0]
    start = len(ids[0])
    assert list(sample.input_ids[:start]) == ids[0] and sample.loss_mask[start] == 1
    assert not any(sample.loss_mask[:start])
    assert chatml.decode(ids[0]).endswith("<|im_start|>assistant\n")
    assert prompt_before_last_reply(sample) == ids[0]


def test_a_holdout_that_leaves_nothing_to_train_is_an_error(chatml, chatml_dir, write_jsonl, cache):
    corpus = corpus_of(write_jsonl(chats(3)), chatml_dir, chatml)
    with pytest.raises(DataError, match="leaves no training sample"):
        split_corpus(corpus.dataset, Holdout("fraction", 0.999999))
