"""``run.tensorboard``: a real tiny run's events, read back with TensorBoard's own reader, hold every
numeric metrics.jsonl value at its step, once each, also after a kill and ``--resume``; the switch
costs no torch import at ``--plan`` and is refused up front when the package is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # specforge-core[tensorboard]

from specforge.testing.cli import run_specforge as specforge

STEPS = 10  # 24 conversations less 4 held out, batch 2, one process


def args(target: Path, data: Path, out: Path, name: str, *extra: str) -> list[str]:
    return ["run", "--strategy", "example-medusa", "--target-model", str(target), "--data", str(data),
            "--output-dir", str(out), "--name", name, "--tensorboard", "--set", "export.enabled=false",
            "--set", "training.batch_size=2", "--set", "training.lr=0.03", "--set", "training.warmup_ratio=0.0",
            "--set", "data.eval_holdout=4", "--set", "eval.num_prompts=4", "--set", "eval.max_new_tokens=8",
            "--set", "eval.k=3", "--set", "training.eval_every=3", *extra]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series TensorBoard would show for the run, as (step, value) in file order."""
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def expected(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                out.setdefault(key, []).append((record["step"], float(value)))
    return out


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want), "one TensorBoard tag per numeric metrics.jsonl key"
    for tag, series in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in series], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in series], rel=1e-6), tag  # float32 events


def test_events_of_a_killed_and_resumed_run_match_metrics_jsonl(specforge_tiny_target, specforge_chats, tmp_path):
    common = ("--set", "training.save_every=2")
    killed = specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "r", *common),
                       env={"SPECFORGE_TEST_KILL_AT": "step:7"}, check=False)
    assert killed.returncode == -9, killed.stderr
    before = scalars(tmp_path / "r")
    assert [s for s, _ in before["loss"]] == list(range(1, 8)), "every step is flushed as it is logged"
    specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "r", *common, "--resume"))
    run_dir = tmp_path / "r"
    got = scalars(run_dir)
    final = {tag: got.pop(tag) for tag in list(got) if tag.startswith("final/")}
    assert_same(got, expected(run_dir))
    report = json.loads((run_dir / "eval.json").read_text())
    assert {"final/tau_before", "final/tau_after"} <= final.keys()
    for label in ("before", "after"):  # the final evaluation, at the last step
        (point,) = final[f"final/tau_{label}"]
        assert point == (STEPS, pytest.approx(report[label]["tau"], rel=1e-6)), label
    assert [s for s, _ in got["loss"]] == list(range(1, STEPS + 1)), "step 7 of the killed session is purged"
    assert [s for s, _ in got["eval/tau"]] == [3, 6, 9, 10]
    assert {"eval/accept_pos1", "eval/accept_pos3", "lr", "grad_norm", "tokens_per_s"} <= got.keys()
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2, "one file per session"


def test_without_the_switch_no_events_are_written(specforge_tiny_target, specforge_chats, tmp_path):
    argv = [a for a in args(specforge_tiny_target, specforge_chats, tmp_path, "r", "--set", "training.max_steps=2",
                            "--set", "eval.enabled=false", "--set", "training.eval_every=0") if a != "--tensorboard"]
    specforge(*argv)
    assert (tmp_path / "r" / "metrics.jsonl").is_file()
    assert not (tmp_path / "r" / "tensorboard").exists()


PLAN = """
import sys
if sys.argv[1] == "hide":
    sys.modules["tensorboard"] = None  # import tensorboard raises ImportError, as when it is not installed
from specforge.cli import main
try:
    main(sys.argv[2:])
except SystemExit as exit:
    code = exit.code
print("LOADED", sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")), file=sys.stderr)
sys.exit(code)
"""


def plan(specforge_tiny_target: Path, tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PLAN, mode, "run", "--strategy", "example-medusa", "--target-model",
                           str(specforge_tiny_target), "--output-dir", str(tmp_path), "--tensorboard", "--plan"],
                          capture_output=True, text=True, timeout=120, check=False)


def test_plan_with_tensorboard_imports_no_torch(specforge_tiny_target, tmp_path):
    proc = plan(specforge_tiny_target, tmp_path, "keep")
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stderr
    assert "tensorboard = true" in proc.stdout


def test_tensorboard_without_its_package_is_refused_before_anything_loads(specforge_tiny_target, tmp_path):
    proc = plan(specforge_tiny_target, tmp_path, "hide")
    assert proc.returncode == 2, proc.stderr
    assert "pip install specforge-core[tensorboard]" in proc.stderr
    assert "LOADED []" in proc.stderr


def test_a_writer_left_open_by_a_failed_run_is_closed_when_its_folder_runs_again(tmp_path):
    """A run that raised after training (export, final evaluation) never reaches on_run_finished; the
    next run of the same folder closes that writer, with its step flushed, instead of leaking it."""
    from types import SimpleNamespace

    from specforge.builtin import tensorboard

    run = SimpleNamespace(run_dir=tmp_path, config=SimpleNamespace(run=SimpleNamespace(tensorboard=True)))
    tensorboard.specforge_on_run_start(run)
    failed = tensorboard._logs[tmp_path]
    tensorboard.specforge_on_step_end(run, 1, {"step": 1, "loss": 2.5})
    assert failed._writer.file_writer is not None  # open: the failed run never closed it
    tensorboard.specforge_on_run_start(run)  # the folder runs again (e.g. --resume)
    try:
        assert failed._writer.file_writer is None, "the stale writer was not closed"
        assert tensorboard._logs[tmp_path] is not failed
        assert scalars(tmp_path)["loss"] == [(1, 2.5)]
    finally:
        tensorboard._logs.pop(tmp_path).close()
