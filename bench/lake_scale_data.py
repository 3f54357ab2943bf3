"""Synthetic SVG lake for bench/lake_scale.py, written the way the stage runner writes it.

Every stage (function_sampler, rollout1, pr_writer, rollout2, verifier, filter) takes its inputs
per partition (key hash mod `partitions`) in batches of `batch_size`, and writes one
`Lake.write` per output topic and batch, named `{stage}-{topic}-p{partition}-o{offset:012d}`
(trajlake/runner.py); Lake.write splits it into one file per repository. Dates follow the run's
progress over `days`. The events themselves come from bench/lake_scale_events.py.
"""

from __future__ import annotations

import datetime as dt
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lake_scale_events import START, Maker, Plan, corpora, eid

from trajlake.lake import Lake
from trajlake.schemas import Event


@dataclass(frozen=True)
class Hop:
    """One stage reading one input topic: `make(i, at)` gives the outputs of input i."""

    stage: str
    topic: str
    inputs: int
    key: Callable[[int], bytes]
    make: Callable[[int, dt.datetime], list[Event]]


def hops(maker: Maker) -> list[Hop]:
    """The six stages in pipeline order; input i of a hop is the i-th record of its topic."""
    plan = maker.plan
    per_commit: dict[int, list[int]] = {}
    for i, task in enumerate(plan.tasks):
        per_commit.setdefault(task[1], []).append(i)
    pr_of = {task: i for i, task in enumerate(plan.accepted)}
    tasks, prs = len(plan.tasks), len(plan.accepted)

    def by_id(kind: str) -> Callable[[int], bytes]:  # the bus key of most records
        return lambda i: eid(kind, i).encode()

    def one(make: Callable[..., Event], **kw: bool) -> Callable[[int, dt.datetime], list]:
        return lambda i, at: [make(i, at, **kw)]

    def sampled(c: int, at: dt.datetime) -> list[Event]:
        return [maker.task(i, at) for i in per_commit[c]]

    def written(i: int, at: dt.datetime) -> list[Event]:  # a PR for accepted T1s only
        return [maker.pr(pr_of[i], at)] if plan.tasks[i][4] else []

    by_repo = lambda c: plan.repos[plan.commits[c]].encode()  # noqa: E731
    return [
        Hop("function_sampler", "commits", len(plan.commits), by_repo, sampled),
        Hop("rollout1", "tasks", tasks, by_id("task"), one(maker.rollout, t2=False)),
        Hop("pr_writer", "rollouts.t1", tasks, by_id("t1"), written),
        Hop("rollout2", "prs", prs, by_id("pr"), one(maker.rollout, t2=True)),
        Hop("verifier", "rollouts.t2", prs, by_id("t2"), one(maker.verdict)),
        Hop("filter", "rollouts.t1", tasks, by_id("t1"), one(maker.sample, t2=False)),
        Hop("filter", "rollouts.t2", prs, by_id("t2"), one(maker.sample, t2=True)),
    ]


def run_hop(lake: Lake, hop: Hop, partitions: int, batch_size: int, days: int, rank: int) -> int:
    """The runner's writes for one hop: per partition, batches of `batch_size` inputs."""
    queues: list[list[int]] = [[] for _ in range(partitions)]
    for i in range(hop.inputs):
        queues[zlib.crc32(hop.key(i)) % partitions].append(i)
    batches = sorted(
        (q[start], p, start, q[start : start + batch_size])
        for p, q in enumerate(queues)
        for start in range(0, len(q), batch_size)
    )
    written = 0
    for first, partition, offset, batch in batches:  # in the order the run reached them
        at = START + dt.timedelta(days=days * first / hop.inputs, hours=rank)
        events = [e for i in batch for e in hop.make(i, at + dt.timedelta(seconds=i % 600))]
        by_topic: dict[str, list[Event]] = {}
        for event in events:
            by_topic.setdefault(event.topic(), []).append(event)
        name = f"{hop.stage}-{hop.topic}-p{partition}-o{offset:012d}"
        for topic, group in by_topic.items():
            written += len(lake.write(topic, group, name=name, date=at.date()))
    return written


def generate(
    root: Path,
    rollouts: int,
    repos: int,
    partitions: int,
    batch_size: int,
    days: int,
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Write the lake under `root`; returns files written per hop."""
    start = time.perf_counter()
    code, prose = corpora()
    maker = Maker(Plan.make(rollouts, repos), code, prose)
    log(
        f"  corpus {len(code.text) / 1e6:.0f} + {len(prose.text) / 1e6:.0f} MB "
        f"({time.perf_counter() - start:.0f} s)"
    )
    lake, files = Lake(root), {}
    for rank, hop in enumerate(hops(maker)):
        start = time.perf_counter()
        key = f"{hop.stage}<-{hop.topic}"
        files[key] = run_hop(lake, hop, partitions, batch_size, days, rank)
        log(
            f"  {key:<30} {hop.inputs:>8,} inputs {files[key]:>8,} files "
            f"({time.perf_counter() - start:.0f} s)"
        )
    return files
