"""When SGLang starts and restarts, and what each request asks of it (SGLang replaced by a recording backend).

The real backend is exercised in tests/sglang_harness; here ``InProcessBackend`` is swapped for
a recorder so the engine's own decisions can be checked in the main venv.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

import specforge_sglang.engine as engine_module
from specforge.contracts import FeatureRequest, Sample
from specforge.errors import ConfigError
from specforge_sglang.capture_plan import PLAN_ENV, CapturePlan
from specforge_sglang.engine import SGLangEngine
from specforge_sglang.options import SGLangEngineOptions

HIDDEN = 64


class RecordingBackend:
    """Answers like SGLang: prefill rows [S, (k+1)*H] as JSON lists; scripted greedy tokens."""

    instances: ClassVar[list[RecordingBackend]] = []
    script: ClassVar[tuple[int, ...]] = (5, 258, 7, 9)

    def __init__(self, engine_kwargs: dict, env: dict) -> None:
        self.kwargs, self.plan = engine_kwargs, CapturePlan.from_env(env[PLAN_ENV])
        self.calls: list[dict] = []
        self.closed = False
        RecordingBackend.instances.append(self)

    def generate(self, prompts, params, *, rids, return_hidden_states=False):
        self.calls.append({"params": params, "rids": rids, "hidden": return_hidden_states})
        width = self.plan.num_blocks * HIDDEN
        return [{"output_ids": list(self.script[:p["max_new_tokens"]]),
                 "meta_info": {"hidden_states": [[[float(k)] * width for k in range(len(ids))]]}}
                for ids, p in zip(prompts, params)]

    def shutdown(self) -> None:
        self.closed = True


@pytest.fixture
def make_engine(monkeypatch: pytest.MonkeyPatch, tiny_qwen3_dir: Path):
    RecordingBackend.instances = []
    monkeypatch.setattr(engine_module, "InProcessBackend", RecordingBackend)
    monkeypatch.setattr(engine_module, "require_sglang", lambda **_: "0.5.23")
    made = []

    def make(**options) -> SGLangEngine:
        engine = SGLangEngine(SGLangEngineOptions(transport="json", **options), model_path=str(tiny_qwen3_dir),
                              device="cpu")
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


SAMPLES = [Sample("a", (1, 2, 3), (0, 1, 1)), Sample("b", (4,), (1,))]


def test_sglang_starts_lazily_with_the_first_requests_layers_and_cpu_settings(make_engine) -> None:
    engine = make_engine()
    engine.info()
    assert RecordingBackend.instances == []  # info() needs no SGLang
    engine.capture(SAMPLES, FeatureRequest(layers=(3, 1), last_hidden=True))
    (backend,) = RecordingBackend.instances
    assert backend.plan.layers == (1, 3)
    kw = backend.kwargs
    assert (kw["device"], kw["attention_backend"], kw["disable_radix_cache"], kw["chunked_prefill_size"]) == (
        "cpu", "torch_native", True, -1)
    assert backend.calls[0]["hidden"] and all(p["max_new_tokens"] == 1 for p in backend.calls[0]["params"])


def test_a_request_for_other_layers_restarts_sglang_with_the_union(make_engine, caplog) -> None:
    engine = make_engine()
    engine.capture(SAMPLES, FeatureRequest(layers=(1,)))
    engine.capture(SAMPLES, FeatureRequest(layers=(0,)))
    engine.capture(SAMPLES, FeatureRequest(layers=(1, 0), logits=True))
    first, second = RecordingBackend.instances
    assert first.closed and first.plan.layers == (1,)
    assert not second.closed and second.plan.layers == (0, 1)
    assert "target_engine.capture_layers" in caplog.text


def test_fixed_capture_layers_never_restart_and_name_what_is_missing(make_engine) -> None:
    engine = make_engine(capture_layers=(0, 2))
    with pytest.raises(ConfigError, match=r"lacks the requested layers \[1\]"):
        engine.capture(SAMPLES, FeatureRequest(layers=(1,)))
    assert len(RecordingBackend.instances) == 1


def test_features_are_cut_from_the_rows_in_request_order(make_engine) -> None:
    engine = make_engine(capture_layers=(0, 1, 2))
    (a, b) = engine.capture(SAMPLES, FeatureRequest(layers=(2, 0), last_hidden=True, logits=True))
    assert a["hidden_states"].shape == (3, 2 * HIDDEN) and b["hidden_states"].shape == (1, 2 * HIDDEN)
    assert a["input_ids"].tolist() == [1, 2, 3] and a["loss_mask"].tolist() == [0, 1, 1]
    assert a["last_hidden"][:, 0].tolist() == [0.0, 1.0, 2.0]
    expected_logits = a["last_hidden"] @ engine.info().lm_head_weight.T
    assert a["logits"].shape == (3, 272) and a["logits"].allclose(expected_logits)


def test_generate_lets_sglang_stop_only_when_the_stop_ids_include_the_models_eos(make_engine) -> None:
    engine = make_engine()
    eos = 258  # the tiny target's eos_token_id
    assert engine.generate([[1, 2]], 4, stop_ids=(eos,)) == [[5, 258]]
    assert RecordingBackend.instances[0].calls[-1]["params"][0]["stop_token_ids"] == [258]
    # 7 is no EOS of the model: SGLang must not stop at 258, so ignore_eos and cut after 7 here.
    assert engine.generate([[1, 2]], 4, stop_ids=(7,)) == [[5, 258, 7]]
    params = RecordingBackend.instances[0].calls[-1]["params"][0]
    assert params["ignore_eos"] and "stop_token_ids" not in params
    assert engine.generate([[1, 2], [3]], 0) == [[], []]


def test_only_capture_requests_carry_the_id_prefix_the_capture_class_writes_rows_for(make_engine) -> None:
    from specforge_sglang.capture_plan import RID_PREFIX

    engine = make_engine()
    engine.capture(SAMPLES, FeatureRequest(layers=(0,)))
    engine.generate([[1, 2]], 2)
    capture_call, generate_call = RecordingBackend.instances[0].calls
    assert all(r.startswith(RID_PREFIX) for r in capture_call["rids"])
    assert not any(r.startswith(RID_PREFIX) for r in generate_call["rids"])
    assert len(set(capture_call["rids"] + generate_call["rids"])) == 3
