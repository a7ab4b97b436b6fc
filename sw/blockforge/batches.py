"""Tokenized splits and batches: what every stage that feeds a model text uses (pruning's training
loops, calibration in :mod:`blockforge.export`, the flow's int8 and RTL evaluation).

``tokenize(tokenizer, examples, max_length)`` keeps token ids unpadded; ``TokenizedSplit.collate`` pads a
batch on the right; :class:`Batches` gives seeded, rank-sharded batch indices for training, the same on
one process and under ``torchrun`` / ``accelerate launch``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .data import Example

__all__ = ["Batches", "TokenizedSplit", "pack_by_tokens", "tokenize"]


@dataclass(frozen=True)
class TokenizedSplit:
    """Token ids of a split (unpadded, truncated to ``max_length``) and their labels."""

    features: tuple[dict[str, tuple[int, ...]], ...]
    labels: tuple[float, ...]
    pad_token_id: int

    def __len__(self) -> int:
        return len(self.labels)

    def collate(self, indices: Sequence[int], regression: bool) -> dict[str, torch.Tensor]:
        """A right-padded batch (input_ids, attention_mask[, token_type_ids], labels)."""
        rows = [self.features[i] for i in indices]
        width = max(len(r["input_ids"]) for r in rows)
        batch: dict[str, torch.Tensor] = {}
        for key in rows[0]:
            pad = self.pad_token_id if key == "input_ids" else 0
            batch[key] = torch.tensor([list(r[key]) + [pad] * (width - len(r[key])) for r in rows],
                                      dtype=torch.long)
        batch["attention_mask"] = torch.tensor(
            [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows], dtype=torch.long)
        labels = [self.labels[i] for i in indices]
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if regression else torch.long)
        return batch


def tokenize(tokenizer, examples: Sequence[Example], max_length: int) -> TokenizedSplit:
    """Tokenize examples (single sentences or pairs) without padding."""
    firsts = [e.text_a for e in examples]
    seconds = [e.text_b for e in examples]
    pair = any(s is not None for s in seconds)
    encoded = tokenizer(firsts, [s or "" for s in seconds] if pair else None, truncation=True,
                        max_length=max_length, padding=False)
    keys = [k for k in ("input_ids", "token_type_ids") if k in encoded]
    features = tuple({k: tuple(encoded[k][i]) for k in keys} for i in range(len(examples)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TokenizedSplit(features, tuple(float(e.label) for e in examples), pad)


class Batches:
    """Seeded, sharded batch indices: epoch e of a phase is a permutation seeded by (seed, phase, e);
    each global batch of ``batch_size × world`` examples is split so rank r takes the r-th slice."""

    def __init__(self, n_examples: int, batch_size: int, *, seed: int, rank: int = 0, world: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, not {batch_size!r}")
        self.n, self.batch_size, self.seed, self.rank, self.world = n_examples, batch_size, seed, rank, world
        global_batch = batch_size * world
        self.steps_per_epoch = max(1, n_examples // global_batch)
        self.per_rank = min(batch_size, n_examples // world) if n_examples < global_batch else batch_size

    def epoch(self, phase: int, epoch: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + phase * 10_007 + epoch)
        perm = torch.randperm(self.n, generator=gen).tolist()
        out = []
        for step in range(self.steps_per_epoch):
            start = step * self.per_rank * self.world + self.rank * self.per_rank
            out.append(perm[start:start + self.per_rank])
        return out

    def steps(self, phase: int, n_steps: int):
        """Yield ``n_steps`` batches of indices, walking through as many epochs as needed."""
        done = 0
        for epoch in range(math.ceil(n_steps / self.steps_per_epoch) + 1):
            for indices in self.epoch(phase, epoch):
                if done == n_steps:
                    return
                yield indices
                done += 1


def pack_by_tokens(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Group example indices so that each group, right-padded to its longest example, fills at most
    ``budget`` token columns (whole engine passes of ``max_tokens``): examples sorted by length, then packed
    greedily, so the padding stays small. An example longer than ``budget`` gets a group of its own.
    Every index appears once; groups come shortest first."""
    if budget < 1:
        raise ValueError(f"token budget must be positive, not {budget!r}")
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        group = groups[-1] if groups else None
        if group and (len(group) + 1) * lengths[i] <= budget:
            group.append(i)
        else:
            groups.append([i])
    return groups
