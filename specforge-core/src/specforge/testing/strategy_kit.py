"""The strategy conformance kit: the checks every draft algorithm passes, ours and third parties'.

Subclass ``StrategyKit`` in a test module and name the registered strategy::

    from specforge.testing.strategy_kit import StrategyKit

    class TestMyStrategy(StrategyKit):
        strategy_name = "my-algo"
        options: ClassVar[dict] = {"num_layers": 1}  # as in a run config's [strategy] table

pytest then runs every ``test_*`` method below against the installed strategy, on a synthetic
tiny target (``specforge.testing.synthetic``) on CPU in seconds. Besides the contract (shapes,
checkpoints, exports, torch-free registration) the kit checks that the method is *right* in the
ways a wrong plugin usually is not: the loss ignores positions whose loss mask is 0, decoding
drafts what training taught at the same positions (an off-by-one between the two fails), the
real evaluator measures a τ on the synthetic target that a constant drafter cannot reach, and a
multi-token strategy drafts k tokens. These share one draft trained on the kit's fixed batch.

To leave out a check that cannot apply, set it to ``None`` in the subclass
(``test_load_export_reproduces_the_draft = None``) and say why in a comment. The ``check_*``
functions are the same checks for use without the class.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import random
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from specforge.components import StrategySpec
from specforge.contracts import DataStats, FeatureRequest, LossOutput, SampleFeatures, StepContext, TargetInfo
from specforge.options import build_options
from specforge.registry import get_registry
from specforge.testing import synthetic

STRATEGY_METHODS = ("feature_request", "build_draft", "collate", "loss", "extra_state",
                    "load_extra_state", "begin_decode", "propose", "export")


@dataclass
class KitCase:
    """A registered strategy built from its options, with a tiny target and a fixed corpus."""

    name: str
    spec: StrategySpec
    options: Any
    strategy: Any
    info: TargetInfo
    request: FeatureRequest
    samples: list[SampleFeatures]
    stats: DataStats
    plugin_module: str
    fitted: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # see fit()


def _registration(name: str) -> Any:
    """The strategy's registration, also while it is marked incomplete (an author runs the kit to
    finish it; ``check_registration`` is the check that fails on the mark)."""
    registry = get_registry()
    regs = registry.components["strategy"].get(name, [])
    if len(regs) == 1 and not regs[0].problem and regs[0].spec.incomplete:
        return regs[0]
    return registry.get("strategy", name)


def make_case(strategy_name: str, options: Mapping[str, Any] | None = None, *,
              target: Mapping[str, Any] | None = None,
              lengths: Sequence[int] = synthetic.DEFAULT_LENGTHS, seed: int = 0) -> KitCase:
    """Build the strategy through the registry, as ``specforge run`` does, plus synthetic data for it."""
    registry = get_registry()
    reg = _registration(strategy_name)
    opts = build_options(reg.spec.options, dict(options or {}), "strategy")
    strategy = reg.spec.load()(opts)
    info = synthetic.tiny_target_info(seed=seed, **dict(target or {}))
    request = strategy.feature_request(info)
    samples = synthetic.synthetic_samples(info, request, lengths=lengths, seed=seed)
    plugin = registry.pm.get_plugin(reg.plugin.name)
    module = getattr(plugin, "__name__", None) or type(plugin).__module__
    return KitCase(strategy_name, reg.spec, opts, strategy, info, request, samples,
                   synthetic.synthetic_stats(samples), module)


# ----------------------------------------------------------------- helpers


def reduce_loss(out: LossOutput) -> torch.Tensor:
    """The scalar a trainer optimises: ``loss``, or numerator / denominator of ``terms``."""
    if out.terms is not None:
        numerator, denominator = out.terms
        return numerator / denominator
    return out.loss


def seeded_loss(case: KitCase, draft: Any, batch: Any, seed: int = 0) -> torch.Tensor:
    """The loss in eval mode with fixed RNG state, so two equal drafts give bit-equal values."""
    torch.manual_seed(seed)
    random.seed(seed)
    draft.eval()
    with torch.no_grad():
        return reduce_loss(case.strategy.loss(draft, batch, StepContext(step=0, total_steps=1))).detach()


def train(case: KitCase, draft: Any, batch: Any, steps: int, lr: float) -> list[float]:
    """Plain AdamW on one fixed batch; the loss before each step (a trainer in miniature)."""
    params = [p for p in draft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    draft.train()
    losses = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = reduce_loss(case.strategy.loss(draft, batch, StepContext(step=step, total_steps=steps)))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def fit(case: KitCase, steps: int, lr: float) -> tuple[Any, list[float]]:
    """A draft trained ``steps`` AdamW steps on the case's fixed batch, and the losses on the way.

    Kept on the case: the loss, decoding and τ checks judge the same trained draft, trained once.
    Callers must not change it (decoding runs under ``no_grad`` in eval mode).
    """
    key = (steps, lr)
    if key not in case.fitted:
        batch = case.strategy.collate(case.samples)
        torch.manual_seed(0)
        draft = case.strategy.build_draft(case.info, case.stats)
        losses = train(case, draft, batch, steps, lr)
        draft.eval()
        case.fitted[key] = (draft, losses)
    return case.fitted[key]


def checkpoint_state(draft: Any) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps: trainable parameters and persistent buffers, nothing frozen."""
    params = dict(draft.named_parameters(remove_duplicate=False))
    return {k: v.detach().clone() for k, v in draft.state_dict().items()
            if k not in params or params[k].requires_grad}


