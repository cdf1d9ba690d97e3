"""Bad input through the real CLI: exit code 2, one line naming the problem and the fix, nothing written.

Each case runs ``specforge`` in a fresh process the way a user does, in an empty working
directory, and checks that nothing appeared there or in the output directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from specforge.testing.cli import run_specforge


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny target without any mask, pad, eos or unk token and no unused embedding row, plus chats."""
    from specforge.testing.tiny_models import make_tiny_target

    root = tmp_path_factory.mktemp("bad-input")
    make_tiny_target(root / "target", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0)
    chats = root / "chats.jsonl"
    chats.write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"say {i}"}, {"role": "assistant", "content": f"{i} {i} {i}"}]}) + "\n"
        for i in range(8)))
    return root


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


def refused(cwd: Path, *args: str, watch: Path | None = None) -> str:
    """Run the CLI; assert exit 2, exactly one stderr line starting with 'error:', nothing written."""
    watch = watch or cwd
    before = files_under(watch)
    proc = run_specforge(*args, cwd=cwd, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert files_under(watch) == before, "a refused command wrote files"
    return lines[0]


def run_args(world: Path, *extra: str) -> tuple[str, ...]:
    return ("run", "--strategy", "example-medusa", "--target-model", str(world / "target"),
            "--data", str(world / "chats.jsonl"), "--output-dir", "runs", *extra)


@pytest.mark.parametrize(("sets", "fragments"), [
    (["training.max_grad_norm=-1"], ["training.max_grad_norm must be at least 0", "0 means no clipping"]),
    (["training.lr=-0.001"], ["training.lr must be greater than 0", "got -0.001"]),
    (["training.warmup_ratio=2"], ["training.warmup_ratio must be in [0, 1]", "got 2"]),
    (["eval.k=0"], ["eval.k must be at least 1"]),
    (["eval.num_prompts=-1"], ["eval.num_prompts must be at least 1"]),
    (["strategy.num_heads=0"], ["strategy.num_heads must be at least 1"]),
    (["training.lr=-1", "training.warmup_ratio=2"], ["training.lr", "training.warmup_ratio"]),  # all at once
])
@pytest.mark.parametrize("plan", [True, False], ids=["plan", "run"])
def test_out_of_range_numbers_are_refused_in_plan_and_run(world, tmp_path, sets, fragments, plan):
    args = [*run_args(world), *(x for s in sets for x in ("--set", s)), *(["--plan"] if plan else [])]
    line = refused(tmp_path, *args)
    assert all(f in line for f in fragments), line


@pytest.mark.parametrize(("flag", "value"), [("--k", "0"), ("--num-prompts", "-1")])
def test_eval_refuses_a_count_below_one_instead_of_using_the_run_s(world, tmp_path, flag, value):
    line = refused(tmp_path, "eval", str(tmp_path), flag, value)
    assert f"'{flag}': {value} is not in the range x>=1" in line and "specforge eval --help" in line, line


def test_a_directory_as_data_says_what_it_is(world, tmp_path):
    line = refused(tmp_path, "run", "--strategy", "example-medusa", "--target-model", str(world / "target"),
                   "--data", str(world), "--plan")
    assert "is a directory; pass a conversations JSONL file with --data" in line


def test_a_missing_data_file_is_refused_in_plan(world, tmp_path):
    line = refused(tmp_path, "run", "--strategy", "example-medusa", "--target-model", str(world / "target"),
                   "--data", str(tmp_path / "nope.jsonl"), "--plan")
    assert "does not exist; pass an existing file with --data" in line


def test_a_target_without_weights_is_refused_in_plan(world, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((world / "target" / "config.json").read_text())
    line = refused(tmp_path, "run", "--strategy", "example-medusa", "--target-model", str(bare), "--data",
                   str(world / "chats.jsonl"), "--plan", watch=tmp_path / "runs")
    assert "has neither model.safetensors nor model.safetensors.index.json" in line


def test_an_unresolvable_mask_token_is_refused_by_plan_before_any_capture(world, tmp_path):
    target = tmp_path / "no-specials"
    target.mkdir()
    for f in (world / "target").iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    from specforge.engines.tokenizer_files import read_special_tokens

    (target / "special_tokens_map.json").unlink(missing_ok=True)
    config = json.loads((target / "tokenizer_config.json").read_text())
    for role in ("mask_token", "pad_token", "eos_token", "unk_token", "bos_token"):
        config.pop(role, None)
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    model = json.loads((target / "config.json").read_text())
    model["vocab_size"] = read_special_tokens(target).tokenizer_size  # no embedding row left unused
    (target / "config.json").write_text(json.dumps(model))
    for plan in (["--plan"], []):
        line = refused(tmp_path, "run", "--strategy", "dflash", "--target-model", str(target), "--data",
                       str(world / "chats.jsonl"), "--output-dir", "runs", *plan)
        assert "--set strategy.mask_token_id=" in line, line


ONE_STEP = ("--set", "eval.enabled=false", "--set", "export.enabled=false", "--set", "training.max_steps=1")


@pytest.fixture(scope="module")
def one_step_run(world, tmp_path_factory) -> Path:
    """The runs folder of one finished 1-step run, trained once for every test below that reads one
    (each test that could change it works on its own copy)."""
    cwd = tmp_path_factory.mktemp("one-step")
    run_specforge(*run_args(world, *ONE_STEP), cwd=cwd)
    return cwd / "runs"


def test_an_unknown_export_format_is_refused_before_any_work(one_step_run, tmp_path):
    shutil.copytree(one_step_run, tmp_path / "runs", symlinks=True)
    line = refused(tmp_path, "export", str(tmp_path / "runs" / "example-medusa-offline"), "--format", "onnx")
    assert "strategy 'example-medusa' exports 'hf', not 'onnx'; use --format hf" in line
    assert not (tmp_path / "runs" / "example-medusa-offline" / "export").exists(), "no work was done"


@pytest.mark.parametrize("damage", ["truncate weights", "remove weights", "remove state"])
@pytest.mark.parametrize("command", ["export", "eval"])
def test_a_damaged_checkpoint_is_named(one_step_run, tmp_path, damage, command):
    shutil.copytree(one_step_run, tmp_path / "runs", symlinks=True)  # each case damages its own copy
    ckpt = next((tmp_path / "runs" / "example-medusa-offline" / "checkpoints").iterdir())
    weights, state = ckpt / "draft.safetensors", ckpt / "state.pt"
    if damage == "truncate weights":
        weights.write_bytes(weights.read_bytes()[:40])
    elif damage == "remove weights":
        weights.unlink()
    else:
        state.unlink()
    line = refused(tmp_path, command, str(ckpt))
    name = "state.pt" if damage == "remove state" else "draft.safetensors"
    assert name in line and "earlier checkpoint" in line, line


def test_an_unwritable_output_dir_is_named(world, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = refused(tmp_path, *run_args(world)[:-1], str(blocker / "runs"))
    assert "cannot write the run folder" in line and "--output-dir" in line


def test_a_malformed_line_names_the_setting_that_skips_it(world, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text((world / "chats.jsonl").read_text() + "{not json\n")
    line = refused(tmp_path, "run", "--strategy", "example-medusa", "--target-model", str(world / "target"),
                   "--data", str(bad), "--output-dir", "runs", watch=tmp_path / "runs")
    assert "bad.jsonl:9" in line and "--set data.skip_bad_lines=true" in line


def test_an_unknown_strategy_lists_the_installed_strategies_in_plural(tmp_path):
    line = refused(tmp_path, "run", "--strategy", "nope", "--plan")
    assert "installed strategies:" in line and "strategys" not in line


def test_resuming_a_finished_run_says_so_instead_of_a_nan_loss(world, one_step_run, tmp_path):
    shutil.copytree(one_step_run, tmp_path / "runs", symlinks=True)
    proc = run_specforge(*run_args(world, *ONE_STEP), "--resume", cwd=tmp_path)
    assert "already finished at step 1" in proc.stderr
    assert "final loss nan" not in proc.stderr


def test_an_unknown_demo_recipe_is_refused_naming_the_recipes(tmp_path):
    proc = run_specforge("run", "--strategy", "eagle3", "--plan", cwd=tmp_path, check=False,
                         env={"SPECFORGE_DEMO_RECIPE": "fast"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "SPECFORGE_DEMO_RECIPE='fast' is not a demo recipe; use one of full, quick" in lines[0]
    assert not any(tmp_path.iterdir())
