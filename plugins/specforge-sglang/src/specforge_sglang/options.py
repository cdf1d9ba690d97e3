"""Options of the ``sglang`` target engine (config table ``[target_engine]``, ``--set target_engine.KEY=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from specforge.api import Range, TargetEngineOptions

TRANSPORTS = ("auto", "json", "shm")
"""How captured features travel: ``json`` float lists in SGLang's response (works with any
server), ``shm`` raw bytes the capture class writes to a shared-memory file (same machine),
``auto`` = shm in process or when ``shm_dir`` is set, json otherwise."""

RESERVED_ENGINE_ARGS = frozenset({
    "model_path", "tokenizer_path", "skip_tokenizer_init", "dtype", "device", "disable_radix_cache",
    "chunked_prefill_size", "enable_return_hidden_states", "tp_size", "attention_backend",
    "mem_fraction_static", "max_total_tokens",
})
"""``sglang.Engine`` arguments the engine sets itself (some from the options below)."""


@dataclass(frozen=True)
class SGLangEngineOptions(TargetEngineOptions):
    """Where SGLang runs and how features come back from it."""

    server_url: str = ""
    """A running server started with ``python -m specforge_sglang.serve``; empty: start SGLang in this process."""
    transport: str = "auto"
    """auto | json | shm (see ``TRANSPORTS``)."""
    capture_layers: tuple[int, ...] | None = None
    """Target layers SGLang's model captures, fixed when it starts. Default in process: the first
    capture request's layers (a request needing others restarts SGLang). With server_url: the
    layers the server was started with (required to capture)."""
    shm_dir: str = ""
    """Directory (ideally on /dev/shm) the capture class writes binary rows into; default: a fresh
    one in process. With server_url and transport shm: the server's ``--shm-dir``."""
    batch_size: Annotated[int, Range(ge=1)] = 8
    """Samples (or prompts) per request batch."""
    tp_size: Annotated[int, Range(ge=1)] = 1
    """Tensor-parallel GPUs SGLang runs the target on."""
    attention_backend: str = ""
    """Empty: SGLang's default on GPU, torch_native on CPU."""
    mem_fraction_static: Annotated[float | None, Range(gt=0, lt=1)] = None
    """Empty: SGLang's default on GPU, 0.3 on CPU."""
    max_total_tokens: Annotated[int, Range(ge=0, note="0 means SGLang's default")] = 0
    """KV-cache tokens; 0: SGLang's default on GPU, 16384 on CPU."""
    engine_args: dict[str, Any] = field(default_factory=dict)
    """Further ``sglang.Engine`` keyword arguments (not those in ``RESERVED_ENGINE_ARGS``)."""
    request_timeout_s: Annotated[float, Range(gt=0)] = 600.0
    """Per HTTP request, with server_url."""
    allow_untested_version: bool = False
    """Run with an SGLang release other than the tested one (logs a warning)."""

    def problems(self) -> list[str]:
        """What one field alone cannot say: the transport, the server URL, the capture layers."""
        out = []
        if self.transport not in TRANSPORTS:
            out.append(f"target_engine.transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}")
        if self.server_url and not self.server_url.startswith(("http://", "https://")):
            out.append(f"target_engine.server_url must start with http:// or https://, got {self.server_url!r}")
        if self.server_url and self.transport == "shm" and not self.shm_dir:
            out.append("target_engine.transport=shm with a server_url needs target_engine.shm_dir: "
                       "the directory the server was started with (`--shm-dir`), on this machine")
        if self.capture_layers is not None:
            layers = list(self.capture_layers)
            if any(i < 0 for i in layers) or len(set(layers)) != len(layers):
                out.append(f"target_engine.capture_layers must be distinct non-negative layer ids, got {layers}")
        reserved = sorted(set(self.engine_args) & RESERVED_ENGINE_ARGS)
        if reserved:
            out.append(f"target_engine.engine_args may not set {', '.join(reserved)}: the engine sets "
                       f"them itself (use the target section or the matching target_engine key)")
        return out

    @property
    def uses_shm(self) -> bool:
        """Whether features come back through the shared-memory files."""
        if self.transport == "auto":
            return not self.server_url or bool(self.shm_dir)
        return self.transport == "shm"
