"""Conversations -> token ids + loss masks, with the target's chat template; corpus statistics.

Importing this package loads neither torch nor transformers: callers pass a tokenizer
(``load_tokenizer`` loads one from a local directory when asked).
"""

from specforge.data.chat_template import ChatRenderer
from specforge.data.conversations import Conversation, Message
from specforge.data.errors import DataError
from specforge.data.loading import (
    LoadedData,
    LoadedPrompts,
    Prompt,
    load_prompts,
    load_samples,
    load_tokenizer,
)
from specforge.data.reader import BadLine
from specforge.data.report import DataReport
from specforge.data.stats import compute_stats

__all__ = [
    "BadLine", "ChatRenderer", "Conversation", "DataError", "DataReport", "LoadedData", "LoadedPrompts",
    "Message", "Prompt", "compute_stats", "load_prompts", "load_samples", "load_tokenizer",
]
