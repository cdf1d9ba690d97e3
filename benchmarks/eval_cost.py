"""What evaluation costs against the generated length, with and without the target's KV cache.

    python benchmarks/eval_cost.py                       # eagle3 draft on the demo target, 32 prompts
    python benchmarks/eval_cost.py --run runs/eagle3-offline --lengths 64,256 --json
    python benchmarks/eval_cost.py --set strategy.draft_kv_cache=false   # EAGLE3 without its draft cache

Decodes the demo's held-out prompts speculatively (float64 on CPU, as the demo evaluates) with
stop tokens ignored, so every prompt really generates the requested length; three paths: with
``kv_cache`` (incremental verification) in batches of ``--batch-size`` prompts verified together
(``eval.batch_size``), with ``kv_cache`` one prompt at a time, and re-running the sequence each
round, one prompt at a time; each checked lossless against the engine's own greedy output (in
the same groups, which are also the speed-up's baseline). Prints, per length and path, the
seconds for all prompts, speculative and plain greedy tokens/s and their ratio (the measured
speed-up), then the growth from the shortest to the longest length (linear in the length is the
ratio of the lengths) and the re-run/cached ratios at each length. With ``--run`` the trained
draft of that run is used, else an untrained draft of ``--strategy`` (the same cost per round;
more rounds, since little is accepted).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _draft(strategy_name: str, run: str | None, info, stats, sets: list[str]):
    from specforge.config import resolve
    from specforge.registry import get_registry

    if run:
        from specforge.run.folder import locate
        from specforge.run.rebuild import rebuild

        rebuilt = rebuild(locate(run), info=info)
        return rebuilt.strategy, rebuilt.draft
    config = resolve(get_registry(), flags={"strategy": strategy_name}, sets=sets)
    strategy = config.strategy.build()
    torch.manual_seed(0)
    return strategy, strategy.build_draft(info, stats)


def main() -> None:
    from specforge.data.stats import compute_stats
    from specforge.demo.assets import ensure_demo_assets
    from specforge.engines.hf import HFEngine
    from specforge.evaluation.evaluate import load_eval_prompts
    from specforge.evaluation.speculative import check_lossless, decode_groups, summarize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="eagle3")
    parser.add_argument("--run", help="a run folder whose trained draft to use")
    parser.add_argument("--lengths", default="64,256")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8,
                        help="eval.batch_size of the batched cached path (prompts verified together)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time (single-threaded, so what the work costs even on a "
                             "machine other jobs share); wall: elapsed time")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="strategy.KEY=VALUE",
                        help="an option of the untrained draft's strategy, e.g. strategy.draft_kv_cache=false")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    assets = ensure_demo_assets(progress=False)
    engine = HFEngine(model_path=str(assets.target_dir), dtype=args.dtype, device="cpu")
    info = engine.info()
    prompts, names, _ = load_eval_prompts(str(assets.heldout_path), info.tokenizer, args.prompts)
    if args.run and args.sets:
        parser.error("--set configures the untrained draft; a --run's strategy keeps its run's options")
    strategy, draft = _draft(args.strategy, args.run, info, compute_stats([]), args.sets)
    draft = draft.to(info.embed_weight.dtype).eval()
    request = strategy.feature_request(info)
    rows = []
    paths = [(True, args.batch_size), (True, 1), (False, 1)]  # (kv_cache, eval.batch_size)
    for length in [int(x) for x in args.lengths.split(",")]:
        for kv, batch in paths:
            started = clock()
            traces = [t for _, group in decode_groups(engine, strategy, draft, prompts, request, k=args.k,
                                                      max_new_tokens=length, kv_cache=kv, batch_size=batch)
                      for t in group]
            seconds = clock() - started
            greedy = check_lossless(engine, prompts, traces, length, (), names, batch_size=batch)
            result = summarize(traces, args.k, greedy)
            rows.append({"max_new_tokens": length, "kv_cache": kv, "batch_size": batch, "seconds": round(seconds, 2),
                         "tau": round(result.tau, 3), "tokens_per_s": round(result.tokens_per_s, 1),
                         "greedy_tokens_per_s": round(result.greedy_tokens_per_s, 1),
                         "speedup": round(result.speedup, 2)})
    engine.close()
    lengths = sorted({r["max_new_tokens"] for r in rows})
    by = {(r["max_new_tokens"], r["kv_cache"], r["batch_size"]): r["seconds"] for r in rows}
    batched, single, rerun = paths
    summary = {
        "growth_cached_batched": by[(lengths[-1], *batched)] / by[(lengths[0], *batched)],
        "growth_cached": by[(lengths[-1], *single)] / by[(lengths[0], *single)],
        "growth_rerun": by[(lengths[-1], *rerun)] / by[(lengths[0], *rerun)],
        "linear_growth": lengths[-1] / lengths[0],
        "rerun_over_cached_batched": {n: by[(n, *rerun)] / by[(n, *batched)] for n in lengths},
        "rerun_over_cached": {n: by[(n, *rerun)] / by[(n, *single)] for n in lengths},
    }
    if args.json:
        print(json.dumps({"clock": args.clock, "rows": rows, "summary": summary}, indent=2))
        return
    print(f"seconds: {args.clock} clock; tokens/s and speed-up: wall clock")
    print(f"{'new tokens':>10} {'kv cache':>8} {'batch':>5} {'seconds':>8} {'tau':>6} {'spec tok/s':>10} "
          f"{'greedy tok/s':>12} {'speed-up':>8}")
    for r in rows:
        print(f"{r['max_new_tokens']:>10} {r['kv_cache']!s:>8} {r['batch_size']:>5} {r['seconds']:>8} {r['tau']:>6} "
              f"{r['tokens_per_s']:>10} {r['greedy_tokens_per_s']:>12} {r['speedup']:>8}")
    print(f"time growth {lengths[0]} -> {lengths[-1]} tokens: cached, batches of {args.batch_size} "
          f"{summary['growth_cached_batched']:.2f}x, cached one by one {summary['growth_cached']:.2f}x, re-run "
          f"{summary['growth_rerun']:.2f}x (linear: {summary['linear_growth']:.1f}x)")
    for n in lengths:
        print(f"at {n} tokens the re-run path takes {summary['rerun_over_cached_batched'][n]:.2f}x the time of the "
              f"cached path in batches of {args.batch_size}, {summary['rerun_over_cached'][n]:.2f}x that of the "
              f"cached path one by one")


if __name__ == "__main__":
    main()