def load_checkpoint_state(draft: Any, state: Mapping[str, torch.Tensor]) -> None:
    """Load ``checkpoint_state`` into a fresh draft; everything missing must be frozen."""
    result = draft.load_state_dict(dict(state), strict=False)
    params = dict(draft.named_parameters(remove_duplicate=False))
    not_frozen = [k for k in result.missing_keys if k not in params or params[k].requires_grad]
    assert not not_frozen, f"checkpoint lacks trainable/persistent entries {not_frozen}"
    assert not result.unexpected_keys, f"fresh draft has no place for {result.unexpected_keys}"


def roundtrip(obj: Any, path: Path) -> Any:
    """``torch.save`` then ``torch.load(weights_only=True)``: what a checkpoint may hold."""
    torch.save(obj, path)
    return torch.load(path, weights_only=True)


def assert_same_structure(a: Any, b: Any, where: str = "state") -> None:
    """Equal nested dicts/lists of tensors and plain values (tensors compared exactly)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{where}: tensor became {type(b).__name__}"
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), f"{where}: tensor changed"
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"{where}: keys changed"
        for k in a:
            assert_same_structure(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: sequence changed"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_structure(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} became {b!r}"


# ----------------------------------------------------------------- checks


def check_registration(case: KitCase) -> None:
    """Registered once, usable, builds from its registered options (given and default)."""
    reg = _registration(case.name)
    if reg.spec.incomplete:
        raise AssertionError(f"strategy {case.name!r} is registered incomplete ({reg.spec.incomplete}): "
                             f"`specforge plugins` lists it so and `specforge run` refuses it until then")
    assert isinstance(reg.spec, StrategySpec)
    assert dataclasses.is_dataclass(reg.spec.options)
    assert case.strategy.name == case.name, f"strategy.name is {case.strategy.name!r}, registered {case.name!r}"
    missing = [m for m in STRATEGY_METHODS if not callable(getattr(case.strategy, m, None))]
    assert not missing, f"strategy {case.name!r} lacks {missing}"
    default = reg.spec.load()(build_options(reg.spec.options, {}, "strategy"))
    assert default.name == case.name


def check_plugin_imports_no_torch(case: KitCase) -> None:
    """The entry module, options and strategy class import no torch: `specforge plugins` stays fast
    and `specforge run --plan` builds the strategy to print its feature request."""
    modules = [case.plugin_module, case.spec.options.__module__, case.spec.factory.partition(":")[0]]
    code = ("import importlib, sys\n"
            "for m in sys.argv[1:]: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:5])")
    done = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, f"importing {modules} failed:\n{done.stderr}"
    assert done.stdout.strip() == "[]", f"importing {modules} imports torch: {done.stdout.strip()}"


def check_feature_request(case: KitCase) -> None:
    """Valid layers for the target, computed from shape fields alone (no tensors needed)."""
    bare = dataclasses.replace(case.info, embed_weight=None, lm_head_weight=None, tokenizer=None)
    request = case.strategy.feature_request(bare)
    assert isinstance(request, FeatureRequest), f"feature_request returned {type(request).__name__}"
    request.check_layers(case.info.num_layers)
    assert request == case.request, "feature_request depends on the target's weights"


def check_collate_and_loss(case: KitCase) -> None:
    """collate pads to a batch; loss runs through draft(...), is finite, and trains only trainables."""
    batch = case.strategy.collate(case.samples)
    assert isinstance(batch, Mapping), f"collate returned {type(batch).__name__}, expected a dict"
    for name, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            assert value.shape[0] == len(case.samples), f"batch[{name!r}] has batch dim {value.shape[0]}"
    draft = case.strategy.build_draft(case.info, case.stats)
    assert isinstance(draft, torch.nn.Module), f"build_draft returned {type(draft).__name__}"
    trainable = [p for p in draft.parameters() if p.requires_grad]
    assert trainable, "the draft has no trainable parameters"
    calls: list[int] = []
    handle = draft.register_forward_pre_hook(lambda *_: calls.append(1))
    draft.train()
    out = case.strategy.loss(draft, batch, StepContext(step=0, total_steps=10))
    handle.remove()
    assert isinstance(out, LossOutput), f"loss returned {type(out).__name__}, expected LossOutput"
    assert calls, "loss must run the draft through draft(...), not its submodules (DDP/FSDP see only that)"
    value = reduce_loss(out)
    assert value.dim() == 0 and torch.isfinite(value), f"loss is {value}"
    for name, metric in out.metrics.items():
        number = float(metric.detach()) if isinstance(metric, torch.Tensor) else float(metric)
        assert math.isfinite(number), f"metric {name!r} is {number}"
    for name, pair in out.ratio_metrics.items():
        assert len(pair) == 2, f"ratio metric {name!r} must be (numerator, denominator)"
    value.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in trainable), "no gradient reached"
    frozen = [n for n, p in draft.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not frozen, f"frozen parameters received gradients: {frozen}"


def check_loss_falls(case: KitCase, steps: int, lr: float, ratio: float) -> list[float]:
    """A few dozen AdamW steps on one fixed batch bring the loss below ``ratio`` × its start."""
    batch = case.strategy.collate(case.samples)
    draft, losses = fit(case, steps, lr)
    final = float(seeded_loss(case, draft, batch))
    draft_init_loss = losses[0]
    assert final < ratio * draft_init_loss, (
        f"loss fell from {draft_init_loss:.4f} only to {final:.4f} in {steps} steps at lr {lr} "
        f"(need < {ratio} x start); losses: {[round(x, 3) for x in losses]}")
    return losses


def check_extra_state_roundtrip(case: KitCase, tmp: Path) -> None:
    """extra_state is a dict that torch.load(weights_only=True) restores unchanged."""
    draft = case.strategy.build_draft(case.info, case.stats)
    state = case.strategy.extra_state(draft)
    assert isinstance(state, dict), f"extra_state returned {type(state).__name__}, expected a dict"
    try:
        loaded = roundtrip(state, tmp / "extra.pt")
    except pickle.UnpicklingError as exc:
        raise AssertionError(f"extra_state must hold only tensors and plain values (dict, list, str, "
                             f"numbers), which torch.load(weights_only=True) accepts: {exc}") from exc
    assert_same_structure(state, loaded, "extra_state")


def _trained(case: KitCase, steps: int = 3) -> tuple[Any, Any]:
    batch = case.strategy.collate(case.samples)
    torch.manual_seed(0)
    draft = case.strategy.build_draft(case.info, case.stats)
    train(case, draft, batch, steps, lr=1e-2)  # weights away from their initial values
    return draft, batch


def check_checkpoint_restores(case: KitCase, tmp: Path) -> None:
    """Trainable parameters + persistent buffers + extra_state, loaded into a draft built fresh
    (other init, other corpus statistics), reproduce the loss exactly."""
    draft, batch = _trained(case)
    expected = seeded_loss(case, draft, batch)
    weights = roundtrip(checkpoint_state(draft), tmp / "weights.pt")
    extra = roundtrip(case.strategy.extra_state(draft), tmp / "extra.pt")
    other = synthetic.synthetic_samples(case.info, case.request, lengths=(13, 10), seed=1)
    torch.manual_seed(1)
    fresh = case.strategy.build_draft(case.info, synthetic.synthetic_stats(other))
    case.strategy.load_extra_state(fresh, extra)
    load_checkpoint_state(fresh, weights)
    got = seeded_loss(case, fresh, batch)
    assert torch.equal(got, expected), f"restored draft gives loss {got.item()} instead of {expected.item()}"


def _exported(case: KitCase, tmp: Path, fmt: str) -> tuple[Any, Any, Path, dict]:
    draft, batch = _trained(case)
    out_dir = tmp / "export"
    info = case.strategy.export(draft, out_dir, fmt)
    return draft, batch, out_dir, info


def check_options_refuse_out_of_range_values(case: KitCase) -> list[str]:
    """Every declared range (``Annotated[T, Range(...)]``) is enforced: a value just outside it is
    refused with a message naming the key. Returns the keys checked."""
    from specforge.errors import ConfigError
    from specforge.options import field_ranges

    checked = []
    sequences = {f.name for f in dataclasses.fields(case.spec.options)
                 if "tuple[" in str(f.type) or "list[" in str(f.type)}
    for name, rng in field_ranges(case.spec.options).items():
        for bad in _outside(rng):
            value = [bad] if name in sequences else bad
            try:
                build_options(case.spec.options, {name: value}, "strategy")
            except ConfigError as exc:
                assert f"strategy.{name}" in str(exc), f"the error for {name}={bad!r} does not name the key: {exc}"
            else:
                raise AssertionError(f"strategy.{name}={value!r} is outside its declared range {rng.describe()} "
                                     f"but was accepted")
            checked.append(name)
    return checked


def _outside(rng: Any) -> list[float]:
    """Values just outside a Range (integers when the bound is one, so int fields type-check)."""
    out = [v for v in (None if rng.ge is None else rng.ge - 1, rng.gt,
                       None if rng.le is None else rng.le + 1, rng.lt) if v is not None]
    return [int(v) if float(v).is_integer() else v for v in out]


def check_export_formats_differ(case: KitCase, tmp: Path) -> None:
    """Each export format the strategy declares writes something different (names, shapes or config)."""
    from safetensors import safe_open

    formats = case.spec.export_formats
    draft, _ = _trained(case)
    written = {}
    for fmt in formats:
        out_dir = tmp / f"export-{fmt}"
        case.strategy.export(draft, out_dir, fmt)
        with safe_open(str(out_dir / "model.safetensors"), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        written[fmt] = (json.dumps(json.loads((out_dir / "config.json").read_text()), sort_keys=True), shapes)
    same = [(a, b) for i, a in enumerate(formats) for b in formats[i + 1:] if written[a] == written[b]]
    assert not same, f"export formats {same} write the same files; declare one format per distinct output"


def check_export(case: KitCase, tmp: Path, fmt: str | None = None) -> None:
    """export writes config.json + model.safetensors and reports exactly the weights it wrote."""
    from safetensors import safe_open

    _, _, out_dir, info = _exported(case, tmp, fmt or case.spec.export_formats[0])
    assert (out_dir / "config.json").is_file(), f"export wrote no {out_dir / 'config.json'}"
    assert (out_dir / "model.safetensors").is_file(), f"export wrote no {out_dir / 'model.safetensors'}"
    assert isinstance(json.loads((out_dir / "config.json").read_text()), dict), "config.json is not an object"
    assert isinstance(info, Mapping), f"export returned {type(info).__name__}, expected a dict"
    assert isinstance(info.get("architecture"), str) and info["architecture"], "export info lacks 'architecture'"
    assert isinstance(info.get("weights"), Mapping), "export info lacks 'weights' (name -> shape)"
    with safe_open(str(out_dir / "model.safetensors"), framework="pt") as f:
        written = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    reported = {k: tuple(v) for k, v in info["weights"].items()}
    assert written, "model.safetensors holds no tensors"
    assert reported == written, f"export info weights {reported} differ from the file's {written}"


def check_load_export(case: KitCase, tmp: Path, fmt: str | None = None) -> None:
    """load_export rebuilds a draft that gives the exported draft's loss."""
    draft, batch, out_dir, _ = _exported(case, tmp, fmt or case.spec.export_formats[0])
    load = getattr(case.strategy, "load_export", None)
    assert callable(load), f"strategy {case.name!r} has no load_export (needed by `specforge eval EXPORT`)"
    loaded = load(out_dir, case.info)
    assert isinstance(loaded, torch.nn.Module), f"load_export returned {type(loaded).__name__}"
    expected = seeded_loss(case, draft, batch)
    got = seeded_loss(case, loaded, batch)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def _decode(case: KitCase, draft: Any, k: int, rounds: int) -> list[list[int]]:
    """Propose along a synthetic continuation, accepting 1 then 2 tokens per round alternately."""
    prompt = synthetic.synthetic_ids(10, case.info, seed=99)
    feats = synthetic.synthetic_features(case.info, case.request, prompt, logits=True)
    draft.eval()
    proposals = []
    with torch.no_grad():
        state = case.strategy.begin_decode(draft, list(prompt), feats)
        accepted = prompt + synthetic.continue_ids(prompt, 1, case.info)  # last = target's own token
        for r in range(rounds):
            feats = synthetic.synthetic_features(case.info, case.request, accepted[:-1], logits=True)
            proposals.append(case.strategy.propose(draft, state, list(accepted), feats, k))
            accepted += synthetic.continue_ids(accepted, 1 + r % 2, case.info)
    return proposals


