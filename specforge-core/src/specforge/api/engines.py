"""For target engines: local model directories read without torch, and the frozen-target builder."""

from __future__ import annotations

from specforge.devices import DTYPES, resolve_device, resolve_dtype
from specforge.engines.frozen import frozen_target_info
from specforge.engines.target_config import (
    SUPPORTED_ARCHITECTURES,
    TargetModelError,
    check_architecture,
    read_config,
    target_info_from_config,
    validate_model_dir,
)
from specforge.engines.tokenizer_files import read_special_tokens, special_tokens_of
from specforge.engines.weights import frozen_weight_names, read_frozen_weights

__all__ = [
    "DTYPES",
    "SUPPORTED_ARCHITECTURES",
    "TargetModelError",
    "check_architecture",
    "frozen_target_info",
    "frozen_weight_names",
    "read_config",
    "read_frozen_weights",
    "read_special_tokens",
    "resolve_device",
    "resolve_dtype",
    "special_tokens_of",
    "target_info_from_config",
    "validate_model_dir",
]
