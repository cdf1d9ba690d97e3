"""The two ways of talking to SGLang with one call shape: ``sglang.Engine`` in process, or a server's ``/generate``.

Both take a batch of token-id prompts with per-prompt sampling parameters and request ids, and
return SGLang's output dicts (``output_ids``, ``meta_info``) in prompt order.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from specforge.api import SpecforgeError
from specforge_sglang.capture_plan import CAPTURE_PACKAGE, EXTERNAL_PACKAGE_ENV, PLAN_ENV, CapturePlan

log = logging.getLogger(__name__)

CPU_ENGINE_ENV = "SGLANG_USE_CPU_ENGINE"
RENDEZVOUS_ENV = "SGLANG_DISTRIBUTED_INIT_METHOD_OVERRIDE"
_our_rendezvous: str | None = None  # the last value this process set, so a user's own is never replaced


class SGLangRequestError(SpecforgeError):
    """SGLang answered a request with an error, or could not be reached."""


def capture_environment(plan: CapturePlan, *, cpu: bool) -> dict[str, str]:
    """Environment SGLang's processes need to build the target with the capture class."""
    env = {EXTERNAL_PACKAGE_ENV: CAPTURE_PACKAGE, PLAN_ENV: plan.to_env()}
    if cpu:
        env[CPU_ENGINE_ENV] = "1"
    return env


def one_machine_rendezvous() -> dict[str, str]:
    """SGLang's torch.distributed rendezvous through a fresh file instead of a TCP port.

    SGLang's scheduler meets its tensor-parallel peers at ``tcp://127.0.0.1:<nccl port>``, and
    torch's ``TCPStore`` server listens on every interface whatever host it is given. On one
    machine a ``file://`` rendezvous is equivalent and listens nowhere. A user's own
    ``SGLANG_DISTRIBUTED_INIT_METHOD_OVERRIDE`` is kept (nothing is returned then).
    """
    global _our_rendezvous
    current = os.environ.get(RENDEZVOUS_ENV)
    if current and current != _our_rendezvous:
        return {}
    _our_rendezvous = f"file://{tempfile.gettempdir()}/specforge-sglang-rendezvous-{uuid.uuid4().hex}"
    return {RENDEZVOUS_ENV: _our_rendezvous}


def apply_environment(env: Mapping[str, str]) -> None:
    """Set ``env`` in this process (SGLang's spawned scheduler inherits it); refuse a foreign external package."""
    current = os.environ.get(EXTERNAL_PACKAGE_ENV)
    if current and current != env.get(EXTERNAL_PACKAGE_ENV, current):
        raise SpecforgeError(f"{EXTERNAL_PACKAGE_ENV} is already set to {current!r}; the sglang engine needs it "
                             f"to be {CAPTURE_PACKAGE!r} (SGLang takes one external model package). Unset it")
    os.environ.update(env)


class InProcessBackend:
    """``sglang.Engine`` in this process (its scheduler runs in a spawned child process)."""

    def __init__(self, engine_kwargs: Mapping[str, Any], env: Mapping[str, str]) -> None:
        apply_environment({**env, **one_machine_rendezvous()})
        import sglang

        log.info("starting SGLang %s in process for %s", getattr(sglang, "__version__", "?"),
                 engine_kwargs.get("model_path"))
        self._engine = sglang.Engine(**engine_kwargs)

    def generate(self, input_ids: Sequence[Sequence[int]], sampling_params: Sequence[Mapping[str, Any]], *,
                 rids: Sequence[str], return_hidden_states: bool = False) -> list[dict]:
        out = self._engine.generate(input_ids=[list(p) for p in input_ids],
                                    sampling_params=[dict(s) for s in sampling_params],
                                    rid=list(rids), return_hidden_states=return_hidden_states)
        return list(out) if isinstance(out, list) else [out]

    def shutdown(self) -> None:
        self._engine.shutdown()


class HttpBackend:
    """A running SGLang server's native ``/generate`` endpoint (stdlib HTTP, no SGLang needed here)."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise SGLangRequestError(f"SGLang server {self.url}{path} answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SGLangRequestError(f"cannot reach the SGLang server at {self.url} ({exc}); start it with "
                                     f"`python -m specforge_sglang.serve ...` or fix target_engine.server_url") from exc

    def server_info(self) -> dict:
        return self._call("/server_info")

    def generate(self, input_ids: Sequence[Sequence[int]], sampling_params: Sequence[Mapping[str, Any]], *,
                 rids: Sequence[str], return_hidden_states: bool = False) -> list[dict]:
        body = {"input_ids": [list(p) for p in input_ids], "sampling_params": [dict(s) for s in sampling_params],
                "rid": list(rids), "return_hidden_states": return_hidden_states}
        out = self._call("/generate", body)
        return out if isinstance(out, list) else [out]

    def shutdown(self) -> None:
        """The server belongs to the user: leave it running."""
