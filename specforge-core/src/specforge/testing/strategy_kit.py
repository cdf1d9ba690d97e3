"""The strategy conformance kit: the checks every draft algorithm passes, ours and third parties'.

Subclass ``StrategyKit`` in a test module and name the registered strategy::

    from specforge.testing.strategy_kit import StrategyKit

    class TestMyStrategy(StrategyKit):
        strategy_name = "my-algo"
        options: ClassVar[dict] = {"num_layers": 1}  # as in a run config's [strategy] table

pytest then runs every ``test_*`` method below against the installed strategy, on a synthetic
tiny target (``specforge.testing.synthetic``) on CPU in a few seconds. To leave out a check that
cannot apply, set it to ``None`` in the subclass (``test_load_export_reproduces_the_draft = None``)
and say why in a comment. The ``check_*`` functions are the same checks for use without the class.
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
from dataclasses import dataclass
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


def make_case(strategy_name: str, options: Mapping[str, Any] | None = None, *,
              target: Mapping[str, Any] | None = None,
              lengths: Sequence[int] = synthetic.DEFAULT_LENGTHS, seed: int = 0) -> KitCase:
    """Build the strategy through the registry, as ``specforge run`` does, plus synthetic data for it."""
    registry = get_registry()
    reg = registry.get("strategy", strategy_name)
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
    reg = get_registry().get("strategy", case.name)
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
    torch.manual_seed(0)
    draft = case.strategy.build_draft(case.info, case.stats)
    losses = train(case, draft, batch, steps, lr)
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
