"""Training throughput and memory of a strategy against sequence length (CPU here, the same on GPU).

    python benchmarks/train_throughput.py --strategy eagle3 --seq-lens 256,512,1024,2048,4096
    python benchmarks/train_throughput.py --strategy dflash --seq-lens 512,1024 --set num_anchors=64

For each sequence length: tokens/s of full training steps (collate, forward, backward, AdamW),
the largest tensor created in one step (elements and MiB, tracked with a TorchDispatchMode, so it
is exact and device independent) and, on CUDA, the peak allocated memory. The target is synthetic
(random frozen embedding/lm_head of the given size); only the draft's cost is measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from specforge.contracts import DataStats, StepContext
from specforge.options import build_options, parse_literal
from specforge.registry import get_registry
from specforge.testing import synthetic


class LargestTensor(TorchDispatchMode):
    """Records the largest floating-point tensor any op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > self.numel:
                self.numel, self.nbytes = t.numel(), t.numel() * t.element_size()
        return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategy", required=True)
    p.add_argument("--seq-lens", default="256,512,1024,2048,4096")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=8, help="target layers")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a strategy option, e.g. --set ttt_length=7")
    p.add_argument("--json", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reg = get_registry().get("strategy", args.strategy)
    raw = {k: parse_literal(v) for k, _, v in (s.partition("=") for s in args.sets)}
    strategy = reg.spec.load()(build_options(reg.spec.options, raw, "strategy"))
    info = synthetic.tiny_target_info(hidden_size=args.hidden, num_layers=args.layers, vocab_size=args.vocab,
                                      num_attention_heads=args.heads, num_key_value_heads=max(1, args.heads // 2),
                                      intermediate_size=args.hidden * 3)
    request = strategy.feature_request(info)
    rows = []
    for seq in (int(s) for s in args.seq_lens.split(",")):
        samples = []
        for b in range(args.batch):
            ids = synthetic.synthetic_ids(seq, info, seed=b)
            samples.append(synthetic.synthetic_features(info, request, ids, synthetic.synthetic_loss_mask(seq)))
        counts = {}
        for s in samples:
            for t, m in zip(s["input_ids"].tolist(), s["loss_mask"].tolist()):
                if m:
                    counts[t] = counts.get(t, 0) + 1
        stats = DataStats(num_samples=len(samples), num_tokens=seq * args.batch, num_loss_tokens=sum(counts.values()),
                          corpus_hash="bench", loss_token_counts=counts)
        draft = strategy.build_draft(info, stats).to(args.device)
        opt = torch.optim.AdamW([q for q in draft.parameters() if q.requires_grad], lr=1e-4)
        batch = {k: v.to(args.device) for k, v in strategy.collate(samples).items()}

        def step(i: int, draft=draft, batch=batch, opt=opt) -> None:
            out = strategy.loss(draft, batch, StepContext(step=i, total_steps=args.steps + 1))
            (out.terms[0] if out.terms is not None else out.loss).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step(0)  # warm-up
        tracker = LargestTensor()
        with tracker:
            step(1)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        for i in range(args.steps):
            step(2 + i)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / args.steps
        rows.append({"seq_len": seq, "tokens_per_s": seq * args.batch / seconds, "step_s": seconds,
                     "largest_tensor_elems": tracker.numel, "largest_tensor_mib": tracker.nbytes / 2**20,
                     "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None})
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        return
    print(f"{args.strategy} on {args.device}: hidden {args.hidden}, vocab {args.vocab}, batch {args.batch}")
    print(f"{'seq_len':>8} {'tokens/s':>10} {'step s':>8} {'largest tensor':>16} {'MiB':>8} {'peak MiB':>9}")
    for r in rows:
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "-"
        print(f"{r['seq_len']:>8} {r['tokens_per_s']:>10.0f} {r['step_s']:>8.3f} {r['largest_tensor_elems']:>16,} "
              f"{r['largest_tensor_mib']:>8.1f} {peak:>9}")


if __name__ == "__main__":
    main()