def check_propose(case: KitCase, k: int, limit: int | None = None, rounds: int = 3) -> None:
    """begin_decode/propose give 1..limit ints in the target vocab, the same each time."""
    limit = k if limit is None else limit
    draft, _ = _trained(case)
    first = _decode(case, draft, k, rounds)
    for proposal in first:
        assert isinstance(proposal, list), f"propose returned {type(proposal).__name__}, expected a list"
        assert 1 <= len(proposal) <= limit, f"propose returned {len(proposal)} tokens, expected 1..{limit}"
        bad = [t for t in proposal if type(t) is not int or not 0 <= t < case.info.vocab_size]
        assert not bad, f"propose returned {bad}: not ints in 0..{case.info.vocab_size - 1}"
    assert _decode(case, draft, k, rounds) == first, "decoding the same prompt twice proposed different tokens"


def with_masked_tails(case: KitCase, samples: Sequence[SampleFeatures], margin: int = 1,
                      seed: int = 123) -> tuple[list[SampleFeatures], list[SampleFeatures]]:
    """Two versions of ``samples`` that differ only where the loss mask is 0 after the last
    supervised token: (base, tails).

    In both, the loss mask of each sample's last ``margin`` tokens is 0. In ``tails`` every sample
    shorter than the longest is extended to its length (where collate would pad) with random ids
    that break the rule, loss mask 0, and the features the target would give there; the original
    positions keep their features bit for bit. The batch keeps its shape.
    """
    gen = torch.Generator().manual_seed(seed)
    vocab = synthetic.text_vocab(case.info)
    width = max(int(s["input_ids"].shape[0]) for s in samples)
    base, tails = [], []
    for sample in samples:
        ids = sample["input_ids"].tolist()
        mask = sample["loss_mask"].clone()
        mask[max(len(ids) - margin, 0):] = 0
        base.append({**sample, "loss_mask": mask})
        extra = torch.randint(0, vocab, (width - len(ids),), generator=gen).tolist()
        longer = synthetic.synthetic_features(case.info, case.request, ids + extra,
                                              [*mask.tolist(), *[0] * len(extra)])
        tails.append({name: torch.cat([base[-1][name], value[len(ids):]]) for name, value in longer.items()})
    return base, tails


