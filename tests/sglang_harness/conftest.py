"""The SGLang harness: tests that run only in the SGLang test venv (.venv-sglang), never in the main venv.

Build the venv with ``plugins/specforge-sglang/harness/build_venv.sh`` and run
``.venv-sglang/bin/pytest tests/sglang_harness``. The main test run excludes this folder with
``--ignore=tests/sglang_harness``. SGLang here runs on CPU as a test harness, not a deployment.

One in-process SGLang engine (``sglang_engine``) and one SGLang server (``sglang_server``) are
shared by the whole session: each costs ~20-40 s to start on 2 cores.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness_settings import DEVICE

from specforge_sglang.versions import TESTED_SGLANG_VERSION, installed_sglang_version

if installed_sglang_version() is None:  # a usage error, not a skip: these tests exist to run here
    raise pytest.UsageError("tests/sglang_harness needs the SGLang test venv: run "
                            "plugins/specforge-sglang/harness/build_venv.sh, then .venv-sglang/bin/pytest "
                            "tests/sglang_harness")

if DEVICE == "cpu":
    os.environ.setdefault("SGLANG_USE_CPU_ENGINE", "1")
CPU_SERVER_FLAGS = ["--device", "cpu", "--attention-backend", "torch_native", "--sampling-backend", "pytorch",
                    "--max-total-tokens", "16384", "--mem-fraction-static", "0.3", "--grammar-backend", "none",
                    "--disable-overlap-schedule"]
NUM_LAYERS = 8
CAPTURE_LAYERS = tuple(range(NUM_LAYERS))  # every layer, so no request makes the engine restart
SERVER_LAYERS = (1, 3, 4)  # EAGLE3's default rule on an 8-layer target: [1, L//2-1, L-4]
SERVER_START_TIMEOUT_S = 240


@pytest.fixture(scope="session")
def sglang_version() -> str:
    version = installed_sglang_version()
    assert version == TESTED_SGLANG_VERSION, f"the harness venv has SGLang {version}"
    return version


@pytest.fixture(scope="session")
def harness_target_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3 with a wide initialisation (a draft learns from it in a few steps)."""
    from specforge.testing.tiny_models import make_tiny_target

    return make_tiny_target(tmp_path_factory.mktemp("harness") / "tiny-qwen3", arch="qwen3", num_layers=NUM_LAYERS,
                            hidden=32, heads=2, kv_heads=1, initializer_range=0.2, seed=0)


@pytest.fixture(scope="session")
def hf_engine(harness_target_dir: Path) -> Iterator[object]:
    from specforge.engines.hf import HFEngine, HFEngineOptions

    engine = HFEngine(HFEngineOptions(batch_size=4), model_path=str(harness_target_dir), dtype="float32",
                      device=DEVICE)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def sglang_engine(harness_target_dir: Path, sglang_version: str) -> Iterator[object]:
    """SGLang in this process (its scheduler is a spawned child), binary transport through /dev/shm."""
    from specforge_sglang.engine import SGLangEngine
    from specforge_sglang.options import SGLangEngineOptions

    engine = SGLangEngine(SGLangEngineOptions(capture_layers=CAPTURE_LAYERS, batch_size=4),
                          model_path=str(harness_target_dir), dtype="float32", device=DEVICE)
    yield engine
    engine.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, shm_dir: Path, layers: tuple[int, ...]) -> None:
        self.url, self.shm_dir, self.layers = url, shm_dir, layers


@pytest.fixture(scope="session")
def sglang_server(harness_target_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                  sglang_version: str) -> Iterator[Server]:
    """``python -m specforge_sglang.serve`` on 127.0.0.1, as a user starts it (see the README)."""
    port = _free_port()
    shm_dir = tmp_path_factory.mktemp("server-shm")
    log = tmp_path_factory.mktemp("server-log") / "server.log"
    cmd = [sys.executable, "-m", "specforge_sglang.serve", "--capture-layers", *map(str, SERVER_LAYERS),
           "--shm-dir", str(shm_dir), "--", "--model-path", str(harness_target_dir), "--host", "127.0.0.1",
           "--port", str(port), "--skip-server-warmup", "--dtype", "float32",
           *(CPU_SERVER_FLAGS if DEVICE == "cpu" else [])]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the SGLang server exited {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SGLang server did not answer in {SERVER_START_TIMEOUT_S}s:\n"
                                   f"{log.read_text()[-4000:]}")
            time.sleep(1)
        yield Server(url, shm_dir, SERVER_LAYERS)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)  # the server's own process group (start_new_session): it and its children
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
