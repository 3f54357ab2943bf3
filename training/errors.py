"""Named exceptions of the training recipe. Each message says what to fix."""

from __future__ import annotations

from trajlake.errors import TrajlakeError


class TrainingError(TrajlakeError):
    """The fine-tuning job cannot run as configured."""


class MixtureError(TrainingError):
    """A mixture directory is missing or does not hold the agreed columns."""


class ChatTemplateError(TrainingError):
    """The tokenizer's chat template cannot mark which tokens the assistant wrote."""


class CheckpointError(TrainingError):
    """A checkpoint cannot be found, or does not match the run resuming from it."""