def _loss_and_grads(case: KitCase, draft: Any, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss and every trainable parameter's gradient, in eval mode with fixed RNG state."""
    torch.manual_seed(0)
    random.seed(0)
    draft.eval()
    draft.zero_grad(set_to_none=True)
    loss = reduce_loss(case.strategy.loss(draft, batch, StepContext(step=0, total_steps=1)))
    loss.backward()
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
             for n, p in draft.named_parameters() if p.requires_grad}
    draft.zero_grad(set_to_none=True)
    return loss.detach(), grads


def check_masked_positions_do_not_count(case: KitCase, margin: int = 1, rtol: float = 1e-4) -> None:
    """What a batch holds where the loss mask is 0 after a sample's last supervised token changes
    neither the loss nor its gradient.

    ``with_masked_tails`` masks each sample's last ``margin`` tokens, then puts random tokens (and
    their features) where collate would pad; the loss and every gradient must stay as they were.
    This is right for causal drafters (Medusa: the prediction at t reads h_t and is weighted by
    its label's mask; EAGLE3: position t, weighted by the mask at t, reads x_{t+1} and is taught by
    h_{t+1}, hence a margin of one token) and for block drafters (DFlash, Domino: a block sees the
    context before its anchor, and anchors and labels sit on supervised tokens). A masked token
    *before* a supervised one is legitimate context, so the kit changes none of those; and the
    batch keeps its shape, so a loss normalised by it (EAGLE3's mean over B·S positions) is
    unaffected. It fails a loss that lets masked positions into its sum, and a prediction that
    reads past the margin (a bidirectional draft, which cannot see the future when it drafts).
    Randomness drawn from a sample's content must not decide which supervised positions count:
    choose kit options that use them all (DFlash: ``num_anchors`` at least the supervised
    positions of the longest sample).
    """
    base, tails = with_masked_tails(case, case.samples, margin)
    assert any(len(a["input_ids"]) < len(b["input_ids"]) for a, b in zip(base, tails)), (
        "the kit's samples all have one length, so there is no padding to fill; give sample_lengths "
        "different values")
    draft, _ = _trained(case)
    base_loss, base_grads = _loss_and_grads(case, draft, case.strategy.collate(base))
    tail_loss, tail_grads = _loss_and_grads(case, draft, case.strategy.collate(tails))
    assert torch.allclose(tail_loss, base_loss, rtol=rtol, atol=1e-7), (
        f"tokens with loss_mask 0 after each sample's last supervised token (where the batch is padded) "
        f"changed the loss from {base_loss.item():.6f} to {tail_loss.item():.6f}: the loss sums over masked "
        f"positions (weight each term by the loss mask of what it is trained on) or a prediction reads a "
        f"later position")
    scale = max((float(g.abs().max()) for g in base_grads.values()), default=0.0)
    moved = {n: float((tail_grads[n] - g).abs().max()) for n, g in base_grads.items()}
    worst = max(moved, key=moved.__getitem__, default=None)
    assert worst is None or moved[worst] <= rtol * scale + 1e-9, (
        f"tokens with loss_mask 0 after each sample's last supervised token changed the gradient of "
        f"{worst!r} by {moved[worst]:.3g} (largest gradient entry {scale:.3g}) although the loss stayed "
        f"{base_loss.item():.6f}: a masked position reaches the gradient")


