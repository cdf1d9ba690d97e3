"""A small byte-level BPE tokenizer for the demo target, with ChatML specials and a mask token.

A few hundred tokens keep the tiny target's embedding and lm_head (and every draft's logits)
cheap on CPU; the specials come first so their ids are fixed whatever the corpus.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from specforge.demo.recipe import DEMO_MAX_LENGTH, SPECIAL_TOKENS
from specforge.demo.tasks import Conversation

# ChatML, Qwen2.5-style, without a default system prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _corpus(conversations: Iterable[Conversation]) -> Iterator[str]:
    # What a rendered conversation holds between its specials: role headers and the two turns.
    for conv in conversations:
        yield f"user\n{conv.user}"
        yield f"assistant\n{conv.assistant}"


def train_tokenizer(conversations: Iterable[Conversation], out_dir: Path, vocab_size: int) -> int:
    """Train on the conversations, save a Hugging Face tokenizer directory; returns its size.

    Raises when the corpus cannot fill ``vocab_size`` (the target's vocab must match it).
    """
    # Training gave identical bytes with 1 or 2 rayon threads; one thread keeps it off busy cores.
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(conversations), trainer=trainer)
    size = tok.get_vocab_size(with_added_tokens=True)
    if size != vocab_size:
        raise ValueError(f"the demo corpus yields a {size}-token tokenizer, not {vocab_size}: "
                         "change DEMO_VOCAB_SIZE in specforge/demo/recipe.py to match")

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=SPECIAL_TOKENS["eos"], pad_token=SPECIAL_TOKENS["pad"], mask_token=SPECIAL_TOKENS["mask"],
        additional_special_tokens=[SPECIAL_TOKENS["im_start"], SPECIAL_TOKENS["eos"]],
        clean_up_tokenization_spaces=False, model_max_length=DEMO_MAX_LENGTH,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    _write_portable_config(out_dir)
    return size


def _write_portable_config(out_dir: Path) -> None:
    """Rewrite tokenizer_config.json in the form transformers 4.x and 5.x both load.

    transformers 5 saves a class name 4.x does not know and keeps the template in a separate
    file; engines pinned to older releases (SGLang) read the classic keys.
    """
    path = out_dir / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("extra_special_tokens", None)
    config.pop("backend", None)
    config.update({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "unk_token": None,
        "additional_special_tokens": [SPECIAL_TOKENS["im_start"], SPECIAL_TOKENS["eos"]],
        "chat_template": CHAT_TEMPLATE,
    })
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out_dir / "chat_template.jinja").unlink(missing_ok=True)

