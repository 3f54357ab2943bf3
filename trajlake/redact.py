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
#: credential shapes, each after the characters a match of it starts with: the pattern begins
#: with a lookahead on those, so that the regex engine skips every other position (about 5x
#: faster on ordinary text than trying each shape at each character).
CREDENTIAL_SHAPES = (
    ("s", r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"),
    ("h", r"\bhf_[A-Za-z0-9]{20,}"),
    ("g", r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    ("g", r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    ("x", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
    ("A", r"\bAKIA[0-9A-Z]{16}\b"),
    ("bB", r"(?i:bearer)\s+[A-Za-z0-9._\-]{16,}"),
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
        literals = sorted(values, key=len, reverse=True)
        starts = {v[0] for v in literals} | {c for first, _ in CREDENTIAL_SHAPES for c in first}
        branches = [re.escape(v) for v in literals] + [shape for _, shape in CREDENTIAL_SHAPES]
        lookahead = "".join(re.escape(c) for c in sorted(starts))
        self._pattern = re.compile(f"(?=[{lookahead}])(?:{'|'.join(branches)})")

    def redact(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text)

    def redact_event(self, event: Event) -> Event:
        """The event with every string field (and list of strings) redacted.

        One search over all its strings, joined by NUL (which no secret value holds and no
        shape matches, so nothing matches across two strings), settles the usual case: none.
        """
        values = [getattr(event, name) for name in type(event).model_fields]
        strings = [v for v in values if isinstance(v, str)]
        strings += [s for v in values if isinstance(v, list) for s in v if isinstance(s, str)]
        if not self._pattern.search("\x00".join(strings)):
            return event
        update: dict[str, object] = {}
        for name, value in zip(type(event).model_fields, values, strict=True):
            if isinstance(value, str) and self._pattern.search(value):
                update[name] = self.redact(value)
            elif isinstance(value, list) and any(
                isinstance(v, str) and self._pattern.search(v) for v in value
            ):
                update[name] = [self.redact(v) if isinstance(v, str) else v for v in value]
        return event.model_copy(update=update) if update else event