def _trained_text(case: KitCase) -> list[list[int]]:
    return [s["input_ids"].tolist() for s in case.samples]


def _first_drafted(case: KitCase) -> int:
    """The first position a draft token is decoded at: after the prompt and the target's own token."""
    return synthetic.PROMPT_TOKENS + 1


def check_decoding_agrees_with_training(case: KitCase, draft: Any, k: int, min_agreement: float = 0.8,
                                        trained: str = "") -> dict[str, tuple[int, int]]:
    """Decoding drafts what training taught at the same positions.

    ``draft`` is trained to a low loss on the case's fixed batch (``fit``), text of the synthetic
    rule language; training is teacher-forced, so its argmax at every supervised position is the
    batch's own next token. Decoding along those samples (accepted_ids = a prefix, features of all
    but its last token, as the evaluator passes them), the first drafted token must therefore be
    the sample's next token, and each later drafted token the sample's token whenever the drafted
    tokens before it were right: at ``min_agreement`` of the positions each. An off-by-one between
    the position a head is trained on and the token it drafts gets almost none (chance is
    1/vocab). Returns ``{"first": (agreed, positions), "later": (agreed, positions)}``.
    """
    counts = {"first": [0, 0], "later": [0, 0]}
    example = ""
    with torch.no_grad():
        for ids in _trained_text(case):
            for n in range(_first_drafted(case), len(ids)):
                feats = synthetic.synthetic_features(case.info, case.request, ids[: n - 1], logits=True)
                state = case.strategy.begin_decode(draft, ids[: n - 1], feats)
                proposal = [int(t) for t in case.strategy.propose(draft, state, ids[:n], feats, k)]
                truth = ids[n:]
                counts["first"][1] += 1
                counts["first"][0] += proposal[:1] == truth[:1]
                for j in range(1, min(len(proposal), len(truth))):
                    if proposal[:j] != truth[:j]:
                        break
                    counts["later"][1] += 1
                    counts["later"][0] += proposal[j] == truth[j]
                if proposal[:1] != truth[:1] and not example:
                    example = (f"e.g. after accepted_ids {ids[:n]} it drafted {proposal}, the trained-on "
                               f"continuation is {truth[:len(proposal)]}")
    for which, (agreed, total) in counts.items():
        assert total == 0 or agreed >= min_agreement * total, (
            f"decoding disagrees with training: the {which} drafted token is the trained-on token at "
            f"{agreed} of {total} positions (need {min_agreement:.0%}){' ' + trained if trained else ''}; "
            f"{example or 'the later tokens are the ones that differ'}. Training "
            f"teaches the prediction at one position and decoding reads another (an off-by-one between "
            f"the position a head is trained on and the token it drafts), or the draft has not learnt "
            f"the batch (raise the kit's train_steps)")
    assert counts["first"][1] > 0, "no position was decoded: the kit's samples are too short"
    return {name: (agreed, total) for name, (agreed, total) in counts.items()}


