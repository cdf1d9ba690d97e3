"""Summarise one GPU smoke run; with ``--serve``, serve its export with SGLang's speculative decoding.

    python benchmarks/gpu_smoke_report.py runs/gpu-smoke/eagle3            # tokens/s, peak memory, τ
    python benchmarks/gpu_smoke_report.py runs/gpu-smoke/eagle3 --serve    # + SGLang's accept length

SGLang's accept length is its completion tokens over its verification rounds (``meta_info``:
``completion_tokens`` / ``spec_verify_ct``), measured on the same held-out prompts our τ used.
Written for a CUDA machine with SGLang installed; see docs/scaling.md for what has run where.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import tomllib

ALGORITHM = {"eagle3": ["--speculative-algorithm", "EAGLE3", "--speculative-num-steps", "3",
                        "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "4"],
             "dflash": ["--speculative-algorithm", "DFLASH"], "domino": ["--speculative-algorithm", "DFLASH"]}


def summary(run_dir: Path) -> dict:
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steady = metrics[len(metrics) // 2:] or metrics
    report = json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").is_file() else {}
    return {"run": str(run_dir), "steps": len(metrics),
            "tokens_per_s": statistics.median(m["tokens_per_s"] for m in steady),
            "peak_memory_gib": max((m.get("max_memory_gib", 0.0) for m in metrics), default=0.0),
            "tau_before": report.get("before", {}).get("tau"), "tau_after": report.get("after", {}).get("tau")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def serve_accept_length(run_dir: Path, strategy: str) -> float:
    config = tomllib.loads((run_dir / "config.toml").read_text())
    target, prompts = config["target"]["model"], config["data"]["eval_path"]
    port = free_port()
    cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", target, "--host", "127.0.0.1",
           "--port", str(port), "--speculative-draft-model-path", str(run_dir / "export"), *ALGORITHM[strategy],
           "--dtype", "bfloat16", "--mem-fraction-static", "0.5"]
    server = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"SGLang did not start for {strategy}: {' '.join(cmd)}") from None
                time.sleep(2)
        tokens = rounds = 0
        for line in Path(prompts).read_text().splitlines()[:16]:
            messages = json.loads(line)["messages"][:-1]
            out = post(f"http://127.0.0.1:{port}/v1/chat/completions",
                       {"messages": messages, "max_tokens": 48, "temperature": 0})
            meta = out.get("meta_info") or {}
            tokens += out["usage"]["completion_tokens"]
            rounds += meta.get("spec_verify_ct") or out["usage"].get("spec_verify_ct", 0)
        return tokens / rounds if rounds else float("nan")
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()
    row = summary(args.run_dir)
    if args.serve:
        row["sglang_accept_length"] = serve_accept_length(args.run_dir, args.run_dir.name)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
