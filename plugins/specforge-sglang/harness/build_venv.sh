#!/usr/bin/env bash
# Build the SGLang TEST venv (default .venv-sglang at the repository root), apart from .venv.
#
# SGLang on CPU is a test harness here, not a supported deployment: it runs plain prefill and
# greedy decoding of tiny models so the sglang engine can be checked against the hf engine.
# What it takes on a CPU-only machine (see docs in plugins/specforge-sglang/README.md):
#   torch 2.13.0 CPU (-c constraints.txt), sglang==0.5.23 and torchvision with --no-deps (their
#   own requirements pull CUDA wheels), a pinned list of pure-Python deps, torchvision's fake-op
#   registrations guarded, and an import-only stand-in for sgl_kernel put on the path by a .pth.
#
# Idempotent: a stamp of this script and its inputs skips the work when nothing changed and the
# venv still imports. Prints how long it took. Usage: build_venv.sh [VENV_DIR]
set -euo pipefail
t0=$(date +%s)
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
VENV="${1:-${SGLANG_VENV:-$ROOT/.venv-sglang}}"
PYTHON="${PYTHON:-python3}"
SGLANG_VERSION="0.5.23"
TORCHVISION_VERSION="0.28.0"  # the release paired with torch 2.13
STAND_IN="$ROOT/tests/sglang_harness/sgl_kernel_import_stand_in"
export PIP_DISABLE_PIP_VERSION_CHECK=1

stamp_inputs() {
  cat "$HERE/build_venv.sh" "$HERE/requirements.txt" "$HERE/guard_torchvision_fake_ops.py" "$ROOT/constraints.txt"
  echo "$STAND_IN"
}
STAMP="$(stamp_inputs | sha256sum | cut -d' ' -f1)"
quick_check() {  # what a later step could have broken, without SGLang's ~20 s import
  "$VENV/bin/python" -c "
import importlib.metadata as m, sgl_kernel, torch, specforge_sglang
assert getattr(sgl_kernel, 'IMPORT_ONLY_STAND_IN', False), 'a real sgl_kernel shadows the stand-in'
assert torch.__version__.startswith('2.13.0'), torch.__version__
assert m.version('sglang') == '$SGLANG_VERSION'
" >/dev/null 2>&1
}
smoke() {
  quick_check && SGLANG_USE_CPU_ENGINE=1 "$VENV/bin/python" -c "import sglang.srt.entrypoints.engine, specforge_sglang.engine"
}

if [ -f "$VENV/.specforge-stamp" ] && [ "$(cat "$VENV/.specforge-stamp")" = "$STAMP" ] && quick_check; then
  echo "SGLang test venv $VENV is up to date ($(( $(date +%s) - t0 ))s)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
echo '*' > "$VENV/.gitignore"  # never committed, whatever the repository's .gitignore says
PIP=("$VENV/bin/pip" install -q -c "$ROOT/constraints.txt")

echo "== [$(( $(date +%s) - t0 ))s] torch (CPU) and the SpecForge packages"
"${PIP[@]}" -e "$ROOT/specforge-core[train]" -e "$ROOT/plugins/specforge-eagle3" -e "$ROOT/plugins/specforge-sglang"

echo "== [$(( $(date +%s) - t0 ))s] sglang==$SGLANG_VERSION and torchvision==$TORCHVISION_VERSION without their dependencies"
"${PIP[@]}" --no-deps "sglang==$SGLANG_VERSION" "torchvision==$TORCHVISION_VERSION"

echo "== [$(( $(date +%s) - t0 ))s] the pure-Python dependencies SGLang imports"
"${PIP[@]}" -r "$HERE/requirements.txt"

echo "== [$(( $(date +%s) - t0 ))s] harness fixes: torchvision fake ops, sgl_kernel import-only stand-in"
"$VENV/bin/python" "$HERE/guard_torchvision_fake_ops.py"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$STAND_IN" > "$SITE/specforge_sgl_kernel_import_stand_in.pth"

echo "== [$(( $(date +%s) - t0 ))s] import check"
if ! smoke >/dev/null 2>"$VENV/.smoke.log"; then
  tail -20 "$VENV/.smoke.log" >&2
  echo "the SGLang test venv does not import (full log: $VENV/.smoke.log)" >&2
  exit 1
fi
echo "$STAMP" > "$VENV/.specforge-stamp"
echo "SGLang test venv $VENV built in $(( $(date +%s) - t0 ))s ($(du -sh "$VENV" | cut -f1))"
