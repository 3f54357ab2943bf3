"""A mixture on disk to micro-batches: reading, encoding, the step plan, and collation.

The plan is a pure function of the sample lengths, the seed, the epoch and the number of
micro-batches in one optimizer step (ranks x accumulation): every rank computes the same plan,
and a step number is the whole data position a checkpoint needs.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from trajlake.training.chat import IGNORE_INDEX, tokenize_chat, truncate
from trajlake.training.errors import MixtureError, TrainingError

REQUIRED_COLUMNS = ("sample_id", "messages", "tools")
#: samples shuffled together before sorting by length: bigger groups pad less, mix less.
GROUP_SIZE = 256


@dataclass(frozen=True)
class Example:
    """One encoded sample: ids and unshifted labels (-100 where nothing is trained)."""

    sample_id: str
    input_ids: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.numel())


@dataclass(frozen=True)
class Encoded:
    examples: list[Example]
    dropped: int  # no assistant turn fits in max_seq_len
    truncated: int  # cut back to their last complete assistant turn


@dataclass(frozen=True)
class Step:
    """One optimizer step: the epoch, and micro-batches (sample indices) for all ranks."""

    epoch: int
    batches: list[list[int]]

    def for_rank(self, rank: int, world_size: int) -> list[list[int]]:
        return self.batches[rank::world_size]


@dataclass
class Batch:
    """Model inputs. `targets` are the labels shifted left within each sample."""

    input_ids: torch.Tensor
    targets: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    lengths: list[int] = field(default_factory=list)

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())

    def to(self, device: torch.device) -> Batch:
        mask = None if self.attention_mask is None else self.attention_mask.to(device)
        return Batch(
            self.input_ids.to(device),
            self.targets.to(device),
            self.position_ids.to(device),
            mask,
            self.lengths,
        )


def read_mixture(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (sample_id, messages, tools) of `path`/data.parquet, and its manifest."""
    root = Path(path)
    data, manifest = root / "data.parquet", root / "manifest.json"
    if not data.is_file() or not manifest.is_file():
        raise MixtureError(
            f"{root} is not a mixture: it needs data.parquet and manifest.json "
            "(build one with `trajlake mixture build`, or leave mixture empty for a synthetic one)"
        )
    table = pq.read_table(data)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise MixtureError(f"{data} lacks the columns {missing}: rebuild the mixture")
    return table.select(list(REQUIRED_COLUMNS)).to_pylist(), json.loads(manifest.read_text())


def encode_mixture(rows: list[dict[str, Any]], tokenizer: Any, max_seq_len: int) -> Encoded:
    """Tokenize every row, truncating to `max_seq_len`; rows with no turn left are dropped."""
    examples, dropped, truncated = [], 0, 0
    for row in rows:
        chat = tokenize_chat(tokenizer, row["messages"], row["tools"])
        kept = truncate(chat, max_seq_len)
        if kept is None:
            dropped += 1
            continue
        truncated += len(kept.turn_ends) < len(chat.turn_ends)
        ids = torch.tensor(kept.input_ids, dtype=torch.int32)
        examples.append(
            Example(row["sample_id"], ids, torch.tensor(kept.labels, dtype=torch.int32))
        )
    return Encoded(examples, dropped, truncated)


def encode_mixture_shared(rows: list[dict[str, Any]], tokenizer: Any, max_seq_len: int) -> Encoded:
    """`encode_mixture` split over the ranks: each tokenizes every world-th row and the shares
    are exchanged (over gloo, on the CPU, beside NCCL too), so the mixture is rendered and
    tokenized once in all rather than once per rank. Same examples, same order."""
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = encode_mixture(rows[rank::world], tokenizer, max_seq_len)
    if world == 1:
        return mine
    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    shares: list[Encoded | None] = [None] * world
    dist.all_gather_object(shares, mine, group=group)
    position = {row["sample_id"]: i for i, row in enumerate(rows)}
    examples = [e for share in shares if share for e in share.examples]
    examples.sort(key=lambda e: position[e.sample_id])
    return Encoded(
        examples,
        sum(share.dropped for share in shares if share),
        sum(share.truncated for share in shares if share),
    )


