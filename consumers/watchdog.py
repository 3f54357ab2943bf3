"""The rollout watchdog: an attempt runs in a thread and ticks as it makes progress; one that
makes none for `no_progress_s` is abandoned (it stops at its next tick) so that the caller can
start it again on a fresh sandbox.

An abandoned attempt's thread runs on until its blocking call returns, possibly after the
attempt that replaced it has finished; so an attempt claims its result (`Progress.finish`)
before it publishes anything (the patch, the trajectory file), and the watchdog abandons only
an attempt that has not claimed it: exactly one of the two wins."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


#: the name of attempt threads (an abandoned one may outlive its rollout for a while).
THREAD_NAME = "trajlake-rollout-attempt"


@dataclass
class Progress:
    """When the rollout last did something, and whether the watchdog gave up on it."""

    last: float = field(default_factory=time.monotonic)
    abandoned: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self) -> None:
        if self.abandoned.is_set():
            raise Abandoned()
        self.last = time.monotonic()

    def finish(self) -> bool:
        """Claim the attempt's result; False when the watchdog gave up on it first."""
        with self._lock:
            self.finished = not self.abandoned.is_set()
            return self.finished

    def abandon(self) -> bool:
        """Give up on the attempt; False when it has already claimed its result."""
        with self._lock:
            if not self.finished:
                self.abandoned.set()
            return not self.finished


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

    worker = threading.Thread(target=work, name=THREAD_NAME, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=min(1.0, no_progress_s))
        stalled = time.monotonic() - progress.last > no_progress_s
        if worker.is_alive() and stalled and progress.abandon():
            return None
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]
