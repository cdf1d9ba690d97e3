"""Who the target is, as a short hash: what a stored feature's fingerprint says about the target.

Hashing every weight byte of a multi-GB checkpoint on every run costs minutes, so the identity
is config.json plus, per weight file, its safetensors header (names, dtypes, shapes), size, mtime
and eight 64 KiB blocks sampled across it. The trade-off: two checkpoints with identical
configs, headers, sizes and mtimes that differ only outside the sampled blocks would look the
same (a copy that preserves mtime, e.g. ``cp -p``, of a retrained model of the same shape is the
realistic case); ``touch`` on unchanged weights makes a run re-capture (safe, only slower).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

SAMPLES = 8
BLOCK = 64 << 10


def _weight_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if p.suffix == ".safetensors" and p.is_file())


def _file_identity(path: Path, digest: hashlib._Hash) -> None:
    stat = path.stat()
    digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) == 8:
            (length,) = struct.unpack("<Q", head)
            digest.update(f.read(min(length, 100 << 20)))  # the JSON header: names, dtypes, shapes
        for i in range(SAMPLES):
            f.seek(stat.st_size * i // SAMPLES)
            digest.update(f.read(BLOCK))


def target_identity(model_dir: str | Path) -> str:
    """16 hex digits naming the target's config and weights (see the module docstring)."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    config = model_dir / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"")
    for path in _weight_files(model_dir):
        _file_identity(path, digest)
    return digest.hexdigest()[:16]
