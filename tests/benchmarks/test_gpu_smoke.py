"""The GPU smoke script's CPU-checkable parts: it refuses without CUDA, and its report reads a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def test_the_smoke_script_refuses_without_cuda_naming_why():
    if torch.cuda.is_available():  # on a GPU machine the script is meant to run, not to refuse
        return
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_smoke.sh")], capture_output=True, text=True,
                          timeout=120, check=False, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert "no CUDA device: this script is for GPU machines" in done.stderr


def test_the_report_summarises_tokens_per_second_memory_and_tau(tmp_path):
    run = tmp_path / "eagle3"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "tokens_per_s": 100.0 * i,
                                                           "max_memory_gib": 0.5 + i / 10}) + "\n"
                                               for i in range(1, 5)))
    (run / "eval.json").write_text(json.dumps({"before": {"tau": 1.0}, "after": {"tau": 2.5}}))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_smoke_report.py"), str(run)],
                          capture_output=True, text=True, timeout=60, check=True)
    row = json.loads(done.stdout)
    assert row == {"run": str(run), "steps": 4, "tokens_per_s": 350.0, "peak_memory_gib": 0.9,
                   "tau_before": 1.0, "tau_after": 2.5}
