"""Long phases say how far they are when output is not a terminal: start, every 10 % or 15 s, end,
with elapsed time and an estimate of what is left."""

from __future__ import annotations

import logging
import re

import pytest

from specforge.progress import PhaseProgress, format_seconds
from specforge.testing.cli import run_specforge


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.progress"]


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.INFO, logger="test.progress")
    return logging.getLogger("test.progress")


def test_a_line_at_start_every_tenth_and_at_the_end_with_elapsed_and_estimate(log, caplog) -> None:
    clock = Clock()
    bar = PhaseProgress("capture", 40, "samples", log=log, terminal=False, clock=clock)
    for _ in range(40):
        clock.now += 0.5
        bar.update(1)
    bar.close()
    lines = _lines(caplog)
    assert lines[0] == "capture: 0/40 samples"
    assert lines[1] == "capture: 4/40 samples (10%), 2 s elapsed, about 18 s left"
    assert lines[5] == "capture: 20/40 samples (50%), 10 s elapsed, about 10 s left"
    assert len(lines) == 1 + 9 + 1  # start, 10 %..90 %, done
    assert lines[-1] == "capture: done, 40 samples in 20 s"


def test_a_slow_phase_logs_every_15_seconds_between_the_tenths(log, caplog) -> None:
    clock = Clock()
    bar = PhaseProgress("train", 1000, "steps", log=log, terminal=False, clock=clock)
    for _ in range(30):
        clock.now += 1.0
        bar.update(1, loss="1.2345")
    assert _lines(caplog)[1:] == [
        "train: 15/1000 steps (1%), 15 s elapsed, about 16 min 25 s left loss 1.2345",
        "train: 30/1000 steps (3%), 30 s elapsed, about 16 min 10 s left loss 1.2345"]


def test_a_resumed_phase_estimates_from_its_own_rate_not_from_the_steps_done_before(log, caplog) -> None:
    clock = Clock()
    bar = PhaseProgress("train", 100, "steps", log=log, initial=50, terminal=False, clock=clock)
    for _ in range(10):
        clock.now += 1.0
        bar.update(1)
    assert _lines(caplog) == ["train: 50/100 steps", "train: 60/100 steps (60%), 10 s elapsed, about 40 s left"]


def test_a_disabled_or_empty_phase_says_nothing(log, caplog) -> None:
    for bar in (PhaseProgress("train", 10, "steps", log=log, enabled=False, terminal=False),
                PhaseProgress("capture", 0, "samples", log=log, terminal=False)):
        bar.update(1)
        bar.close()
    assert _lines(caplog) == []


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (59.4, "59 s"), (59.6, "1 min 00 s"),
                                               (187, "3 min 07 s"), (3720, "1 h 02 min")])
def test_durations_read_at_a_glance(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


@pytest.mark.slow
def test_a_run_whose_output_is_not_a_terminal_logs_capture_training_and_evaluation(
        specforge_tiny_target, specforge_chats, tmp_path) -> None:
    proc = run_specforge("run", "--strategy", "example-medusa", "--target-model", str(specforge_tiny_target),
                         "--data", str(specforge_chats), "--output-dir", str(tmp_path), "--name", "p",
                         "--set", "training.max_steps=3", "--set", "training.batch_size=2",
                         "--set", "eval.num_prompts=2", "--set", "eval.max_new_tokens=8",
                         "--set", "eval.batch_size=1",  # one prompt at a time: a progress line each
                         "--set", "data.eval_holdout=2")
    err = proc.stderr
    elapsed = r"\d+ s elapsed, about \d+ s left"
    # 24 conversations, two held out for evaluation; the 3 steps of 2 read 6 of the other 22
    assert "capture: 0/6 samples" in err
    assert re.search(r"capture: done, 6 samples in \d+ s", err), err
    assert "capture: the 3 planned steps (training.max_steps) read 6 of the 22 samples; the others were not " \
           "captured" in err
    assert "train: 0/3 steps" in err
    assert re.search(rf"train: 1/3 steps \(33%\), {elapsed} loss \d+\.\d{{4}} tokens/s \d+", err), err
    assert re.search(r"train: done, 3 steps in \d+ s", err), err
    for label in ("before", "after"):
        assert re.search(rf"eval {label} training: 1/2 prompts \(50%\), {elapsed} τ \d\.\d\d", err), err
        assert re.search(rf"eval {label} training: done, 2 prompts in \d+ s", err), err
