"""All stages in one process, each in its own thread, until the work runs out.

This is what `trajlake run` and `trajlake demo` do on one machine. Every stage still goes
through the bus and the lake exactly as it would as its own process (`trajlake stage NAME`),
so a pipeline stopped at any point resumes where it was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from trajlake.bus import Bus, group_lag
from trajlake.config import Config
from trajlake.errors import TrajlakeError
from trajlake.lake import Lake
from trajlake.runner import RunStats, StageRunner, subscriptions
from trajlake.stages import BUILTIN, BUILTIN_INPUTS, load_stage

CHECK_EVERY_S = 0.5
QUIET_CHECKS = 3  # all lags zero this many checks in a row: the pipeline is done


class PipelineError(TrajlakeError):
    """A stage of the pipeline stopped with an error (not a bad record: those are dead letters)."""


@dataclass
class StageStatus:
    name: str
    inputs: tuple[str, ...]
    lag: int  # records on its input topics not yet committed by its group
    stats: RunStats | None = None


def stage_lags(bus: Bus, stages: dict[str, tuple[str, ...]]) -> list[StageStatus]:
    """Per stage (name -> input topics): how many input records its group has not committed."""
    statuses = []
    for name, inputs in stages.items():
        statuses.append(StageStatus(name, inputs, group_lag(bus, name, inputs)))
    return statuses


def waiting_stages(bus: Bus, names: Iterable[str]) -> set[str]:
    """The built-in stages among `names` whose group has records on its input topics (not
    the shared retry topic, which holds every stage's); a stage whose topics do not exist
    yet has none."""
    known = set(bus.list_topics())
    inputs = {n: BUILTIN_INPUTS[n] for n in names if n in BUILTIN_INPUTS}
    inputs = {n: topics for n, topics in inputs.items() if known.issuperset(topics)}
    return {status.name for status in stage_lags(bus, inputs) if status.lag}


def run_pipeline(
    config: Config,
    bus: Bus,
    names: list[str] | None = None,
    until_idle: bool = True,
    stop: threading.Event | None = None,
    on_progress: Callable[[list[StageStatus]], None] | None = None,
) -> list[StageStatus]:
    """Run the named stages (all built-in ones by default) until no stage has anything left."""
    stop = stop or threading.Event()
    lake = Lake(config.lake.root)
    runners = [
        StageRunner(load_stage(name, config), bus, lake, config.runner, config.bus)
        for name in names or list(BUILTIN)
    ]
    failures: dict[str, BaseException] = {}
    threads = [_start(runner, failures) for runner in runners]
    inputs = {r.stage.name: tuple(subscriptions(r.stage, bus)) for r in runners}
    quiet = 0
    try:
        while not stop.is_set() and quiet < QUIET_CHECKS and not failures:
            time.sleep(CHECK_EVERY_S)
            statuses = _with_stats(stage_lags(bus, inputs), runners)
            if on_progress:
                on_progress(statuses)
            quiet = 0 if any(s.lag for s in statuses) or not until_idle else quiet + 1
    finally:
        for runner in runners:
            runner.stop()
        for thread in threads:
            thread.join()
    if failures:
        name, error = next(iter(failures.items()))
        raise PipelineError(f"stage {name} stopped: {type(error).__name__}: {error}") from error
    return _with_stats(stage_lags(bus, inputs), runners)


def _start(runner: StageRunner, failures: dict[str, BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            runner.run()
        except Exception as e:  # noqa: BLE001 - the stage boundary: reported by run_pipeline
            failures[runner.stage.name] = e

    thread = threading.Thread(target=run, name=runner.stage.name, daemon=True)
    thread.start()
    return thread


def _with_stats(statuses: list[StageStatus], runners: list[StageRunner]) -> list[StageStatus]:
    by_name = {r.stage.name: r.stats for r in runners}
    for status in statuses:
        status.stats = by_name.get(status.name)
    return statuses