class _ConstantDrafter:
    """A strategy that drafts one fixed token k times: the bar the τ check must clear by far."""

    def __init__(self, token: int) -> None:
        self.token = token

    def begin_decode(self, draft: Any, prompt_ids: Sequence[int], features: SampleFeatures) -> None:
        return None

    def propose(self, draft: Any, state: Any, accepted_ids: Sequence[int], features: SampleFeatures,
                k: int) -> list[int]:
        return [self.token] * k


def synthetic_tau(case: KitCase, strategy: Any, draft: Any, k: int) -> float:
    """τ by the real evaluator (lossless speculative decoding, checked) on the synthetic target,
    continuing each trained-on sample from its prompt to its end."""
    from specforge.evaluation.speculative import check_lossless, speculative_generate, summarize
    from specforge.testing.synthetic_engine import SyntheticTargetEngine

    engine = SyntheticTargetEngine(case.info)
    traces = []
    for ids in _trained_text(case):
        prompt, new = ids[: _first_drafted(case)], len(ids) - _first_drafted(case)
        trace = speculative_generate(engine, strategy, draft, prompt, case.request, k=k, max_new_tokens=new)
        check_lossless(engine, [prompt], [trace], new)
        assert trace.tokens == ids[len(prompt):], "the synthetic target left its own rule (a kit bug)"
        traces.append(trace)
    return summarize(traces, k).tau


