"""Time each phase of the embedded demo build (data, tokenizer, target training, eval, save).

    python benchmarks/demo_build.py                 # build into a temp dir, print the phases
    python benchmarks/demo_build.py --json out.json

Builds into a fresh temporary directory, never the cache, so it always measures a full build.
The budget is about 4 minutes on 2 CPU cores for the whole build. Wall time on a shared machine
depends on what else runs: the load average before and after, and the process's CPU seconds,
are printed beside it so a slow number can be told from a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

BUDGET_S = 240.0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="also write the timings here")
    p.add_argument("--keep", type=Path, help="build here instead of a temp dir (must not exist)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    import torch  # counted: a first build in a fresh process pays for it too

    from specforge.demo.assets import MANIFEST, PHASES, build_demo

    imports_s = time.perf_counter() - wall
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "demo"
        root.mkdir(parents=True)
        build_demo(root, progress=True)
        manifest = json.loads((root / MANIFEST).read_text())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    phases = {"imports": round(imports_s, 2), **{k: manifest["seconds"][k] for k in PHASES}}
    result = {
        "phases_s": phases, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "torch_threads": manifest.get("threads"), "cpu_count": os.cpu_count(),
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "accuracy": manifest["target"]["accuracy"], "per_task": manifest["target"]["per_task"],
        "steps": manifest["target"]["steps"], "torch": torch.__version__,
    }
    print(f"{'phase':<14}{'seconds':>9}")
    for name, secs in phases.items():
        print(f"{name:<14}{secs:>9.1f}")
    print(f"{'wall':<14}{wall:>9.1f}   (budget {BUDGET_S:.0f}; process CPU {cpu:.1f} s; "
          f"load {load_before[0]:.1f} -> {result['load_avg_after'][0]:.1f} on {os.cpu_count()} cores)")
    print(f"accuracy {result['accuracy']:.3f} after {result['steps']} steps: {result['per_task']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
