"""Training-step time and memory of every strategy on named shapes; ``--compare REF`` measures
another git ref the same way in the same invocation.

    python benchmarks/train_throughput.py --preset small-512 --strategy eagle3
    python benchmarks/train_throughput.py --preset small-512,small-2048 --strategy all --compare 5bc279e
    python benchmarks/train_throughput.py --preset long-16k --strategy eagle3 --memory-cap-gib 10
    python benchmarks/train_throughput.py --preset real-vocab --json

Every measured run is a fresh subprocess that imports one source tree only (this checkout, or a
``git worktree`` of REF made for the comparison), checked through ``specforge.__file__`` and
every loaded plugin module, and killed above ``--memory-cap-gib``. A step is collate + forward +
backward + grad clip + AdamW step on a fresh batch (same shapes, new samples). The columns and
the FLOP counts are documented in docs/performance.md; the counts are ``*_flops`` below.

This module imports only the standard library at the top: the parent process never imports
torch or specforge, so it cannot mix trees.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = ("eagle3", "dflash", "domino")
RESULT_TAG = "BENCH-RESULT "
GIB = 2**30
MIB = 2**20
LINEAR_SLACK = 1.02  # growth ratios up to 2 * 1.02 per doubling count as linear (RSS page noise)


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: a synthetic target and the draft options every strategy gets."""

    seq_len: int
    vocab: int = 2048
    draft_vocab: int = 1024  # EAGLE3 only
    hidden: int = 256
    heads: int = 4
    kv_heads: int = 4
    intermediate: int = 1024
    target_layers: int = 8
    ttt_length: int = 7  # EAGLE3 only
    block_size: int = 8  # DFlash / Domino
    anchors: int = 0  # DFlash / Domino; 0: seq_len // 16 (32 at 512, 128 at 2048, 1024 at 16k)
    context_layer: int = 4  # DFlash / Domino read this target layer; one draft layer
    batch: int = 1

    @property
    def num_anchors(self) -> int:
        return self.anchors or max(1, self.seq_len // 16)

    def at(self, seq_len: int) -> Shape:
        """The same shape at another length (anchors keep their per-token density)."""
        return replace(self, seq_len=seq_len, anchors=0 if not self.anchors else self.anchors * seq_len // self.seq_len)


@dataclass(frozen=True)
class Preset:
    shape: Shape
    strategies: tuple[str, ...] = STRATEGIES
    steps: int = 5  # timed steps per run
    growth: tuple[int, ...] = ()  # lengths for the "memory a step adds" series


PRESETS: dict[str, Preset] = {
    "small-512": Preset(Shape(512)),
    "small-2048": Preset(Shape(2048)),
    "long-16k": Preset(Shape(16384), steps=2, growth=(4096, 8192, 16384)),
    "real-vocab": Preset(Shape(4096, vocab=151936, draft_vocab=32000), strategies=("eagle3",), steps=2),
    # a few seconds: for checking the harness itself
    "smoke": Preset(Shape(64, vocab=256, draft_vocab=128, hidden=64, intermediate=128), steps=2,
                    growth=(32, 64)),
}


def strategy_options(strategy: str, shape: Shape) -> dict[str, Any]:
    if strategy == "eagle3":
        return {"ttt_length": shape.ttt_length, "draft_vocab_size": shape.draft_vocab}
    return {"block_size": shape.block_size, "num_anchors": shape.num_anchors,
            "target_layer_ids": [shape.context_layer], "num_draft_layers": 1}


# --------------------------------------------------------------------------- FLOP counts
#
# Useful FLOPs of one step, counted from the method's definition, not from the implementation:
# 2 FLOPs per multiply-add of every matmul the method needs; attention counts only the
# (query, key) pairs the mask lets through (QK^T and PV); recomputation, masked-out blocks,
# padding and elementwise work count nothing. A trained matmul costs 3x its forward (forward,
# weight gradient, input gradient); the input gradient is left out only where nothing trainable
# lies upstream of the input (captured features, a frozen embedding read directly; a normed
# embedding still needs it for the norm's weight), and frozen matmuls whose input needs a
# gradient cost 2x (forward, input gradient). The teacher (no gradient) costs 1x.


def eagle3_flops(s: Shape) -> dict[str, float]:
    """EAGLE3: teacher lm_head once, fc once, then ttt_length decoder steps with their own lm_head.

    Attention at TTT step k: query t sees step-0 keys 0..t and k diagonal keys.
    """
    S, H, h, kv, d = s.seq_len, s.hidden, s.heads, s.kv_heads, s.hidden // s.heads
    parts = {
        "teacher": 2 * S * H * s.vocab,
        "fc": 2 * 2 * S * (3 * H) * H,  # fwd + weight grad (its input is captured features)
        "qkv": s.ttt_length * 3 * 2 * S * (2 * H) * (h + 2 * kv) * d,  # reads [norm(e) ; norm(g)]
        "o_proj": s.ttt_length * 3 * 2 * S * h * d * H,
        "mlp": s.ttt_length * 3 * 2 * S * 3 * H * s.intermediate,
        "lm_head": s.ttt_length * 3 * 2 * S * H * s.draft_vocab,
        "attention": sum(3 * 2 * 2 * h * d * (S * (S + 1) / 2 + k * S) for k in range(s.ttt_length)),
    }
    return {k: v * s.batch for k, v in parts.items()}


def dflash_flops(s: Shape, domino: bool = False) -> dict[str, float]:
    """DFlash (and Domino): fc over the context, context keys/values, N blocks of block_size
    queries through one draft layer, the frozen target lm_head over every block slot.

    Slot j of the block at anchor a sees context keys 0..a-1 and the block's bs keys; anchors
    are drawn uniformly from the valid positions, so sum(a) is N times their mean. Synthetic
    samples supervise positions 3..S-1, so valid anchors are 3..S-2 (mean (S+1)/2).
    """
    S, H, h, kv, d, bs = s.seq_len, s.hidden, s.heads, s.kv_heads, s.hidden // s.heads, s.block_size
    valid = max(0, S - 4)
    n = min(s.num_anchors, valid)
    q = n * bs  # block query slots
    mean_anchor = (S + 1) / 2
    parts = {
        "fc": 2 * 2 * S * H * H,  # one context layer of width H; fwd + weight grad
        "context_kv": 3 * 2 * S * H * 2 * kv * d,
        "block_qkv": 3 * 2 * q * H * (h + 2 * kv) * d,  # reads the normed embedding: its norm is trained
        "o_proj": 3 * 2 * q * h * d * H,
        "mlp": 3 * 2 * q * 3 * H * s.intermediate,
        "attention": 3 * 2 * 2 * h * d * q * (mean_anchor + bs),
        "lm_head": 2 * 2 * q * H * s.vocab,  # frozen target head: fwd + input grad
    }
    if domino:
        g, e = max(1, H // 4), max(1, H // 16)
        corrected = n * (bs - 1)  # pure_draft_prefix_len = 1 slot keeps the base logits
        parts["gru"] = 2 * q * 3 * (2 * H * g + 3 * g * g)  # reads the raw frozen embedding: fwd + wgrad
        parts["correction"] = 3 * 2 * corrected * ((H + g) * e + e * s.vocab)
    return {k: v * s.batch for k, v in parts.items()}


def useful_flops(strategy: str, shape: Shape) -> dict[str, float]:
    if strategy == "eagle3":
        return eagle3_flops(shape)
    if strategy in ("dflash", "domino"):
        return dflash_flops(shape, domino=strategy == "domino")
    return {}


# --------------------------------------------------------------------------- the child


def tree_paths(tree: Path) -> list[Path]:
    """What a child puts on PYTHONPATH to import ``tree`` and nothing else of ours."""
    paths = [tree / "specforge-core" / "src", *sorted((tree / "plugins").glob("*/src"))]
    example = tree / "tests" / "fixtures" / "specforge-example" / "src"
    if example.is_dir():
        paths.append(example)
    return paths


def tree_distributions(tree: Path) -> list[str]:
    """The plugin distributions ``tree`` holds (a plugin folder is named after its distribution)."""
    names = [p.parent.name for p in sorted((tree / "plugins").glob("*/src"))]
    if (tree / "tests" / "fixtures" / "specforge-example" / "src").is_dir():
        names.append("specforge-example")
    return names


def check_imports(tree: Path) -> dict[str, str]:
    """Check that every loaded specforge module lies under ``tree`` (raise otherwise); return the
    ``__file__`` of the packages in use (core, strategies) for the report."""
    loaded = {name: str(Path(mod.__file__).resolve()) for name, mod in list(sys.modules.items())
              if name.split(".")[0].startswith("specforge") and getattr(mod, "__file__", None)}
    root = tree.resolve()
    foreign = {n: f for n, f in loaded.items() if not Path(f).is_relative_to(root)}
    if foreign:
        raise RuntimeError(f"modules imported from outside {root}: {foreign}; the benchmark would mix "
                           "source trees (an editable install shadows PYTHONPATH?)")
    used = {n.split(".")[0] for n in loaded if "." in n and not n.endswith((".plugin", ".options"))}
    return {n: f for n, f in loaded.items() if n.split(".")[0] in used and (n.count(".") == 0
                                                                            or n.endswith(".strategy"))}


class PeakRSS:
    """Peak resident memory since ``reset()``: the kernel's high-water mark (VmHWM, reset via
    /proc/self/clear_refs), else a 2 ms sampling thread, else the lifetime ``ru_maxrss``."""

    def __init__(self) -> None:
        self.exact = False
        self._peak = 0
        self._stop: threading.Event | None = None

    @staticmethod
    def current() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.exact = True
            return
        except OSError:
            pass
        self._peak = self.current()
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self._stop is not None and not self._stop.wait(0.002):
            self._peak = max(self._peak, self.current())

    def peak(self) -> int:
        if self.exact:
            with open("/proc/self/status") as fh:
                return int(re.search(r"VmHWM:\s+(\d+)", fh.read()).group(1)) * 1024
        if self._stop is not None:
            self._stop.set()
            return self._peak
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one (tree, strategy, shape): imported lazily so the parent never loads torch."""
    import gc

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    tree = Path(spec["tree"])
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    from specforge.contracts import DataStats, StepContext
    from specforge.options import build_options
    from specforge.registry import get_registry
    from specforge.testing import synthetic

    shape = Shape(**spec["shape"])
    name, device = spec["strategy"], torch.device(spec["device"])
    cuda = device.type == "cuda"
    autocast_dtype = {"fp32": None, "bf16": torch.bfloat16}[spec["dtype"]]

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def mm_gflops(dtype: torch.dtype) -> float:
        a = torch.randn(1024, 1024, device=device, dtype=dtype)
        b = torch.randn(1024, 1024, device=device, dtype=dtype)
        best = float("inf")
        for _ in range(6):
            sync()
            start = time.perf_counter()
            (a @ b).sum().item() if cuda else a @ b
            sync()
            best = min(best, time.perf_counter() - start)
        return 2 * 1024**3 / best / 1e9

    reg = get_registry().get("strategy", name)
    options = {**strategy_options(name, shape), **spec.get("options", {})}
    strategy = reg.spec.load()(build_options(reg.spec.options, options, "strategy"))
    imports = check_imports(tree)
    info = synthetic.tiny_target_info(hidden_size=shape.hidden, num_layers=shape.target_layers,
                                      vocab_size=shape.vocab, num_attention_heads=shape.heads,
                                      num_key_value_heads=shape.kv_heads, intermediate_size=shape.intermediate)
    request = strategy.feature_request(info)

    def samples(seed: int) -> list[dict]:
        out = []
        for b in range(shape.batch):
            ids = synthetic.synthetic_ids(shape.seq_len, info, seed=seed * 1009 + b)
            out.append(synthetic.synthetic_features(info, request, ids, synthetic.synthetic_loss_mask(shape.seq_len)))
        return out

    corpus = synthetic.synthetic_stats(samples(0))
    stats = DataStats(num_samples=corpus.num_samples, num_tokens=corpus.num_tokens,
                      num_loss_tokens=corpus.num_loss_tokens, corpus_hash="bench",
                      loss_token_counts=corpus.loss_token_counts)
    torch.manual_seed(0)
    draft = strategy.build_draft(info, stats).to(device)
    params = [p for p in draft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    total = spec["warmup"] + spec["steps"] + 1

    def step(i: int, features: list[dict]) -> float:
        """collate + forward + backward + clip + AdamW, the trainer's order; returns the loss."""
        batch = {k: v.to(device) for k, v in strategy.collate(features).items()}
        ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        with ctx:
            out = strategy.loss(draft, batch, StepContext(step=i, total_steps=total))
        if out.terms is not None:
            out.terms[0].backward()
            den = float(out.terms[1])
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(1.0 / max(den, 1e-12))
            loss = float(out.terms[0].detach()) / max(den, 1e-12)
        else:
            out.loss.backward()
            loss = float(out.loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    class LargestTensor(TorchDispatchMode):
        """The largest floating-point tensor any op (forward or backward) returns."""

        def __init__(self) -> None:
            super().__init__()
            self.numel = self.nbytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > self.numel:
                    self.numel, self.nbytes = t.numel(), t.numel() * t.element_size()
            return out

    mm32 = mm_gflops(torch.float32)
    mm_run = mm_gflops(autocast_dtype) if autocast_dtype else mm32
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    baseline = PeakRSS.current()
    peak = PeakRSS()
    peak.reset()
    times, cpu_times, losses = [], [], []
    for i in range(spec["warmup"] + spec["steps"]):
        features = samples(i + 1)  # a fresh batch: not timed (data loading)
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        losses.append(step(i, features))
        sync()
        if i >= spec["warmup"]:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    peak_rss = peak.peak()
    row: dict[str, Any] = {}
    if cuda:
        row["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / MIB
        row["cuda_added_mib"] = (torch.cuda.max_memory_allocated() - cuda_base) / MIB
    if spec["track"]:
        features = samples(total)
        tracker, saved = LargestTensor(), {"numel": 0, "nbytes": 0}

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.numel() > saved["numel"]:
                saved.update(numel=t.numel(), nbytes=t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), tracker:
            step(total - 1, features)
        row.update(largest_tensor_elems=tracker.numel, largest_tensor_mib=tracker.nbytes / MIB,
                   largest_saved_elems=saved["numel"], largest_saved_mib=saved["nbytes"] / MIB)
    if spec.get("profile"):
        batches = [samples(total + 1 + i) for i in range(spec["profile"])]  # built before, not profiled
        row["profile"] = op_profile(lambda i: step(total + i, batches[i]), len(batches), cuda)
    imports.update(check_imports(tree))
    flops = useful_flops(name, shape)
    best = min(times)
    row.update(
        status="ok", times_s=times, median_s=statistics.median(times), min_s=best, cpu_times_s=cpu_times,
        tokens_per_s=shape.seq_len * shape.batch / statistics.median(times), losses=losses,
        baseline_rss_mib=baseline / MIB, peak_rss_mib=peak_rss / MIB, added_rss_mib=(peak_rss - baseline) / MIB,
        rss_exact=peak.exact, mm_fp32_gflops=mm32, mm_gflops=mm_run,
        useful_gflop=sum(flops.values()) / 1e9, flops_by_part={k: v / 1e9 for k, v in flops.items()},
        achieved_gflops=sum(flops.values()) / best / 1e9,
        mm_fraction=sum(flops.values()) / best / 1e9 / mm_run if flops else None,
        threads=torch.get_num_threads(), torch=torch.__version__, imports=imports,
    )
    return row


MATMUL_OPS = frozenset({"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm", "aten::_mm"})
ATTENTION_MARKS = ("scaled_dot_product", "flash_attention", "efficient_attention", "flex_attention",
                   "cudnn_attention")


def op_group(op: str) -> str:
    """matmul (the GEMM kernels), attention (the fused attention kernels) or other."""
    if op in MATMUL_OPS:
        return "matmul"
    if any(mark in op for mark in ATTENTION_MARKS):
        return "attention"
    return "other"


def op_profile(run_step: Callable[[int], object], steps: int, cuda: bool, top: int = 10) -> dict[str, Any]:
    """Where a step's time goes: torch.profiler's self time of every op over ``steps`` steps
    (device time on CUDA), grouped into matmul, fused attention and the rest (elementwise work,
    norms, the loss's softmax, Python and autograd overhead). Self times add up without double
    counting; the profiler's own overhead makes the steps slower, so only the shares are
    compared with the timed steps."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for i in range(steps):
            run_step(i)
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    # Only the ops (CPU-side events): on CUDA each kernel also appears as an entry of its own, and
    # its time is already in the self device time of the op that launched it (aten::mm's GEMM).
    ops = [(e.key, float(getattr(e, attr))) for e in prof.key_averages() if e.device_type == DeviceType.CPU]
    ops = sorted(((k, t) for k, t in ops if t > 0), key=lambda kt: -kt[1])
    total = sum(t for _, t in ops) or 1.0
    groups = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for op, t in ops:
        groups[op_group(op)] += t
    per_step = 1e-6 / steps  # profiler times are microseconds
    return {"steps": steps, "clock": "cuda" if cuda else "cpu", "profiled_s_per_step": total * per_step,
            "shares": {g: t / total for g, t in groups.items()},
            "top": [{"op": op, "group": op_group(op), "s_per_step": t * per_step, "share": t / total}
                    for op, t in ops[:top]]}


def child_entry(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        row = run_child(spec)
    except Exception as exc:  # reported to the parent as the row's status
        import torch
        oom = isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()
        row = {"status": "out of memory (cuda)" if oom else f"error: {type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()}
    print(RESULT_TAG + json.dumps(row), flush=True)


# --------------------------------------------------------------------------- the parent


def rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            match = re.search(r"VmRSS:\s+(\d+)", fh.read())
        return int(match.group(1)) * 1024 if match else 0
    except OSError:
        return 0


def launch(tree: Path, spec: dict[str, Any], cap_gib: float, timeout_s: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter on ``tree``'s sources, under the memory cap."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in tree_paths(tree))
    env["PYTHONNOUSERSITE"] = "1"
    # entry points come from the installed metadata: load only the packages this tree has
    env["SPECFORGE_LOAD_PLUGINS"] = ",".join(tree_distributions(tree))
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    if spec.get("mmap_threshold_mib"):  # glibc: allocations this large are mmapped, freed to the OS at once
        env["MALLOC_MMAP_THRESHOLD_"] = str(int(spec["mmap_threshold_mib"] * MIB))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps({**spec, "tree": str(tree)})]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(tree))
    state = {"peak": 0, "killed": None}

    def watch() -> None:
        while proc.poll() is None:
            rss = rss_of(proc.pid)
            state["peak"] = max(state["peak"], rss)
            if rss > cap_gib * GIB:
                state["killed"] = f"out of memory (> {cap_gib:g} GiB)"
                proc.kill()
                return
            if time.perf_counter() - started > timeout_s:
                state["killed"] = f"timed out (> {timeout_s:g} s)"
                proc.kill()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    watcher.join()
    if state["killed"]:
        return {"status": state["killed"], "watched_peak_rss_mib": state["peak"] / MIB}
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if not lines:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        return {"status": f"error: child exited {proc.returncode} without a result: {tail}"}
    row = json.loads(lines[-1][len(RESULT_TAG):])
    row["watched_peak_rss_mib"] = state["peak"] / MIB
    return row


@dataclass
class Arm:
    """One source tree under test."""

    label: str  # "new" (this checkout) or "old" (the compared ref)
    tree: Path
    ref: str


@dataclass
class Cell:
    """All runs of one (preset, strategy, arm)."""

    preset: str
    strategy: str
    arm: str
    seq_len: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] == "ok"]

    def summary(self) -> dict[str, Any]:
        ok = self.ok()
        out: dict[str, Any] = {"preset": self.preset, "strategy": self.strategy, "arm": self.arm,
                               "seq_len": self.seq_len, "runs": len(self.runs)}
        if not ok:
            out["status"] = self.runs[0]["status"] if self.runs else "not run"
            return out
        times = [t for r in ok for t in r["times_s"]]
        cpu = [t for r in ok for t in r["cpu_times_s"]]
        best = min(times)
        first = ok[0]
        out.update(
            status="ok", best_s=best, median_s=statistics.median(times), tokens_per_s=self.seq_len / best,
            best_cpu_s=min(cpu), median_cpu_s=statistics.median(cpu),
            peak_rss_mib=max(r["peak_rss_mib"] for r in ok), added_rss_mib=max(r["added_rss_mib"] for r in ok),
            baseline_rss_mib=min(r["baseline_rss_mib"] for r in ok),
            largest_tensor_elems=first.get("largest_tensor_elems"), largest_tensor_mib=first.get("largest_tensor_mib"),
            largest_saved_elems=first.get("largest_saved_elems"), largest_saved_mib=first.get("largest_saved_mib"),
            useful_gflop=first["useful_gflop"], mm_gflops=max(r["mm_gflops"] for r in ok),
            mm_fraction=(first["useful_gflop"] / best / max(r["mm_gflops"] for r in ok)) if first["useful_gflop"]
            else None, first_loss=first["losses"][0], imports=first["imports"],
        )
        if "cuda_peak_mib" in first:
            out["cuda_peak_mib"] = max(r["cuda_peak_mib"] for r in ok)
        profiled = next((r["profile"] for r in ok if "profile" in r), None)
        if profiled is not None:
            out["profile"] = profiled
        if len(ok) < len(self.runs):
            out["failed_runs"] = [r["status"] for r in self.runs if r["status"] != "ok"]
        return out


def make_worktree(ref: str, root: Path) -> tuple[Path, str]:
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                         check=True, capture_output=True, text=True).stdout.strip()
    path = root / f"ref-{sha[:12]}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), sha],
                   check=True, capture_output=True, text=True)
    return path, sha


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                   check=False, capture_output=True, text=True)
    shutil.rmtree(path, ignore_errors=True)


def describe_head() -> str:
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         check=False, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           check=False, capture_output=True, text=True).stdout.strip()
    return f"{sha}{'+dirty' if dirty else ''}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(args: argparse.Namespace, arms: list[Arm]) -> dict[str, Any]:
    """Every (preset, strategy) on every arm, arms alternating run by run."""
    cells: list[Cell] = []
    growth: list[dict[str, Any]] = []
    base = {"device": args.device, "dtype": args.dtype, "threads": args.threads,
            "mmap_threshold_mib": args.mmap_threshold_mib, "options": dict(_parse_sets(args.sets))}
    for preset_name in args.presets:
        preset = PRESETS[preset_name]
        shape = preset.shape if not args.seq_len else preset.shape.at(args.seq_len)
        shape = replace(shape, batch=args.batch)
        for strategy in _strategies(args.strategy, preset):
            spec = {**base, "strategy": strategy, "shape": asdict(shape), "warmup": args.warmup,
                    "steps": args.steps or preset.steps, "track": True, "profile": 0}
            row = {a.label: Cell(preset_name, strategy, a.label, shape.seq_len) for a in arms}
            for r in range(args.repeats):
                for arm in arms:
                    cell = row[arm.label]
                    if cell.runs and not cell.ok():
                        continue  # out of memory or broken: rerunning the same shapes cannot help
                    log(f"[{preset_name} {strategy} {arm.label} run {r + 1}/{args.repeats}] ...")
                    # the largest-tensor step once per arm: it is exact, the same every run
                    # (and the profiled steps, after the timed ones)
                    first = {"track": r == 0, "profile": args.profile if r == 0 else 0}
                    result = launch(arm.tree, {**spec, **first}, args.memory_cap_gib, args.timeout_s)
                    cell.runs.append(result)
                    log(f"    {_brief(result)}")
            cells.extend(row.values())
            for length in (preset.growth if args.growth else ()):
                g_spec = {**spec, "shape": asdict(shape.at(length)), "warmup": 0, "steps": 1, "track": False}
                for arm in arms:
                    log(f"[{preset_name} {strategy} {arm.label} growth S={length}] ...")
                    result = launch(arm.tree, g_spec, args.memory_cap_gib, args.timeout_s)
                    log(f"    {_brief(result)}")
                    growth.append({"preset": preset_name, "strategy": strategy, "arm": arm.label,
                                   "seq_len": length, "status": result["status"],
                                   "added_rss_mib": result.get("added_rss_mib"),
                                   "peak_rss_mib": result.get("peak_rss_mib"),
                                   "cuda_added_mib": result.get("cuda_added_mib")})
    return {"cells": cells, "growth": growth}


def _brief(result: dict[str, Any]) -> str:
    if result["status"] != "ok":
        return result["status"] + ("\n" + result["traceback"] if "traceback" in result else "")
    return (f"best {result['min_s']:.3f} s, median {result['median_s']:.3f} s, peak RSS "
            f"{result['peak_rss_mib']:.0f} MiB (+{result['added_rss_mib']:.0f}), mm {result['mm_gflops']:.0f} GFLOP/s")


def _strategies(selection: str, preset: Preset) -> list[str]:
    wanted = STRATEGIES if selection == "all" else tuple(s.strip() for s in selection.split(","))
    return [s for s in wanted if s in preset.strategies]


def _parse_sets(sets: list[str]) -> list[tuple[str, Any]]:
    import ast
    out = []
    for item in sets:
        key, _, value = item.partition("=")
        try:
            parsed: Any = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        out.append((key.removeprefix("strategy."), parsed))
    return out


def growth_verdicts(growth: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (preset, strategy, arm): the added memory at each length and whether each doubling of
    the length at most doubles it."""
    keys = dict.fromkeys((g["preset"], g["strategy"], g["arm"]) for g in growth)
    out = []
    for key in keys:
        series = sorted((g for g in growth if (g["preset"], g["strategy"], g["arm"]) == key),
                        key=lambda g: g["seq_len"])
        item = {"preset": key[0], "strategy": key[1], "arm": key[2], "series": series}
        if all(g["status"] == "ok" for g in series):
            values = [g["cuda_added_mib"] if g.get("cuda_added_mib") is not None else g["added_rss_mib"]
                      for g in series]
            ratios = [(b / a) / (lb / la) for a, b, la, lb in zip(values, values[1:],
                                                                  [g["seq_len"] for g in series],
                                                                  [g["seq_len"] for g in series[1:]])]
            item.update(growth_per_length_ratio=ratios, at_most_linear=all(r <= LINEAR_SLACK for r in ratios))
        else:
            item["at_most_linear"] = None
        out.append(item)
    return out


# --------------------------------------------------------------------------- printing


def _fmt_elems(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


def print_table(summary: list[dict[str, Any]], compare: bool) -> None:
    head = (f"{'preset':<11} {'strategy':<8} {'arm':<4} {'S':>6} {'best s':>8} {'median s':>9} {'cpu s':>8} "
            f"{'tok/s':>7} {'peak RSS':>9} {'added':>7} {'largest':>8} {'saved':>8} {'GFLOP':>7} {'of mm':>6} "
            f"{'loss0':>8}  ratio (cpu)")
    print(head)
    print("-" * len(head))
    by_row: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for s in summary:
        by_row.setdefault((s["preset"], s["strategy"]), {})[s["arm"]] = s
    for (preset, strategy), arms in by_row.items():
        for label, s in arms.items():
            lead = f"{preset:<11} {strategy:<8} {label:<4} {s['seq_len']:>6} "
            if s["status"] != "ok":
                print(lead + s["status"])
                continue
            ratio = ""
            if compare and label == "new" and arms.get("old", {}).get("status") == "ok":
                old = arms["old"]
                ratio = f"{s['best_s'] / old['best_s']:.2f}x ({s['best_cpu_s'] / old['best_cpu_s']:.2f}x)"
            frac = f"{100 * s['mm_fraction']:.0f}%" if s["mm_fraction"] is not None else "-"
            print(lead + f"{s['best_s']:>8.3f} {s['median_s']:>9.3f} {s['best_cpu_s']:>8.3f} {s['tokens_per_s']:>7.0f} "
                  f"{s['peak_rss_mib']:>7.0f}Mi {s['added_rss_mib']:>5.0f}Mi "
                  f"{_fmt_elems(s['largest_tensor_elems']):>8} {_fmt_elems(s['largest_saved_elems']):>8} "
                  f"{s['useful_gflop']:>7.1f} {frac:>6} {s['first_loss']:>8.4f}  {ratio}")


def print_growth(verdicts: list[dict[str, Any]]) -> None:
    if not verdicts:
        return
    print("\nmemory a step adds above the process baseline (one process per length):")
    for v in verdicts:
        cells = []
        for g in v["series"]:
            value = g["cuda_added_mib"] if g.get("cuda_added_mib") is not None else g["added_rss_mib"]
            cells.append(f"S={g['seq_len']}: " + (f"{value:.0f} MiB" if g["status"] == "ok" else g["status"]))
        verdict = {True: "at most linear", False: "FASTER than linear", None: "-"}[v["at_most_linear"]]
        ratios = ", ".join(f"{r:.2f}" for r in v.get("growth_per_length_ratio", []))
        extra = f" (increase per doubling / 2: {ratios})" if ratios else ""
        print(f"  {v['preset']} {v['strategy']} {v['arm']}: " + "; ".join(cells) + f" -> {verdict}{extra}")


def print_profile(summary: list[dict[str, Any]]) -> None:
    """Per row: the shares of matmul, fused attention and the rest, and the matmul floor: the best
    step's time if everything but the matmuls took none (the step cannot get below it without
    fewer or faster matmuls)."""
    rows = [s for s in summary if s.get("profile")]
    if not rows:
        return
    print(f"\nwhere a step's time goes (torch.profiler, self time of each op over "
          f"{rows[0]['profile']['steps']} more steps of the first run; shares of the profiled time):")
    for s in rows:
        prof = s["profile"]
        shares = prof["shares"]
        floor = s["best_s"] * shares["matmul"]
        top = ", ".join(f"{t['op']} {100 * t['share']:.0f}%" for t in prof["top"][:4])
        print(f"  {s['preset']} {s['strategy']} {s['arm']}: matmul {100 * shares['matmul']:.0f}%, attention "
              f"{100 * shares['attention']:.0f}%, other {100 * shares['other']:.0f}%; matmul floor "
              f"{floor:.3f} s of the best {s['best_s']:.3f} s; top: {top}")


def print_imports(summary: list[dict[str, Any]], arms: list[Arm]) -> None:
    for arm in arms:
        seen: dict[str, str] = {}
        for s in summary:
            if s["arm"] == arm.label:
                seen.update(s.get("imports") or {})
        if seen:
            print(f"\n{arm.label} = {arm.ref} at {arm.tree}; a child imported:")
            for name, path in sorted(seen.items()):
                print(f"  {name}: {path}")


# --------------------------------------------------------------------------- main


def preset_names(selection: str) -> list[str]:
    """``--preset``'s comma-separated names."""
    return [s.strip() for s in selection.split(",")]


def build_parser() -> argparse.ArgumentParser:
    """The command line (the docs' benchmark lines are checked against it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--preset", default="small-512", help=f"comma-separated, of {', '.join(PRESETS)}")
    p.add_argument("--strategy", default="all", help="comma-separated strategy names, or all")
    p.add_argument("--compare", metavar="GIT_REF", help="also measure this ref (a temporary git worktree)")
    p.add_argument("--repeats", type=int, default=None, help="runs per arm (default 3 with --compare, else 1)")
    p.add_argument("--steps", type=int, default=0, help="timed steps per run (default: the preset's)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    p.add_argument("--seq-len", type=int, default=0, help="override the presets' sequence length")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast, as the trainer on CUDA")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch threads in each child (0: torch's default)")
    p.add_argument("--memory-cap-gib", type=float, default=20.0, help="kill a run whose RSS exceeds this")
    p.add_argument("--mmap-threshold-mib", type=float, default=0,
                   help="run children with MALLOC_MMAP_THRESHOLD_ at this size (glibc): large blocks are "
                        "returned to the OS when freed, so RSS follows the live tensors (0: the default "
                        "allocator, which keeps freed heap blocks and inflates RSS at long lengths)")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="kill a run that takes longer")
    p.add_argument("--no-growth", dest="growth", action="store_false",
                   help="skip the memory-growth series of presets that have one (long-16k)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a strategy option for every run, e.g. --set ttt_length=3")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="profile N more steps (first run of each arm) with torch.profiler: the shares of "
                        "matmuls, fused attention and the rest, the top ops, and the matmul floor")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON document to FILE")
    return p


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    if args.child:
        child_entry(args.child)
        return
    args.presets = preset_names(args.preset)
    unknown = [s for s in args.presets if s not in PRESETS]
    if unknown:
        p.error(f"unknown preset {unknown}; choose from {', '.join(PRESETS)}")
    if args.repeats is None:
        args.repeats = 3 if args.compare else 1
    arms = [Arm("new", REPO, describe_head())]
    scratch = Path(tempfile.mkdtemp(prefix="specforge-bench-"))
    try:
        if args.compare:
            tree, sha = make_worktree(args.compare, scratch)
            arms.append(Arm("old", tree, f"{args.compare} ({sha[:12]})"))
        result = measure(args, arms)
    finally:
        for arm in arms[1:]:
            remove_worktree(arm.tree)
        shutil.rmtree(scratch, ignore_errors=True)
    summary = [c.summary() for c in result["cells"]]
    verdicts = growth_verdicts(result["growth"])
    doc = {"arms": [{"label": a.label, "ref": a.ref, "tree": str(a.tree)} for a in arms], "device": args.device,
           "dtype": args.dtype,
           "threads": args.threads, "mmap_threshold_mib": args.mmap_threshold_mib,
           "summary": summary, "growth": verdicts, "runs": [asdict(c) for c in result["cells"]]}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=1) + "\n")
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        print()
        return
    arms_text = ", ".join(f"{a.label} = {a.ref}" for a in arms)
    allocator = f"; MALLOC_MMAP_THRESHOLD_={args.mmap_threshold_mib:g} MiB" if args.mmap_threshold_mib else ""
    print(f"\ntraining step, {args.device} {args.dtype}, batch {args.batch}{allocator}; {arms_text}; "
          f"{args.repeats} run(s) per arm, best and median over all timed steps; ratio = best new / best old "
          f"(wall time; in brackets the same for the process's CPU time, robust to a loaded machine at 1 thread)")
    print_table(summary, compare=bool(args.compare))
    print_growth(verdicts)
    print_profile(summary)
    print_imports(summary, arms)


if __name__ == "__main__":
    main()
