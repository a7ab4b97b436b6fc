"""Tokenized splits and seeded, rank-sharded batches (blockforge.batches) on the default model's tokenizer."""

from __future__ import annotations

import pytest
import torch

from blockforge.batches import Batches, pack_by_tokens, tokenize
from blockforge.data import Example
from blockforge.models import load_tokenizer


def test_tokenize_keeps_ids_unpadded_and_collate_pads_on_the_right():
    tokenizer = load_tokenizer("default")
    examples = [Example("a short one", None, 1), Example("a somewhat longer sentence with more words", None, 0)]
    split = tokenize(tokenizer, examples, max_length=8)
    lengths = [len(f["input_ids"]) for f in split.features]
    assert lengths[0] < lengths[1] == 8                     # truncated to max_length, not padded
    batch = split.collate([0, 1], regression=False)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["input_ids"][0, lengths[0]:].tolist() == [split.pad_token_id] * (8 - lengths[0])
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    assert split.collate([0], regression=True)["labels"].dtype == torch.float32


def test_pairs_are_encoded_together():
    tokenizer = load_tokenizer("default")
    single = tokenize(tokenizer, [Example("left side", None, 0)], max_length=32)
    pair = tokenize(tokenizer, [Example("left side", "right side", 0)], max_length=32)
    assert len(pair.features[0]["input_ids"]) > len(single.features[0]["input_ids"])


def test_batches_are_seeded_and_ranks_take_disjoint_slices():
    one = Batches(20, 4, seed=3)
    assert one.epoch(0, 0) == Batches(20, 4, seed=3).epoch(0, 0)
    assert one.epoch(0, 0) != one.epoch(0, 1) and one.epoch(0, 0) != one.epoch(1, 0)
    ranks = [Batches(20, 2, seed=3, rank=r, world=2) for r in range(2)]
    for step, (a, b) in enumerate(zip(*(r.epoch(0, 0) for r in ranks))):
        assert not set(a) & set(b)
        assert sorted(a + b) == sorted(one.epoch(0, 0)[step])      # the same global batch, split by rank
    assert len(list(one.steps(0, 12))) == 12                         # walks on through later epochs


def test_pack_by_tokens_fills_passes_with_little_padding():
    lengths = [30, 10, 12, 64, 70, 11, 31]
    groups = pack_by_tokens(lengths, 64)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        assert len(group) == 1 or len(group) * max(lengths[i] for i in group) <= 64
    assert [1, 5, 2] in groups                     # 10, 11, 12: three in one pass (3 · 12 ≤ 64)
    assert [0, 6] in groups                        # 30, 31
    assert [4] in groups                           # longer than a pass: alone
    with pytest.raises(ValueError):
        pack_by_tokens([3], 0)
