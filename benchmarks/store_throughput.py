"""Put+get throughput of the feature stores, beside a plain memory copy and Mooncake's raw transport.

    python benchmarks/store_throughput.py                      # memory, disk, mooncake; 1 and 2 processes
    python benchmarks/store_throughput.py --samples 64 --tokens 1024 --hidden 2048 --stores disk,mooncake

The payload is shaped like captured features: per sample ``hidden_states`` bf16 [S, 3H] plus
``input_ids`` and ``loss_mask`` int64 [S]. Rows:

- ``memcpy``: each tensor copied into preallocated memory and back out (the ceiling: one copy per
  put and per get at the machine's memory bandwidth, no allocation)
- a store in one process: ``put_many`` then ``get_many`` of every sample, in batches
- a store across two processes: a writer process puts, then a reader process gets (each timed
  inside its process, start-up excluded); the memory store cannot, by design
- ``transfer-engine``: Mooncake's raw TransferEngine writing then reading the same tensors
  (one transfer each) between two processes over TCP: the transport without the store's
  master round trips and bookkeeping

Throughput is tensor MiB per second; "put+get" is the payload moved through the store end to end
(bytes / (put time + get time)), and the last column divides it by the memcpy row's. Each figure
is the best of ``--repeats`` after one uncounted warm-up round (fresh memory costs page faults on
first touch, which would otherwise dominate). The mooncake store runs against a managed master
on 127.0.0.1 and is the segment owner; its two-process writer and reader attach as pure clients.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from specforge.contracts import FeatureKey, FeatureRecord

NAMESPACE = "bench"


# --------------------------------------------------------------------------- payload


def payload(samples: int, tokens: int, hidden: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [{"hidden_states": torch.randn(tokens, 3 * hidden, generator=gen).to(torch.bfloat16),  # [S, 3H]
             "input_ids": torch.randint(0, 150_000, (tokens,), generator=gen),  # [S]
             "loss_mask": torch.ones(tokens, dtype=torch.int64)} for _ in range(samples)]


def nbytes(data: list[dict[str, torch.Tensor]]) -> int:
    return sum(t.nbytes for sample in data for t in sample.values())


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------- timed operations


def time_memcpy(data: list[dict[str, torch.Tensor]], stored: list[dict], out: list[dict]) -> tuple[float, float]:
    """Copy every tensor into preallocated memory and back out: the bandwidth, no allocation."""
    start = time.perf_counter()
    for sample, dst in zip(data, stored):
        for name, tensor in sample.items():
            dst[name].copy_(tensor)
    put = time.perf_counter() - start
    start = time.perf_counter()
    for src, dst in zip(stored, out):
        for name, tensor in src.items():
            dst[name].copy_(tensor)
    return put, time.perf_counter() - start


def time_put(store: Any, data: list[dict[str, torch.Tensor]], prefix: str, batch: int) -> tuple[float, list[Any]]:
    keyed = [(FeatureKey(NAMESPACE, f"{prefix}/{i}", 0), s) for i, s in enumerate(data)]
    start = time.perf_counter()
    records = [r for chunk in batches(keyed, batch) for r in store.put_many(chunk)]
    return time.perf_counter() - start, records


def time_get(store: Any, records: list[FeatureRecord], batch: int) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    out = [s for chunk in batches(records, batch) for s in store.get_many(chunk)]
    return time.perf_counter() - start, out


def check(got: list[dict], data: list[dict[str, torch.Tensor]]) -> None:
    for i in (0, len(data) - 1):
        for name, tensor in data[i].items():
            if not torch.equal(got[i][name].view(torch.uint8), tensor.view(torch.uint8)):
                raise SystemExit(f"sample {i} {name}: the store returned other bytes than were put")


def in_process(store: Any, data: list[dict[str, torch.Tensor]], batch: int, repeats: int) -> tuple[float, float]:
    puts, gets = [], []
    for r in range(repeats + 1):  # round 0 warms the allocator and the connections up; not counted
        put, records = time_put(store, data, f"r{r}", batch)
        get, got = time_get(store, records, batch)
        check(got, data)
        for record in records:
            store.delete(record)
        puts.append(put)
        gets.append(get)
    return min(puts[1:]), min(gets[1:])


# --------------------------------------------------------------------------- two processes


def child(args: argparse.Namespace) -> None:
    """``--child writer|reader``: open the store from its descriptor, put or get, report seconds."""
    from specforge.stores.reopen import open_store

    torch.set_num_threads(1)
    spec = json.loads(Path(args.spec).read_text())
    store = open_store(spec["descriptor"])
    data = payload(spec["samples"], spec["tokens"], spec["hidden"])
    out: dict[str, Any] = {"seconds": []}
    if args.child == "writer":
        out["records"] = []
        for r in range(spec["repeats"] + 1):  # set 0 warms up; the reader reads it first, uncounted
            seconds, records = time_put(store, data, f"x{r}", spec["batch"])
            out["seconds"].append(seconds)
            out["records"].append([rec.to_json() for rec in records])
    else:
        for records in spec["records"]:
            seconds, got = time_get(store, [FeatureRecord.from_json(r) for r in records], spec["batch"])
            check(got, data)
            out["seconds"].append(seconds)
    store.close()
    print("RESULT " + json.dumps(out), flush=True)


def run_child(role: str, spec: dict, workdir: Path) -> dict:
    path = workdir / f"{role}.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, __file__, "--child", role, "--spec", str(path)], capture_output=True,
                          text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise SystemExit(f"the {role} process failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def two_processes(store: Any, args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    spec = {"descriptor": store.descriptor(), "samples": args.samples, "tokens": args.tokens, "hidden": args.hidden,
            "batch": args.batch, "repeats": args.repeats}
    written = run_child("writer", spec, workdir)
    read = run_child("reader", {**spec, "records": written["records"]}, workdir)
    for records in written["records"]:
        for record in records:
            store.delete(FeatureRecord.from_json(record))
    return min(written["seconds"][1:]), min(read["seconds"][1:])


# --------------------------------------------------------------------------- raw TransferEngine

_TARGET = r"""
import json, sys, time, torch
from mooncake.engine import TransferEngine
engine = TransferEngine()
assert engine.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
buf = torch.empty(int(sys.argv[1]), dtype=torch.uint8)
assert engine.register_memory(buf.data_ptr(), buf.nbytes) == 0
print("TARGET " + json.dumps({"session": f"127.0.0.1:{engine.get_rpc_port()}", "ptr": buf.data_ptr()}), flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
"""


def transfer_engine(data: list[dict[str, torch.Tensor]], repeats: int) -> tuple[float, float]:
    """Write every tensor into a buffer of another process, then read it back: one transfer each."""
    from mooncake.engine import TransferEngine

    total = nbytes(data)
    target = subprocess.Popen([sys.executable, "-c", _TARGET, str(total)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = target.stdout.readline()
        if not line.startswith("TARGET "):
            raise SystemExit(f"the TransferEngine target did not start: {line!r}")
        info = json.loads(line.removeprefix("TARGET "))
        engine = TransferEngine()
        if engine.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") != 0:
            raise SystemExit("TransferEngine.initialize failed")
        tensors = [t for sample in data for t in sample.values()]
        back = [torch.empty_like(t) for t in tensors]
        for t in tensors + back:
            engine.register_memory(t.data_ptr(), t.nbytes)
        offsets, at = [], info["ptr"]
        for t in tensors:
            offsets.append(at)
            at += t.nbytes
        lengths = [t.nbytes for t in tensors]
        puts, gets = [], []
        for _ in range(repeats + 1):  # the first round warms up; not counted
            start = time.perf_counter()
            if engine.batch_transfer_sync_write(info["session"], [t.data_ptr() for t in tensors], offsets, lengths):
                raise SystemExit("TransferEngine write failed")
            puts.append(time.perf_counter() - start)
            start = time.perf_counter()
            if engine.batch_transfer_sync_read(info["session"], [t.data_ptr() for t in back], offsets, lengths):
                raise SystemExit("TransferEngine read failed")
            gets.append(time.perf_counter() - start)
            if not all(torch.equal(a.view(torch.uint8), b.view(torch.uint8)) for a, b in zip(tensors, back)):
                raise SystemExit("TransferEngine read back other bytes than it wrote")
        return min(puts[1:]), min(gets[1:])
    finally:
        target.stdin.close()
        target.wait(timeout=30)


# --------------------------------------------------------------------------- main


def build_store(name: str, args: argparse.Namespace, root: Path) -> Any:
    if name == "memory":
        from specforge.stores.memory import MemoryStore

        return MemoryStore(namespace=NAMESPACE)
    if name == "disk":
        from specforge.stores.disk import DiskStore

        return DiskStore(root=root / "disk", namespace=NAMESPACE)
    from specforge_mooncake.options import MooncakeStoreOptions
    from specforge_mooncake.store import MooncakeStore

    segment = nbytes(payload(1, args.tokens, args.hidden)) * args.samples * (args.repeats + 2) + (64 << 20)
    return MooncakeStore(MooncakeStoreOptions(global_segment_size=segment), root=root / "mooncake", namespace=NAMESPACE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8, help="samples per put_many / get_many call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stores", default="memory,disk,mooncake")
    parser.add_argument("--no-transfer-engine", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument("--child", choices=["writer", "reader"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    torch.set_num_threads(1)
    data = payload(args.samples, args.tokens, args.hidden)
    size = nbytes(data)
    rows: list[tuple[str, str, float, float]] = []
    stored, out = ([{n: torch.empty_like(t) for n, t in s.items()} for s in data] for _ in range(2))
    rounds = [time_memcpy(data, stored, out) for _ in range(args.repeats + 1)]  # the first touches the pages
    rows.append(("memcpy", "1 process", min(p for p, _ in rounds[1:]), min(g for _, g in rounds[1:])))
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        for name in args.stores.split(","):
            store = build_store(name, args, Path(tmp))
            try:
                rows.append((name, "1 process", *in_process(store, data, args.batch, args.repeats)))
                if store.cross_process:
                    rows.append((name, "2 processes", *two_processes(store, args, Path(tmp))))
            finally:
                store.close()
    if not args.no_transfer_engine:
        rows.append(("transfer-engine", "2 processes", *transfer_engine(data, args.repeats)))

    mib = size / 2**20
    print(f"payload: {args.samples} samples x {args.tokens} tokens, hidden {args.hidden} "
          f"(bf16 [S, 3H] + 2 x int64 [S]) = {mib:.1f} MiB; batch {args.batch}; best of {args.repeats}; "
          f"{os.cpu_count()} CPUs, torch threads 1")
    ceiling = mib / sum(rows[0][2:])
    print(f"{'store':<16}{'where':<13}{'put MiB/s':>11}{'get MiB/s':>11}{'put+get MiB/s':>15}{'vs memcpy':>11}")
    for name, where, put, get in rows:
        both = mib / (put + get)
        print(f"{name:<16}{where:<13}{mib / put:>11.0f}{mib / get:>11.0f}{both:>15.0f}{both / ceiling:>11.2f}")
    if args.json:
        print(json.dumps([{"store": n, "where": w, "put_s": p, "get_s": g, "mib": mib} for n, w, p, g in rows]))


if __name__ == "__main__":
    main()
