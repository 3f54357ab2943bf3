"""Keep secrets out of the bus and the lake.

Two nets: the values of this process's secret-looking environment variables (names containing
KEY, TOKEN, SECRET, PASSWORD or CREDENTIAL), and the shapes of common credentials (OpenAI,
Anthropic, Hugging Face, GitHub, Slack, AWS keys, bearer tokens). The runner passes every output
event through `redact_event` before it is written anywhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from trajlake.schemas import Event

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MIN_SECRET_CHARS = 8  # shorter values ("1", "true") would redact ordinary text
CREDENTIAL_SHAPES = (
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}",
    r"\bhf_[A-Za-z0-9]{20,}",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"(?i:bearer)\s+[A-Za-z0-9._\-]{16,}",
)
REDACTED = "[REDACTED]"


class Redactor:
    """Replaces known secret values and credential-shaped strings with [REDACTED]."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        values = {
            value
            for name, value in env.items()
            if SECRET_NAME.search(name) and len(value) >= MIN_SECRET_CHARS
        }
        literals = [re.escape(v) for v in sorted(values, key=len, reverse=True)]
        self._pattern = re.compile("|".join(literals + list(CREDENTIAL_SHAPES)))

    def redact(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text)

    def redact_event(self, event: Event) -> Event:
        """The event with every string field (and list of strings) redacted."""
        update: dict[str, object] = {}
        for name in type(event).model_fields:
            value = getattr(event, name)
            if isinstance(value, str) and self._pattern.search(value):
                update[name] = self.redact(value)
            elif isinstance(value, list) and any(
                isinstance(v, str) and self._pattern.search(v) for v in value
            ):
                update[name] = [self.redact(v) if isinstance(v, str) else v for v in value]
        return event.model_copy(update=update) if update else event
