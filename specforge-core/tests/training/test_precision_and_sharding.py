"""training.precision, FSDP2 per-layer sharding and activation checkpointing, on CPU with gloo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from specforge.testing.cli import run_specforge


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from specforge.testing.tiny_models import make_tiny_target

    root = tmp_path_factory.mktemp("precision")
    make_tiny_target(root / "target", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0, initializer_range=0.2)
    (root / "chats.jsonl").write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"count {i % 5}"},
        {"role": "assistant", "content": " ".join(str((i + j) % 10) for j in range(12))}]}) + "\n"
        for i in range(32)))
    return root


def train(world: Path, out: Path, name: str, *extra: str) -> tuple[list[dict], dict, str]:
    proc = run_specforge("run", "--strategy", "example-medusa", "--target-model", str(world / "target"),
                         "--data", str(world / "chats.jsonl"), "--output-dir", str(out), "--name", name,
                         "--set", "training.batch_size=2", "--set", "training.lr=3e-2",
                         "--set", "training.warmup_ratio=0",
                         "--set", "eval.enabled=false", "--set", "export.enabled=false", *extra)
    metrics = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines()]
    ckpt = sorted((out / name / "checkpoints").iterdir())[-1]
    return metrics, load_file(str(ckpt / "draft.safetensors")), proc.stderr


def mean_loss(metrics: list[dict], first: bool) -> float:
    part = metrics[:4] if first else metrics[-4:]
    return sum(m["loss"] for m in part) / len(part)


def test_bf16_mixed_trains_with_float32_masters_and_its_loss_falls(world, tmp_path):
    fp32, _, _ = train(world, tmp_path, "fp32", "--set", 'training.precision="fp32"')
    mixed, mixed_weights, _ = train(world, tmp_path, "mixed", "--set", 'training.precision="bf16-mixed"')
    assert mean_loss(mixed, first=False) < 0.8 * mean_loss(mixed, first=True)
    assert all(t.dtype == torch.float32 for t in mixed_weights.values())  # the masters stay float32
    assert [m["loss"] for m in mixed] != [m["loss"] for m in fp32]  # autocast really ran in bf16
    assert abs(mean_loss(mixed, first=False) - mean_loss(fp32, first=False)) < 0.2 * mean_loss(fp32, first=False)


def test_bf16_keeps_the_draft_and_its_checkpoint_in_bfloat16(world, tmp_path):
    metrics, weights, _ = train(world, tmp_path, "bf16", "--set", 'training.precision="bf16"',
                                "--set", "training.max_steps=4")
    assert len(metrics) == 4
    assert all(t.dtype == torch.bfloat16 for t in weights.values())


TWO_RANKS = ("--nproc-per-node", "2", "--set", "training.max_steps=8", "--set", 'training.precision="fp32"')


@pytest.fixture(scope="module")
def ddp_run(world, tmp_path_factory):
    """The DDP run both FSDP cases are compared with, trained once."""
    return train(world, tmp_path_factory.mktemp("ddp"), "ddp", *TWO_RANKS)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["fsdp", "fsdp+activation-checkpointing"])
def test_fsdp_shards_each_layer_and_trains_like_ddp(world, ddp_run, tmp_path, checkpointing):
    ddp, ddp_weights, _ = ddp_run
    extra = ("--set", "training.activation_checkpointing=true") if checkpointing else ()
    fsdp, fsdp_weights, stderr = train(world, tmp_path, "fsdp", *TWO_RANKS, "--set", 'training.parallel="fsdp"', *extra)
    assert "FSDP2: 3 draft layer(s) sharded, then the root" in stderr  # example-medusa's three heads
    assert [round(m["loss"], 4) for m in fsdp] == pytest.approx([round(m["loss"], 4) for m in ddp], rel=1e-3)
    for name, tensor in ddp_weights.items():
        torch.testing.assert_close(fsdp_weights[name], tensor, rtol=1e-4, atol=1e-5)


def test_activation_checkpointing_gives_the_same_loss_and_gradients_on_one_process():
    """A DFlash draft's layers are side-effect free: recomputing them changes nothing."""
    from specforge.testing.strategy_kit import make_case, reduce_loss
    from specforge.training.parallel import checkpoint_layers, draft_layers, uncheckpoint_layers

    case = make_case("dflash", {"block_size": 4, "num_anchors": 8, "num_draft_layers": 2})
    batch = case.strategy.collate(case.samples)

    def loss_and_grads(checkpointed: bool) -> tuple[torch.Tensor, dict]:
        torch.manual_seed(0)
        draft = case.strategy.build_draft(case.info, case.stats).double()
        layers = draft_layers(case.strategy, draft)
        assert len(layers) == 2
        if checkpointed:
            checkpoint_layers(layers)
        loss = reduce_loss(case.strategy.loss(draft, {k: v.double() if v.is_floating_point() else v
                                                       for k, v in batch.items()}, _ctx()))
        loss.backward()
        uncheckpoint_layers(layers)
        return loss.detach(), {n: p.grad for n, p in draft.named_parameters() if p.grad is not None}

    plain, plain_grads = loss_and_grads(False)
    ckpt, ckpt_grads = loss_and_grads(True)
    assert torch.equal(plain, ckpt)
    assert plain_grads.keys() == ckpt_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=0, atol=1e-12)


def _ctx():
    from specforge.contracts import StepContext

    return StepContext(step=0, total_steps=1)


def test_activation_checkpointing_without_named_layers_is_refused():
    from specforge.errors import ConfigError
    from specforge.training.distributed import DistContext
    from specforge.training.parallel import wrap

    with pytest.raises(ConfigError, match="activation_checkpointing needs the strategy to name its layers"):
        wrap(torch.nn.Linear(2, 2), DistContext(0, 1, 0, torch.device("cpu")), parallel="ddp", precision="fp32",
             layers=[], checkpointing=True, strategy_name="no-layers")
