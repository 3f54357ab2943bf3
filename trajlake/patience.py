"""Outages are waited out, never recorded: a record whose infrastructure failed runs again.

What the model did is data (a rollout row with its exit status); what the infrastructure did is
not. When a stage's `process` raises an `Outage` (the teacher unreachable after its client's
retries, a sandbox that does not start), the runner calls it again after a backoff that doubles
up to `runner.outage_backoff_max_s`, for `runner.outage_patience_s` in all. The work starts over
(ids are deterministic, so the outputs are the ones an undisturbed run makes); past the patience
the record becomes a dead letter (`OutageOutlasted`, naming the outage) for `trajlake dlq retry`.
A stage told to stop while a record waits leaves it undone: not committed, read again next run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from trajlake.config import RunnerConfig
from trajlake.errors import Outage, OutageOutlasted

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_DELAY_S = 1.0


class Interrupted(Exception):
    """The stage is stopping while a record waits out an outage: leave the record undone."""


def patiently(
    run: Callable[[], T], config: RunnerConfig, stopping: threading.Event, what: str
) -> T:
    """`run()`, called again while it raises an `Outage`, for `config.outage_patience_s`.

    Raises OutageOutlasted once the patience is spent, and Interrupted when `stopping` is set
    during a wait.
    """
    start = time.monotonic()
    delay = min(FIRST_DELAY_S, config.outage_backoff_max_s)
    while True:
        try:
            return run()
        except Outage as outage:
            waited = time.monotonic() - start
            left = config.outage_patience_s - waited
            if left <= 0:
                raise OutageOutlasted(
                    f"{outage} [still failing after {waited:.0f} s of retries "
                    f"(runner.outage_patience_s={config.outage_patience_s:g}); once the cause "
                    "is fixed, `trajlake dlq retry` runs the record again]",
                    cause=outage,
                ) from outage
            log.warning("%s: %s; trying again in %.0f s", what, outage, min(delay, left))
            if stopping.wait(min(delay, left)):
                raise Interrupted(what) from outage
            delay = min(delay * 2, config.outage_backoff_max_s)