def check_tau_beats_a_constant_drafter(case: KitCase, draft: Any, k: int, min_tau: float = 1.5,
                                       trained: str = "") -> tuple[float, float]:
    """τ of ``draft`` (trained on the case's batch, ``fit``) through the real evaluator on the
    synthetic target, continuing the trained-on text, is at least ``min_tau``, a bar the best
    constant drafter is shown to miss. Returns (τ, the constant drafter's τ)."""
    counts: dict[int, int] = {}
    for ids in _trained_text(case):
        for t in ids[_first_drafted(case):]:
            counts[t] = counts.get(t, 0) + 1
    constant = synthetic_tau(case, _ConstantDrafter(max(counts, key=counts.get)), None, k)
    assert constant < min_tau, f"a constant drafter reaches τ {constant:.2f} ≥ {min_tau}: the kit's text is too easy"
    tau = synthetic_tau(case, case.strategy, draft, k)
    assert tau >= min_tau, (
        f"τ {tau:.2f} by lossless speculative decoding (k={k}) of the synthetic target's text the draft was "
        f"trained on{' ' + trained if trained else ''}; need ≥ {min_tau} (the best constant drafter gets "
        f"{constant:.2f}). The drafts "
        f"are rejected by the target: see the decoding-agrees-with-training check")
    return tau, constant


def check_drafts_k_tokens(case: KitCase, draft: Any, k: int, limit: int | None = None) -> None:
    """``propose(k)`` drafts ``min(k, limit)`` tokens, for k = 1, 2 and ``k`` (``limit``: the most one
    round drafts, e.g. block size - 1; None: k). A one-token strategy declares ``limit=1``."""
    limit = k if limit is None else limit
    ids = _trained_text(case)[0]
    n = _first_drafted(case) + 1
    feats = synthetic.synthetic_features(case.info, case.request, ids[: n - 1], logits=True)
    with torch.no_grad():
        for want in sorted({1, min(2, k), k}):
            state = case.strategy.begin_decode(draft, ids[: n - 1], feats)
            got = case.strategy.propose(draft, state, ids[:n], feats, want)
            assert len(got) == min(want, limit), (
                f"propose(k={want}) drafted {len(got)} token(s) {list(got)}, expected min(k, {limit}) = "
                f"{min(want, limit)}; a multi-token strategy drafts k tokens a round (set the kit's "
                f"max_proposal to the most it drafts, 1 for a one-token drafter)")


# ----------------------------------------------------------------- the pytest class


