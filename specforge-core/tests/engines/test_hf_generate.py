"""hf engine greedy generation equals transformers' own generate(do_sample=False)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from specforge.engines.hf import HFEngine, HFEngineOptions

PROMPT_LENGTHS = (7, 2, 12, 5, 1)
NEW = 12


def _prompts() -> list[list[int]]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randint(0, 259, (n,), generator=gen).tolist() for n in PROMPT_LENGTHS]


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"{request.param}_dir")


@pytest.fixture(scope="module")
def hf_model(model_dir: Path) -> AutoModelForCausalLM:
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float64, local_files_only=True)
    model.generation_config.eos_token_id = None  # no stopping unless a test asks for it
    return model


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Iterator[HFEngine]:
    with HFEngine(HFEngineOptions(batch_size=4), model_path=str(model_dir), dtype="float64",
                  device="cpu") as e:
        yield e


def _hf_greedy(model: AutoModelForCausalLM, prompt: list[int], **kwargs: object) -> list[int]:
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, do_sample=False,
                         **kwargs)
    return out[0, len(prompt):].tolist()


def test_batched_greedy_equals_transformers_generate_per_prompt(engine: HFEngine, hf_model: object) -> None:
    got = engine.generate(_prompts(), NEW)
    assert got == [_hf_greedy(hf_model, p) for p in _prompts()]
    assert all(len(g) == NEW for g in got)


def test_generation_stops_after_a_stop_id_which_is_included(engine: HFEngine, hf_model: object) -> None:
    free = engine.generate(_prompts(), NEW)
    stop = free[0][4]  # a token prompt 0 produces mid-way
    got = engine.generate(_prompts(), NEW, stop_ids=[stop])
    expected = [_hf_greedy(hf_model, p, eos_token_id=stop, pad_token_id=0) for p in _prompts()]
    # transformers pads finished rows; cut after the first stop as the engine does
    expected = [e[:e.index(stop) + 1] if stop in e else e for e in expected]
    assert got == expected
    assert got[0][-1] == stop and len(got[0]) <= 5


def test_batch_size_does_not_change_the_output(model_dir: Path, engine: HFEngine) -> None:
    with HFEngine(HFEngineOptions(batch_size=1), model_path=str(model_dir), dtype="float64",
                  device="cpu") as one:
        assert one.generate(_prompts(), NEW) == engine.generate(_prompts(), NEW)


def test_zero_new_tokens_gives_empty_continuations(engine: HFEngine) -> None:
    assert engine.generate(_prompts(), 0) == [[] for _ in PROMPT_LENGTHS]


def test_empty_prompt_is_rejected(engine: HFEngine) -> None:
    with pytest.raises(ValueError, match="no tokens"):
        engine.generate([[1, 2], []], 3)
