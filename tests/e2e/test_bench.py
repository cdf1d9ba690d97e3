"""`specforge bench` on real tiny runs: two drafts side by side, per prompt file and per category,
with the numbers `specforge eval` computes for the same prompts and settings; a demo run benches
on the built-in set with no prompt file; bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specforge.testing.cli import run_specforge

pytestmark = pytest.mark.slow

K, NEW = 3, 8
COMPARED = ("tau", "per_position_acceptance", "tau_from_positions", "num_prompts", "new_tokens", "target_forwards")
HEADER = ["prompts", "category", "run", "n", "τ", "acc@1", "acc@2", "acc@3", "spec tok/s", "greedy tok/s",
          "speed-up"]


def _chat(i: int, **extra) -> dict:
    return {"id": f"q{i}", **extra, "messages": [{"role": "user", "content": f"add {i} and {i + 1}"},
                                                  {"role": "assistant", "content": f"{i} plus {i + 1} is {2 * i + 1}"}]}


def _write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.fixture(scope="module")
def bench_setup(specforge_tiny_target, specforge_chats, tmp_path_factory) -> dict:
    """Runs a (2 steps) and b (8 epochs), three prompt files, one bench of both."""
    root = tmp_path_factory.mktemp("bench")
    for name, training in (("a", ["--set", "training.max_steps=2"]),
                           ("b", ["--set", "training.epochs=8", "--set", "training.lr=3e-3"])):
        run_specforge("run", "--strategy", "example-medusa", "--target-model", str(specforge_tiny_target),
                      "--data", str(specforge_chats), "--output-dir", str(root), "--name", name, *training,
                      "--set", "training.batch_size=2", "--set", "eval.enabled=false",
                      "--set", f"eval.max_new_tokens={NEW}")
    cats = _write(root / "cats.jsonl", [_chat(i, category="even" if i % 2 == 0 else "odd") for i in range(6)])
    even = _write(root / "even.jsonl", [_chat(i, category="even") for i in range(0, 6, 2)])
    plain = _write(root / "plain.jsonl", [_chat(i) for i in range(10, 13)])
    out = root / "report"
    done = run_specforge("bench", str(root / "a"), str(root / "b"), "--prompts", str(cats), "--prompts", str(plain),
                         "--num-prompts", "3", "--max-new-tokens", str(NEW), "--k", str(K), "--output-dir", str(out))
    report = json.loads((out / "bench.json").read_text())
    rows = {(r["run"], r["prompts"], r["category"]): r["result"] for r in report["rows"]}
    return {"root": root, "out": out, "stdout": done.stdout, "report": report, "rows": rows,
            "files": {"cats": cats, "even": even, "plain": plain}}


def _eval(run: Path, prompts: Path) -> dict:
    """What `specforge eval RUN --prompts FILE --k K` reports, from the function it calls, in this
    process: six evaluations here would otherwise start six interpreters (torch and transformers
    imported each time) for numbers that do not depend on the process (the CLI path itself is
    covered by tests/e2e/test_eval_an_export.py)."""
    from specforge.run.evaluate import evaluate_path

    return json.loads(json.dumps(evaluate_path(run, prompts=str(prompts), k=K)))  # as the CLI prints it


def test_bench_has_a_row_per_run_prompt_file_and_category(bench_setup) -> None:
    rows = bench_setup["rows"]
    groups = {("cats", "even"), ("cats", "odd"), ("cats", "all"), ("plain", "-")}
    assert set(rows) == {(run, p, c) for run in ("a", "b") for p, c in groups}
    assert all(rows[(run, "cats", c)]["num_prompts"] == 3 for run in "ab" for c in ("even", "odd"))
    for run in bench_setup["report"]["runs"]:
        assert run["settings"]["max_new_tokens"] == NEW and run["settings"]["k"] == K
    assert all(0 < r["new_tokens"] <= NEW * r["num_prompts"] for r in rows.values())
    assert all(r["speedup"] > 0 and r["greedy_tokens_per_s"] > 0 for r in rows.values())


def test_the_markdown_table_is_printed_and_written_with_a_row_per_run_and_group(bench_setup) -> None:
    text = (bench_setup["out"] / "bench.md").read_text()
    assert text in bench_setup["stdout"]
    lines = text.splitlines()
    start = lines.index("| " + " | ".join(HEADER) + " |")
    end = lines.index("", start)  # the table ends at the first blank line
    body = lines[start + 2:end]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in body]
    assert [c[:3] for c in cells] == [["cats", "even", "a"], ["cats", "even", "b"], ["cats", "odd", "a"],
                                      ["cats", "odd", "b"], ["cats", "all", "a"], ["cats", "all", "b"],
                                      ["plain", "-", "a"], ["plain", "-", "b"]]
    rows = bench_setup["rows"]
    for c in cells:
        assert c[4] == f"{rows[(c[2], c[0], c[1])]['tau']:.2f}"
    assert "| prompts | category | τ a | τ b | speed-up a | speed-up b |" in lines


def test_bench_numbers_are_what_eval_computes_on_the_same_prompts(bench_setup) -> None:
    root, files, rows = bench_setup["root"], bench_setup["files"], bench_setup["rows"]
    for run in "ab":
        for (prompts, category), file in ((("cats", "even"), files["even"]), (("cats", "all"), files["cats"]),
                                          (("plain", "-"), files["plain"])):
            measured = _eval(root / run, file)  # the runs' eval.max_new_tokens is the bench's
            for key in COMPARED:
                assert rows[(run, prompts, category)][key] == measured[key], (run, prompts, category, key)


def test_max_new_tokens_sets_the_generated_length(bench_setup, tmp_path) -> None:
    run_specforge("bench", str(bench_setup["root"] / "a"), "--prompts", str(bench_setup["files"]["plain"]),
                  "--max-new-tokens", "3", "--k", str(K), "--output-dir", str(tmp_path))
    (row,) = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert 0 < row["result"]["new_tokens"] <= 3 * 3 < bench_setup["rows"][("a", "plain", "-")]["new_tokens"]


def test_the_categories_of_a_file_add_up_to_its_all_row(bench_setup) -> None:
    rows = bench_setup["rows"]
    for run in "ab":
        parts = [rows[(run, "cats", c)] for c in ("even", "odd")]
        total = rows[(run, "cats", "all")]
        for key in ("num_prompts", "new_tokens", "target_forwards"):
            assert total[key] == sum(p[key] for p in parts)
        rounds = [p["target_forwards"] - p["num_prompts"] for p in parts]
        accepted = [round(p["tau"] * r) - r for p, r in zip(parts, rounds)]
        assert total["tau"] == pytest.approx((sum(accepted) + sum(rounds)) / sum(rounds), rel=1e-12)


def test_the_bar_chart_is_a_png(bench_setup) -> None:
    png = (bench_setup["out"] / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


def test_bad_input_is_one_line_and_exit_2(bench_setup, tmp_path) -> None:
    root = bench_setup["root"]
    empty = tmp_path / "nothing"
    empty.mkdir()
    no_prompts = _write(tmp_path / "none.jsonl", [])
    cases = [
        (("bench", str(root / "a"), "--prompts", str(tmp_path / "missing.jsonl")),
         f"error: prompts file {str(tmp_path / 'missing.jsonl')!r} does not exist; pass --prompts FILE "
         f"(conversations JSONL, one chat per line, optional \"category\" field)"),
        (("bench", str(empty)),
         f"error: {str(empty)!r} is neither a run folder (with config.toml), a checkpoint folder (with "
         f"state.pt) nor an export folder (with specforge_export.json)"),
        (("bench", str(root / "a"), "--prompts", str(no_prompts)),
         f"error: {no_prompts} holds no usable prompt; pass --prompts FILE with conversations"),
    ]
    for args, message in cases:
        refused = run_specforge(*args, "--output-dir", str(tmp_path / "out"), check=False)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.strip().splitlines()[-1:] == [message]


@pytest.mark.demo  # its run trains on the demo target: run last, once the background build is done
def test_a_demo_run_benches_on_the_built_in_set_with_no_prompt_file(tmp_path) -> None:
    from specforge.demo.tasks import TASKS

    run_specforge("run", "--strategy", "example-medusa", "--output-dir", str(tmp_path), "--name", "demo",
                  "--set", "training.max_steps=2", "--set", "eval.enabled=false")
    out = tmp_path / "report"
    run_specforge("bench", str(tmp_path / "last"), "--num-prompts", "1", "--max-new-tokens", "8",
                  "--output-dir", str(out))
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert [(r["prompts"], r["category"]) for r in rows] == [("demo_prompts", t) for t in sorted(TASKS)] + [
        ("demo_prompts", "all")]
    assert all(r["run"] == "demo" and r["result"]["num_prompts"] == 1 for r in rows[:-1])
    assert (out / "demo_prompts.jsonl").is_file() and (out / "bench.png").stat().st_size > 0