class StrategyKit:
    """Base class of a strategy's conformance tests; see the module docstring."""

    strategy_name: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Any]] = {}
    target: ClassVar[Mapping[str, Any]] = {}  # keyword overrides for synthetic.tiny_target_info
    sample_lengths: ClassVar[Sequence[int]] = synthetic.DEFAULT_LENGTHS
    train_steps: ClassVar[int] = 40
    learning_rate: ClassVar[float] = 1e-2
    loss_ratio: ClassVar[float] = 0.8
    propose_k: ClassVar[int] = 3
    max_proposal: ClassVar[int | None] = None  # None: propose_k; a block strategy: block size - 1
    export_format: ClassVar[str | None] = None  # None: the strategy's default (first) export format
    decode_agreement: ClassVar[float] = 0.8  # share of positions where decoding drafts the trained-on token
    min_tau: ClassVar[float] = 1.5  # τ on the synthetic target's trained-on text (a constant drafter: ~1.0)

    @pytest.fixture(autouse=True)
    def _one_torch_thread(self) -> Iterator[None]:
        # Tiny tensors: thread start-up and contention on a shared CPU cost 10x the arithmetic.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)

    @pytest.fixture(scope="class")
    @classmethod
    def kit_case(cls) -> KitCase:
        if not cls.strategy_name:
            raise TypeError(f"{cls.__name__} must set strategy_name to the strategy under test")
        return make_case(cls.strategy_name, cls.options, target=cls.target, lengths=cls.sample_lengths)

    def test_strategy_is_registered_and_builds_from_its_options(self, kit_case: KitCase) -> None:
        check_registration(kit_case)

    def test_plugin_module_imports_no_torch(self, kit_case: KitCase) -> None:
        check_plugin_imports_no_torch(kit_case)

    def test_feature_request_is_valid_for_a_tiny_target(self, kit_case: KitCase) -> None:
        check_feature_request(kit_case)

    def test_collate_and_loss_run_on_features_shaped_per_request(self, kit_case: KitCase) -> None:
        check_collate_and_loss(kit_case)

    def test_loss_falls_on_a_fixed_batch(self, kit_case: KitCase) -> None:
        check_loss_falls(kit_case, self.train_steps, self.learning_rate, self.loss_ratio)

    def test_loss_ignores_positions_whose_loss_mask_is_0(self, kit_case: KitCase) -> None:
        check_masked_positions_do_not_count(kit_case)

    def _fitted(self, kit_case: KitCase) -> tuple[Any, str]:
        draft, losses = fit(kit_case, self.train_steps, self.learning_rate)
        return draft, (f"after {self.train_steps} training steps at lr {self.learning_rate} (loss {losses[0]:.3f} "
                       f"-> {losses[-1]:.3f})")

    def test_decoding_drafts_what_training_taught_at_the_same_positions(self, kit_case: KitCase) -> None:
        draft, trained = self._fitted(kit_case)
        check_decoding_agrees_with_training(kit_case, draft, self.propose_k, self.decode_agreement, trained)

    def test_speculative_decoding_of_the_synthetic_target_beats_a_constant_drafter(self,
                                                                                  kit_case: KitCase) -> None:
        draft, trained = self._fitted(kit_case)
        check_tau_beats_a_constant_drafter(kit_case, draft, self.propose_k, self.min_tau, trained)

    def test_a_multi_token_strategy_drafts_k_tokens(self, kit_case: KitCase) -> None:
        draft, _ = self._fitted(kit_case)
        check_drafts_k_tokens(kit_case, draft, self.propose_k, self.max_proposal)

    def test_extra_state_survives_torch_save_with_weights_only(self, kit_case: KitCase, tmp_path: Path) -> None:
        check_extra_state_roundtrip(kit_case, tmp_path)

    def test_checkpoint_restores_identical_loss_in_a_fresh_draft(self, kit_case: KitCase,
                                                                 tmp_path: Path) -> None:
        check_checkpoint_restores(kit_case, tmp_path)

    def test_export_writes_config_and_safetensors(self, kit_case: KitCase, tmp_path: Path) -> None:
        check_export(kit_case, tmp_path, self.export_format)

    def test_load_export_reproduces_the_draft(self, kit_case: KitCase, tmp_path: Path) -> None:
        check_load_export(kit_case, tmp_path, self.export_format)

    def test_each_declared_export_format_writes_something_different(self, kit_case: KitCase,
                                                                      tmp_path: Path) -> None:
        check_export_formats_differ(kit_case, tmp_path)

    def test_options_refuse_values_outside_their_declared_ranges(self, kit_case: KitCase) -> None:
        check_options_refuse_out_of_range_values(kit_case)

    def test_propose_returns_draft_tokens_within_the_target_vocab(self, kit_case: KitCase) -> None:
        check_propose(kit_case, self.propose_k, self.max_proposal)
