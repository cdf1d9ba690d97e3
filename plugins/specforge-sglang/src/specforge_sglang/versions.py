"""Which SGLang releases and target architectures this plugin works with, checked without importing SGLang.

The capture class subclasses SGLang's own model classes and relies on internals (the models'
``layers_to_capture`` list, the final norm returning ``(normed, residual)``, the logits
processor's arguments, ``ForwardBatch.rids``). Those change between SGLang releases, so an
untested release is refused unless the user opts in.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from specforge.api import SpecforgeError

log = logging.getLogger(__name__)

TESTED_SGLANG_VERSION = "0.5.23"
"""The SGLang release the capture class and the export check were verified against."""

INSTALL_HINT = (
    f"pip install 'specforge-sglang[sglang]' (SGLang {TESTED_SGLANG_VERSION}, on a GPU machine; "
    f"see plugins/specforge-sglang/README.md), or run an SGLang server started with "
    f"`python -m specforge_sglang.serve` and set target_engine.server_url"
)

CAPTURE_ARCHITECTURES: dict[str, str] = {
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "LlamaForCausalLM": "llama",
}
"""Target architectures the capture class wraps (``specforge_sglang.capture_model``)."""


class SGLangNotInstalledError(SpecforgeError):
    """The sglang engine was chosen in process, but SGLang is not importable here."""


class SGLangVersionError(SpecforgeError):
    """The installed (or serving) SGLang release is not the tested one."""


class SGLangArchitectureError(SpecforgeError):
    """The target's architecture has no capture class in this plugin."""


def installed_sglang_version() -> str | None:
    """The installed SGLang version, or None when SGLang is not importable (SGLang is not imported)."""
    if importlib.util.find_spec("sglang") is None:
        return None
    try:
        return importlib.metadata.version("sglang")
    except importlib.metadata.PackageNotFoundError:
        return None


def require_sglang(*, allow_untested: bool = False) -> str:
    """The installed SGLang version; raise naming what to install when it is missing or untested."""
    version = installed_sglang_version()
    if version is None:
        raise SGLangNotInstalledError(
            f"target engine 'sglang' runs SGLang in this process, but SGLang is not installed: {INSTALL_HINT}"
        )
    check_version(version, allow_untested=allow_untested, where="installed")
    return version


def check_version(version: str, *, allow_untested: bool = False, where: str = "installed") -> None:
    """Raise for a release other than the tested one unless ``allow_untested`` (then warn)."""
    if version.split("+", maxsplit=1)[0] == TESTED_SGLANG_VERSION:
        return
    message = (f"the {where} SGLang is {version}, but specforge-sglang is tested with SGLang "
               f"{TESTED_SGLANG_VERSION} only: its capture class subclasses SGLang's internal model classes")
    if allow_untested:
        log.warning("%s; continuing because target_engine.allow_untested_version is set", message)
        return
    raise SGLangVersionError(f"{message}. Install sglang=={TESTED_SGLANG_VERSION}, or set "
                             f"target_engine.allow_untested_version=true and check the captured features "
                             f"against the hf engine (the harness tests in tests/sglang_harness do that)")


def check_capture_architecture(config: Mapping[str, Any], model_dir: str | Path) -> str:
    """The target's architecture if the capture class supports it, else an error listing the supported ones."""
    for arch in config.get("architectures") or []:
        if arch in CAPTURE_ARCHITECTURES:
            return arch
    found = ", ".join(config.get("architectures") or []) or f"model_type {config.get('model_type')!r}"
    raise SGLangArchitectureError(
        f"target model {str(model_dir)!r} has architecture {found}; the sglang engine captures features "
        f"from {', '.join(sorted(CAPTURE_ARCHITECTURES))} only. Use target_engine=hf for this model"
    )