def plan_epoch(
    lengths: list[int], budget: int, seed: int, epoch: int, pack: bool
) -> list[list[int]]:
    """Micro-batches of sample indices for one epoch, in training order.

    Samples are shuffled, cut into groups of `GROUP_SIZE`, and each group sorted by length; then
    consecutive samples fill a batch while rows x longest <= budget (or, packed, while the sum of
    lengths <= budget). The batch order is shuffled again.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    for g in range(0, len(order), GROUP_SIZE):
        group = sorted(order[g : g + GROUP_SIZE], key=lambda i: lengths[i], reverse=True)
        batches.extend(_fill(group, lengths, budget, pack))
    rng.shuffle(batches)
    return batches


def _fill(group: list[int], lengths: list[int], budget: int, pack: bool) -> list[list[int]]:
    return _pack(group, lengths, budget) if pack else _pad(group, lengths, budget)


def _pad(group: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive samples (longest first) while rows x longest fits the budget."""
    batches: list[list[int]] = []
    for i in group:
        if batches and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _pack(group: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """First fit (longest first): each sample goes in the first row with room for it."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in group:
        row = next((r for r, free in enumerate(room) if lengths[i] <= free), None)
        if row is None:
            rows.append([])
            room.append(budget)
            row = len(rows) - 1
        rows[row].append(i)
        room[row] -= lengths[i]
    return rows


def plan_steps(
    lengths: list[int], budget: int, seed: int, epochs: int, pack: bool, per_step: int
) -> list[Step]:
    """Every optimizer step of the run: `per_step` micro-batches each (ranks x accumulation).
    An epoch's last batches that do not fill a step are left out of that epoch."""
    if max(lengths, default=0) > budget:
        raise TrainingError(f"micro_batch_tokens {budget} is below the longest sample: raise it")
    steps = []
    for epoch in range(epochs):
        batches = plan_epoch(lengths, budget, seed, epoch, pack)
        full = len(batches) // per_step * per_step
        steps += [Step(epoch, batches[i : i + per_step]) for i in range(0, full, per_step)]
    if not steps:
        raise TrainingError(
            f"{len(lengths)} samples make fewer micro-batches than one step needs ({per_step} = "
            "ranks x grad_accum): lower micro_batch_tokens, grad_accum or the number of ranks"
        )
    return steps


def plan_hash(steps: list[Step]) -> str:
    """Names the plan: a checkpoint only resumes a run whose plan is the same."""
    text = json.dumps([[s.epoch, s.batches] for s in steps])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def collate(examples: list[Example], pack: bool, pad_id: int) -> Batch:
    """One row of packed samples (positions restart at each), or right-padded rows."""
    if pack:
        ids = torch.cat([e.input_ids for e in examples]).long()[None]
        targets = torch.cat([_shifted(e.labels) for e in examples])[None]
        positions = torch.cat([torch.arange(len(e)) for e in examples])[None]
        return Batch(ids, targets, positions, None, [len(e) for e in examples])
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e)] = e.input_ids
        targets[row, : len(e)] = _shifted(e.labels)
        mask[row, : len(e)] = 1
    positions = torch.arange(width).expand(len(examples), width)
    padded = any(len(e) < width for e in examples)
    return Batch(ids, targets, positions, mask if padded else None, [len(e) for e in examples])


def _shifted(labels: torch.Tensor) -> torch.Tensor:
    """Position t predicts token t+1; the sample's last position predicts nothing."""
    out = torch.full((labels.numel(),), IGNORE_INDEX, dtype=torch.long)
    out[:-1] = labels[1:]
    return out


def mixture_texts(rows: list[dict[str, Any]]) -> list[str]:
    """The text of every message, reasoning and tool call, for training a tokenizer on."""
    texts = ["<think>\n</think>\n\n<tool_call>\n</tool_call>\n<tool_response>\n</tool_response>"]
    for row in rows:
        texts.append(row["tools"] or "")
        for message in row["messages"]:
            texts += [message["content"] or "", message["reasoning_content"] or ""]
            texts += [json.dumps(call) for call in message["tool_calls"] or []]
    return texts
