"""benchmarks/train_throughput.py works end to end on its smoke preset: isolated children that
import only the tree they measure, a --compare arm on a temporary git worktree, and FLOP counts
that match a hand count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "train_throughput.py"


def run_bench(*args: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--preset", "smoke", "--strategy", "eagle3", "--steps", "1",
                           "--threads", "1", "--json", *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_compare_measures_both_trees_each_importing_only_itself() -> None:
    doc = run_bench("--compare", "HEAD", "--repeats", "1", "--no-growth")
    rows = {row["arm"]: row for row in doc["summary"]}
    assert set(rows) == {"new", "old"}
    for arm, row in rows.items():
        assert row["status"] == "ok", row
        files = row["imports"].values()
        if arm == "new":
            assert all(Path(f).is_relative_to(ROOT) for f in files), row["imports"]
        else:  # the temporary worktree, not this checkout
            assert all(not Path(f).is_relative_to(ROOT) and "ref-" in f for f in files), row["imports"]
        assert row["largest_tensor_elems"] > 0 and row["mm_fraction"] > 0
    old_tree = next(a["tree"] for a in doc["arms"] if a["label"] == "old")
    worktrees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True,
                               check=True).stdout
    assert old_tree not in worktrees and not Path(old_tree).exists()  # removed afterwards


def test_a_run_over_the_memory_cap_is_reported_not_fatal() -> None:
    doc = run_bench("--memory-cap-gib", "0.05", "--no-growth")
    assert doc["summary"][0]["status"] == "out of memory (> 0.05 GiB)"


def test_eagle3_flops_match_a_hand_count() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import train_throughput as bench
    finally:
        sys.path.remove(str(SCRIPT.parent))
    shape = bench.Shape(4, vocab=10, draft_vocab=6, hidden=8, heads=2, kv_heads=1, intermediate=12, ttt_length=2)
    flops = bench.eagle3_flops(shape)
    # S=4, H=8, h=2, h_kv=1, d=4: attention pairs are 4*5/2 = 10 at step 0 and 10 + 4 at step 1
    assert flops["attention"] == 3 * 2 * 2 * 2 * 4 * (10 + 14)
    assert flops["qkv"] == 2 * 3 * 2 * 4 * 16 * (2 + 2) * 4
    assert flops["teacher"] == 2 * 4 * 8 * 10
    assert flops["lm_head"] == 2 * 3 * 2 * 4 * 8 * 6


def test_profile_splits_a_step_into_matmul_attention_and_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--preset", "smoke", "--strategy", "eagle3", "--steps", "1",
                           "--threads", "1", "--no-growth", "--profile", "2", "--json-out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, _, profile_lines = proc.stdout.partition("where a step's time goes")
    assert "smoke eagle3 new: matmul" in profile_lines and "matmul floor" in profile_lines, proc.stdout
    doc = json.loads(out.read_text())
    profile = doc["summary"][0]["profile"]
    assert profile["steps"] == 2 and profile["clock"] == "cpu" and profile["profiled_s_per_step"] > 0
    assert abs(sum(profile["shares"].values()) - 1.0) < 1e-9
    assert profile["shares"]["matmul"] > 0 and profile["shares"]["attention"] > 0  # EAGLE3: mm and fused SDPA
    tops = {t["op"]: t for t in profile["top"]}
    assert tops["aten::mm"]["group"] == "matmul"
    assert [t["share"] for t in profile["top"]] == sorted((t["share"] for t in profile["top"]), reverse=True)
