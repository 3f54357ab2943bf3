"""The rollout watchdog: an attempt runs in a thread and ticks as it makes progress; one that
makes none for `no_progress_s` is abandoned (it stops at its next tick) so that the caller can
start it again on a fresh sandbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Progress:
    """When the rollout last did something, and whether the watchdog gave up on it."""

    last: float = field(default_factory=time.monotonic)
    abandoned: threading.Event = field(default_factory=threading.Event)

    def tick(self) -> None:
        if self.abandoned.is_set():
            raise Abandoned()
        self.last = time.monotonic()


class Abandoned(Exception):
    """Raised inside an abandoned rollout's thread so it stops at its next step."""


def watched(attempt: Callable[[Progress], T], no_progress_s: float) -> T | None:
    """Run `attempt` in a thread; None when it stalled (the thread stops at its next step)."""
    progress = Progress()
    outcome: list[T | Exception] = []

    def work() -> None:
        try:
            outcome.append(attempt(progress))
        except Exception as e:  # noqa: BLE001 - handed to the caller's thread below
            outcome.append(e)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=min(1.0, no_progress_s))
        if worker.is_alive() and time.monotonic() - progress.last > no_progress_s:
            progress.abandoned.set()
            return None
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]
