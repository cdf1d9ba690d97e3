"""The example plugin behaves as its README says: registration, verb, loss alignment, decoding, export."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
import torch
from click.testing import CliRunner

from specforge.contracts import StepContext
from specforge.errors import ConfigError
from specforge.options import build_options
from specforge.registry import load_registry
from specforge.testing import synthetic
from specforge.testing.strategy_kit import make_case, train
from specforge_example.options import MedusaOptions
from specforge_example.strategy import ExampleMedusa


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_registry_lists_example_medusa_from_the_example_distribution() -> None:
    reg = load_registry().get("strategy", "example-medusa")
    assert (reg.plugin.distribution, reg.plugin.version) == ("specforge-example", "0.1.0")
    assert reg.spec.options is MedusaOptions


def test_example_hello_verb_is_added_to_the_cli() -> None:
    cli = click.Group("specforge")
    load_registry().add_commands(cli)
    result = CliRunner().invoke(cli, ["example-hello"])
    assert result.exit_code == 0, result.output
    assert "specforge-example 0.1.0" in result.output and "example-medusa" in result.output


def test_options_reject_zero_heads_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match="num_heads"):
        build_options(MedusaOptions, {"num_heads": 0}, "strategy.example-medusa")


def test_untrained_heads_loss_is_ce_of_target_head_against_tokens_t_plus_1_plus_k() -> None:
    info = synthetic.tiny_target_info(dtype="float64")
    strategy = ExampleMedusa(MedusaOptions(num_heads=2))
    samples = synthetic.synthetic_samples(info, strategy.feature_request(info), lengths=(9, 7))
    draft = strategy.build_draft(info, synthetic.synthetic_stats(samples))
    out = strategy.loss(draft, strategy.collate(samples), StepContext(step=0, total_steps=1))
    # Heads start as the identity, so each is the target's own lm_head read k tokens further on.
    total, count = 0.0, 0
    for s in samples:
        logits = s["last_hidden"] @ info.lm_head_weight.T  # [S, V]
        logp = torch.log_softmax(logits, -1)
        ids, mask = s["input_ids"].tolist(), s["loss_mask"].tolist()
        for k in (1, 2):
            for t in range(len(ids) - 1 - k):
                if mask[t + 1 + k]:
                    total -= float(logp[t, ids[t + 1 + k]])
                    count += 1
    numerator, denominator = out.terms
    assert int(denominator) == count
    assert float(numerator.detach()) == pytest.approx(total, rel=1e-9)


def test_overfit_heads_propose_the_continuation_they_were_trained_on() -> None:
    case = make_case("example-medusa", {"num_heads": 3}, target={"dtype": "float64"})
    draft = case.strategy.build_draft(case.info, case.stats)
    batch = case.strategy.collate(case.samples)
    torch.manual_seed(0)
    train(case, draft, batch, steps=150, lr=2e-2)
    ids = case.samples[0]["input_ids"].tolist()  # a trained-on sample, supervised from token 3
    draft.eval()
    for n in (6, 9, 12):  # accepted_ids = ids[:n]; heads 1..3 draft ids[n], ids[n+1], ids[n+2]
        feats = synthetic.synthetic_features(case.info, case.request, ids[: n - 1], logits=True)
        with torch.no_grad():
            proposal = case.strategy.propose(draft, {}, ids[:n], feats, 3)
        assert proposal == ids[n : n + 3]


def test_propose_drafts_at_most_k_tokens() -> None:
    case = make_case("example-medusa", {"num_heads": 3})
    draft = case.strategy.build_draft(case.info, case.stats)
    ids = case.samples[0]["input_ids"].tolist()[:8]
    feats = synthetic.synthetic_features(case.info, case.request, ids[:-1])
    with torch.no_grad():
        assert len(case.strategy.propose(draft, {}, ids, feats, 2)) == 2
        assert len(case.strategy.propose(draft, {}, ids, feats, 5)) == 3


def test_propose_rejects_features_that_do_not_cover_accepted_ids_but_the_last(tmp_path) -> None:
    case = make_case("example-medusa")
    draft = case.strategy.build_draft(case.info, case.stats)
    ids = case.samples[0]["input_ids"].tolist()[:8]
    feats = synthetic.synthetic_features(case.info, case.request, ids)  # one too many
    with pytest.raises(ValueError, match="len\\(accepted_ids\\) - 1"):
        case.strategy.propose(draft, {}, ids, feats, 2)


def test_export_holds_only_the_heads_and_passes_the_plugins_export_check(tmp_path) -> None:
    case = make_case("example-medusa", {"num_heads": 2, "hidden_layers": 2})
    draft = case.strategy.build_draft(case.info, case.stats)
    info = case.strategy.export(draft, tmp_path / "out", "hf")
    h = case.info.hidden_size
    assert info["weights"] == {f"heads.{i}.{j}.linear.{p}": ([h, h] if p == "weight" else [h])
                               for i in range(2) for j in range(2) for p in ("weight", "bias")}
    registry = load_registry()
    assert registry.check_export("example-medusa", "hf", tmp_path / "out", info) == []
    broken = {**info, "weights": {k: v for k, v in info["weights"].items() if not k.startswith("heads.1.")}}
    problems = registry.check_export("example-medusa", "hf", tmp_path / "out", broken)
    assert problems == ["[example] no weights for head 1 (expected heads.1.*)"]


def test_export_rejects_an_unknown_format(tmp_path) -> None:
    case = make_case("example-medusa")
    draft = case.strategy.build_draft(case.info, case.stats)
    with pytest.raises(ValueError, match="supported: hf"):
        case.strategy.export(draft, tmp_path / "out", "sglang")


def test_resuming_with_another_head_count_fails_naming_the_option() -> None:
    case = make_case("example-medusa", {"num_heads": 3})
    state = case.strategy.extra_state(case.strategy.build_draft(case.info, case.stats))
    other = ExampleMedusa(MedusaOptions(num_heads=2))
    with pytest.raises(ValueError, match=r"\[strategy.example-medusa\]"):
        other.load_extra_state(other.build_draft(case.info, case.stats), state)
