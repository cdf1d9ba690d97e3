"""The target trainer: seeded runs give identical weights; only assistant tokens are supervised."""

from __future__ import annotations

import dataclasses

import torch

from specforge.demo import recipe
from specforge.demo.target import IGNORE, Example, TargetTrainer, build_model
from specforge.demo.target_build import new_trainer, torch_threads

SMALL = dataclasses.replace(recipe.TRAIN_RECIPE, batch_size=8)


def _weights_after(root, steps: int, seed: int) -> dict[str, torch.Tensor]:
    with torch_threads(1):
        trainer = new_trainer(root / "tokenizer", root / "data" / "train.jsonl", seed=seed, recipe=SMALL)
        trainer.run(steps)
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_twenty_seeded_steps_twice_give_identical_weights(data_and_tokenizer):
    root, _ = data_and_tokenizer
    first, second = _weights_after(root, 20, seed=7), _weights_after(root, 20, seed=7)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_another_seed_gives_other_weights(data_and_tokenizer):
    root, _ = data_and_tokenizer
    first, other = _weights_after(root, 1, seed=7), _weights_after(root, 1, seed=8)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_model_has_the_recipe_shape_and_enough_layers_for_every_default_layer_rule():
    model = build_model(recipe.TARGET_SHAPE, seed=0)
    cfg = model.config
    n = cfg.num_hidden_layers
    assert (n, cfg.hidden_size, cfg.vocab_size) == (8, recipe.TARGET_SHAPE.hidden_size, recipe.DEMO_VOCAB_SIZE)
    eagle3 = [1, n // 2 - 1, n - 4]
    dflash = list(range(1, n - 2))
    assert len(set(eagle3)) == 3 and all(0 <= i < n for i in eagle3 + dflash) and len(dflash) >= 5
    assert model.generation_config.eos_token_id == 2


def _packing_trainer(examples, pack_length=16):
    model = build_model(dataclasses.replace(recipe.TARGET_SHAPE, num_hidden_layers=2), seed=0).double().eval()
    small = dataclasses.replace(SMALL, batch_size=len(examples), pack_length=pack_length)
    return TargetTrainer(model, examples, small, seed=0)


def test_packed_batches_supervise_exactly_the_answer_tokens():
    examples = [Example((10, 11, 12, 13, 14), 3), Example((20, 21, 22), 1), Example((30, 31, 32, 33), 2)]
    ids, labels, positions, _ = _packing_trainer(examples)._next_batch()
    supervised = sorted(ids[labels != IGNORE].tolist())
    assert supervised == [13, 14, 21, 22, 32, 33]
    assert ids.shape[0] == 1  # 12 tokens fit one 16-token row
    assert sorted(positions[0, :12].tolist()) == sorted([0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3])


def test_a_packed_row_computes_each_conversation_exactly_as_if_alone():
    examples = [Example(tuple(range(40, 47)), 2), Example(tuple(range(60, 65)), 1), Example(tuple(range(70, 79)), 3)]
    trainer = _packing_trainer(examples, pack_length=32)
    ids, _, positions, mask = trainer._next_batch()
    with torch.no_grad():
        packed = trainer.model(input_ids=ids, attention_mask=mask.double(), position_ids=positions).logits[0]
        for ex in examples:
            alone = trainer.model(input_ids=torch.tensor([ex.input_ids])).logits[0]
            start = ids[0].tolist().index(ex.input_ids[0])
            assert torch.allclose(packed[start:start + len(ex.input_ids)], alone, atol=1e-10)
