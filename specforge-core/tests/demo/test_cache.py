"""Building once: the marker comes last, failures leave nothing, two processes build once."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from specforge.demo.cache import build_once, default_cache_dir

MARKER = "done.json"


def _writer(log: Path, pause: float = 0.0):
    def build(tmp: Path) -> None:
        with open(log, "a") as f:
            f.write("built\n")
        (tmp / "payload.txt").write_text("data")
        time.sleep(pause)
        (tmp / MARKER).write_text("{}")
    return build


def test_first_call_builds_later_calls_reuse(tmp_path):
    final, log = tmp_path / "cache" / "demo-v1", tmp_path / "log"
    assert build_once(final, MARKER, _writer(log)) is True
    assert build_once(final, MARKER, _writer(log)) is False
    assert (final / "payload.txt").read_text() == "data"
    assert log.read_text().count("built") == 1


def test_a_build_is_readable_by_everyone_like_any_cache(tmp_path):
    final = tmp_path / "demo-v1"
    build_once(final, MARKER, _writer(tmp_path / "log"))
    assert final.stat().st_mode & 0o777 == 0o755
    assert (final / "payload.txt").stat().st_mode & 0o777 == 0o644


def test_force_rebuilds(tmp_path):
    final, log = tmp_path / "demo-v1", tmp_path / "log"
    build_once(final, MARKER, _writer(log))
    assert build_once(final, MARKER, _writer(log), force=True) is True
    assert log.read_text().count("built") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-v1", "demo-v1.lock", "log"]


def test_a_failed_build_leaves_no_directory_and_the_next_call_builds(tmp_path):
    final, log = tmp_path / "demo-v1", tmp_path / "log"

    def broken(tmp: Path) -> None:
        (tmp / "half.txt").write_text("x")
        raise KeyboardInterrupt  # an interrupted build

    with pytest.raises(KeyboardInterrupt):
        build_once(final, MARKER, broken)
    assert not final.exists()
    assert not list(tmp_path.glob("demo-v1.tmp-*"))
    assert build_once(final, MARKER, _writer(log)) is True


def test_a_directory_without_its_marker_is_rebuilt(tmp_path):
    final, log = tmp_path / "demo-v1", tmp_path / "log"
    final.mkdir()
    (final / "payload.txt").write_text("partial")
    assert build_once(final, MARKER, _writer(log)) is True
    assert (final / MARKER).exists()


def test_a_build_that_forgets_its_marker_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="marker"):
        build_once(tmp_path / "demo-v1", MARKER, lambda tmp: (tmp / "x").write_text("x"))
    assert not (tmp_path / "demo-v1").exists()


def _race(final: str, log: str) -> None:
    build_once(Path(final), MARKER, _writer(Path(log), pause=0.5))


def test_two_processes_asking_at_once_build_once(tmp_path):
    final, log = tmp_path / "demo-v1", tmp_path / "log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_race, args=(str(final), str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text().count("built") == 1
    assert (final / MARKER).exists()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECFORGE_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SPECFORGE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "specforge"
