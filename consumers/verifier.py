"""Soft verification (SVG step 5): how much of P1 does rollout 2 reproduce in P2?

r = matched / |P1 lines|, where P1's changed lines (see `trajlake.patches`) are matched as a
multiset against P2's. r = 1 is hard-verified, 0 < r < 1 soft-verified, r = 0 unverified.
Matched and total counts are recorded too, so any threshold can be applied later in SQL.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from trajlake.config import Config
from trajlake.patches import PatchParseError, changed_lines
from trajlake.schemas import Event, RolloutEvent, VerdictEvent, make_event_id
from trajlake.stage import Stage

NAME = "verifier"

Label = Literal["hard", "soft", "unverified", "empty", "unparseable"]


@dataclass(frozen=True)
class Recall:
    """P1's changed lines found in P2: `matched` of `total`, their ratio, and its label."""

    matched: int
    total: int
    recall: float | None
    label: Label


def recall(p1: str, p2: str) -> Recall:
    """Line-level recall of patch `p1` in patch `p2`; never raises on a bad patch.

    A patch that does not parse gives the label "unparseable" (recall None, total = P1's
    line count when P1 itself parses); a P1 without changed lines gives "empty".
    """
    try:
        lines1 = changed_lines(p1)
    except PatchParseError:
        return Recall(0, 0, None, "unparseable")
    try:
        lines2 = changed_lines(p2)
    except PatchParseError:
        return Recall(0, len(lines1), None, "unparseable")
    total = len(lines1)
    if total == 0:
        return Recall(0, 0, None, "empty")
    matched = _overlap(lines1, lines2)
    if matched == total:
        return Recall(matched, total, 1.0, "hard")
    return Recall(matched, total, matched / total, "soft" if matched else "unverified")


def _overlap(a: list[str], b: list[str]) -> int:
    """How many items of `a` can be paired with equal items of `b`, each used once."""
    set_a, set_b = set(a), set(b)
    if len(set_a) == len(a) or len(set_b) == len(b):
        return len(set_a & set_b)  # one side has no repeats: min(count_a, count_b) is 0 or 1
    return sum((Counter(a) & Counter(b)).values())


def process(event: Event) -> list[Event]:
    """One VerdictEvent for a rollout-2 event: P1 (`reference_patch`) against P2 (`patch`)."""
    if not isinstance(event, RolloutEvent) or event.rollout != "t2":
        kind = f"rollout {event.rollout}" if isinstance(event, RolloutEvent) else "event"
        raise ValueError(
            f"the verifier takes rollout-2 events (topic rollouts.t2), got a {kind} "
            f"{type(event).__name__} {event.event_id}: check the stage's input topics"
        )
    result = recall(event.reference_patch, event.patch)
    verdict = VerdictEvent(
        event_id=make_event_id(event.event_id, NAME),
        parent_ids=[event.event_id],
        stage=NAME,
        **event.lineage(),
        task_id=event.task_id,
        t1_id=event.t1_id,
        t2_id=event.event_id,
        matched=result.matched,
        total=result.total,
        recall=result.recall,
        label=result.label,
    )
    return [verdict]


def make_stage(config: Config) -> Stage:
    """The verifier stage; it has no settings of its own, so `config` is not read."""
    return Stage(name=NAME, inputs=("rollouts.t2",), outputs=("verdicts",), process=process)
