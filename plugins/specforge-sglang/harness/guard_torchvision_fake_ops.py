"""Make the PyPI torchvision importable next to a CPU torch in the SGLang test venv (harness only).

The torchvision wheel on PyPI is a CUDA build; its native ops do not load against the CPU
torch, and ``torchvision/_meta_registrations.py`` then fails at import registering fake
kernels for ``torchvision::nms`` / ``torchvision::qnms``, which do not exist. SGLang imports
torchvision at module level (image utilities) but never runs these ops for text models. This
rewrites those two decorators to register only when the native ops loaded, the way
torchvision already guards its other registrations. Idempotent; checks the import afterwards.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

UNGUARDED = re.compile(r'^@torch\.library\.register_fake\("torchvision::(q?nms)"\)$', re.MULTILINE)
GUARDED = r'@(torch.library.register_fake("torchvision::\1") if torchvision.extension._has_ops() else (lambda fn: fn))'


def main() -> int:
    spec = importlib.util.find_spec("torchvision")  # does not import it
    if spec is None or not spec.submodule_search_locations:
        print("torchvision is not installed in this venv", file=sys.stderr)
        return 1
    path = Path(next(iter(spec.submodule_search_locations))) / "_meta_registrations.py"
    text = path.read_text()
    guarded, count = UNGUARDED.subn(GUARDED, text)
    if count:
        path.write_text(guarded)
    print(f"guard_torchvision_fake_ops: {count} registration(s) guarded in {path}")
    check = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        print(check.stderr[-2000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
