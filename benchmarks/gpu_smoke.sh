#!/usr/bin/env bash
# GPU smoke test: on a CUDA machine, train each first-party strategy for a few dozen steps in
# bf16 with the fused attention paths, print tokens/s and peak memory, then (where SGLang is
# installed) serve each export with SGLang's speculative decoding and print the accept length
# SGLang reports next to ours.
#
#   benchmarks/gpu_smoke.sh                       # all first-party strategies, 40 steps each
#   STRATEGIES="eagle3 dflash" STEPS=60 benchmarks/gpu_smoke.sh
#
# Uses the embedded demo (built offline on first use) so it needs no model download. Results:
# runs/gpu-smoke/<strategy>/ (metrics.jsonl, eval.json, export/) and a summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
SPECFORGE=${SPECFORGE:-.venv/bin/specforge}
PYTHON=${PYTHON:-.venv/bin/python}
STRATEGIES=${STRATEGIES:-"eagle3 dflash domino"}
STEPS=${STEPS:-40}
OUT=${OUT:-runs/gpu-smoke}

"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script is for GPU machines')"
"$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

for strategy in $STRATEGIES; do
  echo "== $strategy: $STEPS steps, bf16-mixed, fused attention"
  "$SPECFORGE" run --strategy "$strategy" --output-dir "$OUT" --name "$strategy" --overwrite \
    --set target.device='"cuda"' --set target.dtype='"bfloat16"' --set training.precision='"bf16-mixed"' \
    --set training.max_steps="$STEPS" --set eval.dtype='"float32"' --set eval.num_prompts=16
  "$PYTHON" benchmarks/gpu_smoke_report.py "$OUT/$strategy"
done

if "$PYTHON" -c "import sglang" 2>/dev/null; then
  for strategy in $STRATEGIES; do
    echo "== $strategy: SGLang speculative decoding with the export"
    "$PYTHON" benchmarks/gpu_smoke_report.py "$OUT/$strategy" --serve
  done
else
  echo "SGLang is not installed here: the exports were not served (pip install specforge-sglang[sglang] on this machine)"
fi
