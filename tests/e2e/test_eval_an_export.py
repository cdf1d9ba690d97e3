"""`specforge eval EXPORT` measures an export on its own: the demo's held-out prompts for a demo
run, and for a run on the user's data without held-out prompts, one line saying what to pass."""

from __future__ import annotations

import json

import pytest

from specforge.testing.cli import run_specforge

# A short run needs only a few batches of the demo's 4200 conversations (capturing all takes minutes).
SHORT = ("--set", "training.max_steps=2", "--set", "eval.enabled=false", "--set", "data.max_samples=32")


@pytest.mark.slow
@pytest.mark.demo
def test_the_export_of_a_demo_run_evaluates_on_the_demos_held_out_prompts(tmp_path) -> None:
    from specforge.demo.assets import ensure_demo_assets

    assets = ensure_demo_assets()  # built once per CI run into SPECFORGE_CACHE_DIR
    run_specforge("run", "--strategy", "example-medusa", "--output-dir", str(tmp_path), "--name", "demo", *SHORT)
    export = tmp_path / "demo" / "export"
    done = run_specforge("eval", str(export), "--num-prompts", "2")
    report = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert report["strategy"] == "example-medusa" and report["num_prompts"] == 2 and report["lossless_checked"]
    assert report["prompts"] == str(assets.heldout_path)
    assert "acceptance length τ:" in done.stdout


@pytest.mark.slow
def test_the_export_of_a_run_on_user_data_without_held_out_prompts_says_to_pass_prompts(
        specforge_tiny_target, specforge_chats, tmp_path) -> None:
    run_specforge("run", "--strategy", "example-medusa", "--target-model", str(specforge_tiny_target),
                  "--data", str(specforge_chats), "--output-dir", str(tmp_path), "--name", "mine", *SHORT,
                  "--set", "training.batch_size=2")
    export = tmp_path / "mine" / "export"
    refused = run_specforge("eval", str(export), check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: the export {export} names no held-out prompts (its run had no data.eval_path); pass --prompts "
        f"FILE: conversations JSONL the draft was not trained on (the last assistant reply of each line is "
        f"dropped and generated)"]
    done = run_specforge("eval", str(export), "--prompts", str(specforge_chats), "--num-prompts", "2")
    assert "acceptance length τ:" in done.stdout


@pytest.mark.slow
def test_an_eagle3_export_evaluates_with_sglangs_tree_settings_and_a_chain_drafter_is_refused(tmp_path) -> None:
    from specforge.demo.assets import ensure_demo_assets

    ensure_demo_assets()
    run_specforge("run", "--strategy", "eagle3", "--output-dir", str(tmp_path), "--name", "e3", *SHORT)
    done = run_specforge("eval", str(tmp_path / "e3" / "export"), "--num-prompts", "2", "--k", "2", "--topk", "3",
                         "--num-draft-tokens", "6")
    report = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert report["draft"] == {"num_steps": 2, "topk": 3, "num_draft_tokens": 6, "kv_cache": True}
    assert report["lossless_checked"] and "tree 2/3/6" in done.stdout
    run_specforge("run", "--strategy", "example-medusa", "--output-dir", str(tmp_path), "--name", "m", *SHORT)
    refused = run_specforge("eval", str(tmp_path / "m" / "export"), "--num-prompts", "2", "--topk", "2", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "strategy 'example-medusa' drafts chains, not trees: set eval.topk = 1" in refused.stderr
