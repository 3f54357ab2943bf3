"""What a stage is: a pure function from one input event to its output events.

Stage modules build a `Stage` and never touch the bus; `trajlake.runner` wires it to topics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trajlake.schemas import Event


@dataclass(frozen=True)
class Stage:
    """A named step of the pipeline.

    Attributes:
        name: consumer-group name and the `stage` recorded on every output.
        inputs: topics it consumes.
        outputs: topics its events may go to (each output's `topic()` must be one of them).
        process: the work; raising turns the input into a dead letter, the stage goes on.
        skip_if_done: before calling `process`, look in the lake for outputs this stage already
            made from the same input, and re-emit those instead. For expensive stages (rollouts).
        concurrent: run `runner.concurrency` records at once in threads; for stages that wait
            on the teacher. `process` must then be thread-safe.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    process: Callable[[Event], list[Event]]
    skip_if_done: bool = False
    concurrent: bool = False
