"""A pool of OpenAI-compatible endpoints serving one model: which one the next attempt goes to.

Strategies: `least_loaded` picks the endpoint with the fewest calls in flight (ties go round
the pool), `round_robin` takes each in turn. An endpoint that fails `down_after` attempts in a
row (timeouts, connection errors, 5xx, 429) is marked down for `down_for_s` seconds; it gets
no calls then, unless every endpoint is down, in which case the one that comes back soonest
is tried. One success clears its failure count. Thread-safe: one pool per Teacher. What each
endpoint answered and how often it failed is counted by the teacher's UsageMeter, not here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

Strategy = Literal["least_loaded", "round_robin"]


@dataclass
class EndpointState:
    """What the pool knows about one endpoint."""

    url: str
    in_flight: int = 0
    failing: int = 0  # failed attempts in a row, reset by a success
    down_until: float = 0.0  # monotonic time; 0: up


class EndpointPool:
    """Chooses an endpoint per attempt and tracks in-flight calls and failures."""

    def __init__(
        self,
        urls: list[str],
        strategy: Strategy = "least_loaded",
        down_after: int = 3,
        down_for_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise ValueError("an endpoint pool needs at least one URL: set teacher.base_url")
        self.strategy = strategy
        self.down_after = down_after
        self.down_for_s = down_for_s
        self._clock = clock
        self._states = [EndpointState(url) for url in dict.fromkeys(urls)]
        self._next = 0  # rotation: where round_robin (and ties of least_loaded) start
        self._lock = threading.Lock()

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self._states]

    def acquire(self, avoid: Collection[str] = ()) -> str:
        """The endpoint for the next attempt, counted in flight until `release`.

        `avoid` holds endpoints that already failed this call: they are used only when every
        other endpoint is down too.
        """
        with self._lock:
            state = self._choose(avoid)
            state.in_flight += 1
            return state.url

    def release(self, url: str, ok: bool) -> None:
        """The attempt on `url` ended; `ok=False` counts a failure of the endpoint."""
        with self._lock:
            state = next(s for s in self._states if s.url == url)
            state.in_flight -= 1
            if ok:
                state.failing = 0
                state.down_until = 0.0
                return
            state.failing += 1
            if state.failing >= self.down_after:
                state.down_until = self._clock() + self.down_for_s

    def others_up(self, avoid: Collection[str]) -> bool:
        """Whether an endpoint outside `avoid` is up: a retry can go there without waiting."""
        now = self._clock()
        with self._lock:
            return any(s.down_until <= now and s.url not in avoid for s in self._states)

    def down(self) -> list[str]:
        """Endpoints marked down right now."""
        now = self._clock()
        with self._lock:
            return [s.url for s in self._states if s.down_until > now]

    def _choose(self, avoid: Collection[str]) -> EndpointState:
        now = self._clock()
        up = [s for s in self._rotation() if s.down_until <= now]
        candidates = [s for s in up if s.url not in avoid] or up
        if not candidates:  # all down: the one that comes back first
            return min(self._states, key=lambda s: s.down_until)
        if self.strategy == "least_loaded":
            chosen = min(candidates, key=lambda s: s.in_flight)  # first in rotation on ties
        else:
            chosen = candidates[0]
        self._next = (self._states.index(chosen) + 1) % len(self._states)
        return chosen

    def _rotation(self) -> list[EndpointState]:
        return self._states[self._next :] + self._states[: self._next]
