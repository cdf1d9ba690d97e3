"""Real tiny trainings logged by the plugin in W&B's offline mode (``WANDB_MODE=offline``,
``WANDB_DIR`` in a temporary folder, the W&B server address a closed local port): the offline
run files hold every numeric metrics.jsonl value at its step, the resolved config and the summary;
``--resume`` continues the same W&B run; without ``WANDB_PROJECT`` nothing is logged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from wandb_files import read_offline_run

from specforge.testing.cli import run_specforge as specforge

NO_NETWORK = {"WANDB_BASE_URL": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
              "HTTP_PROXY": "http://127.0.0.1:9", "WANDB_SILENT": "true"}


def offline(tmp_path: Path) -> dict[str, str]:
    return {**NO_NETWORK, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb-dir"),
            "WANDB_PROJECT": "specforge-test"}


def args(target: Path, data: Path, out: Path, name: str, *extra: str) -> list[str]:
    return ["run", "--strategy", "example-medusa", "--target-model", str(target), "--data", str(data),
            "--output-dir", str(out), "--name", name, "--set", "export.enabled=false",
            "--set", "training.batch_size=2", "--set", "training.lr=0.03", "--set", "training.warmup_ratio=0.0",
            "--set", "data.eval_holdout=4", "--set", "eval.num_prompts=4", "--set", "eval.max_new_tokens=8",
            "--set", "eval.k=3", *extra]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def offline_runs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "wandb-dir" / "wandb").glob("offline-run-*"))


def numeric(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}


def test_an_offline_run_holds_every_metrics_line_the_config_and_the_summary(
        specforge_tiny_target, specforge_chats, tmp_path):
    specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "r", "--set", "training.eval_every=4"),
              env=offline(tmp_path))
    run_dir = tmp_path / "r"
    (folder,) = offline_runs(tmp_path)
    assert not list((tmp_path / "wandb-dir" / "wandb").glob("run-*")), "offline only: no online run folder"
    logged = read_offline_run(folder)
    saved = json.loads((run_dir / "wandb-run.json").read_text())
    assert logged.run_id == saved["id"] and folder.name.endswith(f"-{saved['id']}")
    assert logged.name == "r" and logged.project == "specforge-test"
    assert logged.config["run"]["strategy"] == "example-medusa"
    assert logged.config["training"]["eval_every"] == 4 and logged.config["eval"]["k"] == 3
    lines = metrics(run_dir)
    assert [row["_step"] for row in logged.history] == [x["step"] for x in lines]
    for row, line in zip(logged.history, lines):
        want = numeric(line)
        assert {k: row[k] for k in want} == pytest.approx(want), line["step"]
    assert [row["_step"] for row in logged.history if "eval/tau" in row] == [4, 8, 10]
    assert "eval/accept_pos3" in logged.history[3]
    assert logged.summary["steps"] == 10
    assert logged.summary["final_loss"] == pytest.approx(lines[-1]["loss"])
    report = json.loads((run_dir / "eval.json").read_text())  # the final evaluation, after training
    assert logged.summary["final/tau_before"] == pytest.approx(report["before"]["tau"])
    assert logged.summary["final/tau_after"] == pytest.approx(report["after"]["tau"])


def test_resume_continues_the_same_wandb_run(specforge_tiny_target, specforge_chats, tmp_path):
    common = ("--set", "training.save_every=2", "--set", "eval.enabled=false")
    killed = specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "r", *common),
                       env={**offline(tmp_path), "SPECFORGE_TEST_KILL_AT": "step:7"}, check=False)
    assert killed.returncode == -9, killed.stderr
    specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "r", *common, "--resume"),
              env=offline(tmp_path))
    saved = json.loads((tmp_path / "r" / "wandb-run.json").read_text())["id"]
    folders = offline_runs(tmp_path)
    assert len(folders) == 2 and all(f.name.endswith(f"-{saved}") for f in folders), \
        "both sessions write to the W&B run whose id the killed one saved"
    resumed = read_offline_run(folders[-1])  # the killed session's client was killed before writing its log
    assert resumed.run_id == saved
    assert [row["_step"] for row in resumed.history] == [7, 8, 9, 10], "the resumed session starts after step 6"
    assert resumed.history[-1]["loss"] == pytest.approx(metrics(tmp_path / "r")[-1]["loss"])


def test_without_wandb_project_nothing_is_logged(specforge_tiny_target, specforge_chats, tmp_path):
    env = {**offline(tmp_path), "WANDB_PROJECT": ""}
    specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "r", "--set", "training.max_steps=2",
                    "--set", "eval.enabled=false"), env=env)
    assert len(metrics(tmp_path / "r")) == 2
    assert not (tmp_path / "wandb-dir").exists() and not (tmp_path / "r" / "wandb").exists()
    assert not (tmp_path / "r" / "wandb-run.json").exists()


def test_registration_imports_neither_torch_nor_wandb():
    code = ("import sys, specforge_wandb.plugin; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'wandb')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_specforge_plugins_lists_it_as_an_observer():
    rows = json.loads(specforge("plugins", "--json").stdout)
    (row,) = [r for r in rows if r["kind"] == "observer" and r["name"] == "wandb"]
    assert row["distribution"] == "specforge-wandb" and row["status"] == "ok"
    assert row["summary"] == "run hooks: on_run_start, on_step_end, on_run_end, on_run_finished"
