"""Token and cost accounting for teacher calls: a usage meter and a token budget.

Both are thread-safe and meant to be shared by every rollout in a process. The budget is checked
*before* a call with the most the call could spend, so work stops before the limit is crossed.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, fields
from typing import Any

from trajlake.errors import BudgetExceeded

CHARS_PER_TOKEN = 4  # a rough, model-independent estimate; servers report the real counts


def estimate_tokens(payload: Any) -> int:
    """Roughly how many tokens `payload` (text, or anything JSON-serializable) takes."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Usage:
    """What teacher calls cost.

    `calls` counts calls that returned a completion; `retries` counts attempts that failed and
    were tried again; `failures` counts calls that gave up with an error.
    """

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    failures: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


class UsageMeter:
    """Counts every teacher call, in total and per purpose ("agent", "self_eval", "pr_writer").

    Per endpoint (a teacher with several, see teacher.base_urls), `by_endpoint` counts the
    calls each one answered with their tokens and cost, and as `failures` the attempts that
    failed there (and were retried, there or elsewhere, or gave up).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_purpose: dict[str, Usage] = {}
        self._by_endpoint: dict[str, Usage] = {}

    def record_call(
        self,
        purpose: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float,
        endpoint: str = "",
    ) -> None:
        usage = Usage(1, prompt_tokens, completion_tokens, cost_usd)
        self._add(purpose, usage)
        if endpoint:
            self._add_endpoint(endpoint, usage)

    def record_endpoint_failure(self, endpoint: str) -> None:
        """One attempt failed on `endpoint` (a timeout, a dropped connection, a 5xx or 429)."""
        self._add_endpoint(endpoint, Usage(failures=1))

    def _add_endpoint(self, endpoint: str, usage: Usage) -> None:
        with self._lock:
            self._by_endpoint[endpoint] = self._by_endpoint.get(endpoint, Usage()) + usage

    def by_endpoint(self) -> dict[str, Usage]:
        with self._lock:
            return dict(self._by_endpoint)

    def record_retry(self, purpose: str) -> None:
        self._add(purpose, Usage(retries=1))

    def record_failure(self, purpose: str) -> None:
        self._add(purpose, Usage(failures=1))

    def _add(self, purpose: str, usage: Usage) -> None:
        with self._lock:
            self._by_purpose[purpose] = self._by_purpose.get(purpose, Usage()) + usage

    def by_purpose(self) -> dict[str, Usage]:
        with self._lock:
            return dict(self._by_purpose)

    def total(self) -> Usage:
        return sum(self.by_purpose().values(), Usage())

    @property
    def calls(self) -> int:
        return self.total().calls

    @property
    def prompt_tokens(self) -> int:
        return self.total().prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.total().completion_tokens

    @property
    def cost_usd(self) -> float:
        return self.total().cost_usd

    @property
    def retries(self) -> int:
        return self.total().retries

    def __repr__(self) -> str:
        return f"UsageMeter({self.total()})"


class Budget:
    """A token limit shared by all calls in a process; `limit_tokens=0` means no limit.

    A call first reserves the most it could spend (estimated prompt + max_tokens); the
    reservation counts against the limit until the call settles it with what it really spent.
    Concurrent calls therefore cannot overrun the limit together.
    """

    def __init__(self, limit_tokens: int = 0) -> None:
        if limit_tokens < 0:
            raise ValueError(f"limit_tokens must be >= 0 (0: no limit), got {limit_tokens}")
        self.limit_tokens = limit_tokens
        self._lock = threading.Lock()
        self._spent = 0
        self._reserved = 0

    @property
    def spent(self) -> int:
        with self._lock:
            return self._spent

    def remaining(self) -> int | None:
        """Tokens not yet spent or reserved; None when there is no limit."""
        if not self.limit_tokens:
            return None
        with self._lock:
            return max(0, self.limit_tokens - self._spent - self._reserved)

    def reserve(self, tokens: int) -> None:
        """Hold `tokens` for a call about to be sent; raises BudgetExceeded if they do not fit."""
        with self._lock:
            if self.limit_tokens and self._spent + self._reserved + tokens > self.limit_tokens:
                raise BudgetExceeded(
                    f"the teacher token budget of {self.limit_tokens} would be exceeded: "
                    f"{self._spent} spent, {self._reserved} held by calls in flight, this call "
                    f"may use up to {tokens} (prompt estimate + max_tokens); raise "
                    "teacher.budget_tokens (0: no limit) or lower teacher.max_tokens"
                )
            self._reserved += tokens

    def settle(self, reserved: int, used: int) -> None:
        """Release a reservation and count what the call really used (0 if it failed)."""
        with self._lock:
            self._reserved -= reserved
            self._spent += used

    def __repr__(self) -> str:
        return f"Budget(limit_tokens={self.limit_tokens}, spent={self.spent})"
