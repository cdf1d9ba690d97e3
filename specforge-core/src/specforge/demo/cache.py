"""Build a directory once, safely: a lock between processes, a temp dir, an atomic rename.

A directory counts as built only when its marker file exists; the builder writes the marker
last, so an interrupted build is never mistaken for a finished one. Two processes asking for
the same directory serialise on an ``fcntl`` lock: the second finds the first's result.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$SPECFORGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/specforge``, else ``~/.cache/specforge``."""
    if os.environ.get("SPECFORGE_CACHE_DIR"):
        return Path(os.environ["SPECFORGE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "specforge"


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def build_once(final_dir: Path, marker: str, build: Callable[[Path], None], *, force: bool = False) -> bool:
    """Make ``final_dir`` exist with ``marker`` inside, running ``build(tmp_dir)`` only if needed.

    ``build`` fills a fresh temporary directory and must write ``marker`` last. Returns whether
    this call built it (False: a finished build was already there, possibly another process's).
    """
    if not force and (final_dir / marker).is_file():
        return False
    parent = final_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(parent / f"{final_dir.name}.lock"):
        if not force and (final_dir / marker).is_file():
            return False
        # Leftovers of builders that died; nobody else builds while we hold the lock.
        for stale in parent.glob(f"{final_dir.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{final_dir.name}.tmp-", dir=parent))
        try:
            build(tmp)
            if not (tmp / marker).is_file():
                raise RuntimeError(f"the build of {final_dir} finished without writing its marker {marker}")
            _make_readable(tmp)
            _swap_in(tmp, final_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True


def _make_readable(root: Path) -> None:
    """Directories 0755, files 0644: ``mkdtemp`` (and some writers) create them private."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _swap_in(tmp: Path, final_dir: Path) -> None:
    """Replace ``final_dir`` (complete, partial or absent) with ``tmp`` by renames."""
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f"{final_dir.name}.tmp-old-{os.getpid()}")
        os.replace(final_dir, old)
    os.replace(tmp, final_dir)
    if old is not None:
        log.debug("removing the previous build %s", old)
        shutil.rmtree(old, ignore_errors=True)
