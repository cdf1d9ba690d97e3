"""The regenerate phase's shortcut: a known answer is returned only where greedy decoding gives it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from specforge.demo import recipe
from specforge.demo.regenerate import CheckedAnswers, answers_by_prompt
from specforge.demo.target import build_model

EOS, PAD = 2, 0


class Greedy:
    """A plain greedy decoder over the same model (the reference the shortcut must agree with)."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, []

    def generate(self, prompts, max_new_tokens, stop_ids=()):
        self.calls.append(len(prompts))
        out = []
        for p in prompts:
            ids, new = list(p), []
            for _ in range(max_new_tokens):
                with torch.no_grad():
                    token = int(self.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                new.append(token)
                ids.append(token)
                if token in stop_ids:
                    break
            out.append(new)
        return out


@pytest.fixture(scope="module")
def model():
    shape = dataclasses.replace(recipe.TARGET_SHAPE, num_hidden_layers=2)
    return build_model(shape, seed=3).eval()


def _prompts() -> list[tuple[int, ...]]:
    gen = torch.Generator().manual_seed(0)
    return [tuple(torch.randint(4, 500, (n,), generator=gen).tolist()) for n in (5, 9, 7, 12, 6, 8)]


def test_known_answers_greedy_would_give_are_returned_the_rest_decoded(model):
    prompts = _prompts()
    reference = Greedy(model)
    # An untrained model's greedy answer rarely ends with eos: make each one end there by stopping at
    # whatever token it emits fourth (a stop id for this test), so each answer is a complete one.
    truth = [reference.generate([p], 12, stop_ids=())[0] for p in prompts]
    stops = {t[3] for t in truth}
    want = reference.generate(prompts, 12, stop_ids=stops)
    answers = {p: tuple(w) for p, w in zip(prompts, want)}
    wrong = list(want[1])
    wrong[0] = (wrong[0] + 1) % 500 or 5  # a reference answer the target would not give
    answers[prompts[1]] = tuple(wrong)
    del answers[prompts[4]]  # and a prompt with no known answer
    engine = Greedy(model)
    checked = CheckedAnswers(engine, model, answers, pad_id=PAD, batch_size=4)
    got = checked.generate(prompts, 12, stop_ids=stops)
    assert got == want
    assert (checked.checked, checked.decoded) == (4, 2)
    assert engine.calls == [2]


def test_an_answer_longer_than_max_new_tokens_is_decoded_not_returned(model):
    prompt = _prompts()[2]
    fifth = Greedy(model).generate([prompt], 5)[0][4]
    answer = tuple(Greedy(model).generate([prompt], 12, stop_ids={fifth})[0])
    assert len(answer) == 5  # this seed's greedy tokens are distinct: the stop comes fifth
    fits, short = Greedy(model), Greedy(model)
    assert CheckedAnswers(fits, model, {prompt: answer}, pad_id=PAD).generate([prompt], 5, {fifth}) == [list(answer)]
    assert fits.calls == []
    got = CheckedAnswers(short, model, {prompt: answer}, pad_id=PAD).generate([prompt], 4, {fifth})
    assert got == [list(answer[:4])] and short.calls == [1]


def test_answers_by_prompt_are_the_trained_answer_ids_up_to_im_end(data_and_tokenizer):
    from transformers import AutoTokenizer

    from specforge.demo.target import encode, prompt_ids
    from specforge.demo.tasks import read_jsonl

    root, _ = data_and_tokenizer
    tok = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    convs = read_jsonl(root / "data" / "train.jsonl")[:20]
    answers = answers_by_prompt(tok, convs)
    assert len(answers) == 20
    for conv, ex in zip(convs, encode(tok, convs)):
        answer = answers[tuple(prompt_ids(tok, conv.user))]
        assert answer[-1] == EOS and EOS not in answer[:-1]
        assert tok.decode(answer[:-1]) == conv.assistant
        assert ex.input_ids[ex.prompt_len:ex.prompt_len + len(answer)] == answer
