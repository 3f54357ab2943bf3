"""Named exceptions. Each message says what to do about it."""


class TrajlakeError(Exception):
    """Base class of every error trajlake raises on purpose."""


class ConfigError(TrajlakeError):
    """The configuration file or an override is invalid."""


class SchemaError(TrajlakeError):
    """A record does not match the schema of its topic or table."""


class BusError(TrajlakeError):
    """The event bus cannot do what was asked."""


class TopicNotFound(BusError):
    """A topic was used before it was created."""

    def __init__(self, topic: str):
        super().__init__(
            f"topic {topic!r} does not exist: run `trajlake topics create` "
            f"(or `trajlake topics create {topic}`)"
        )
        self.topic = topic


class CommitFailed(BusError):
    """Offsets were not committed because their partitions now belong to another group member."""

    def __init__(self, partitions: list[tuple[str, int]]):
        names = ", ".join(f"{topic}[{partition}]" for topic, partition in partitions)
        super().__init__(
            f"offsets for {names} were not committed: a rebalance gave those partitions to "
            "another member of the group, which re-reads them from the last committed offset; "
            "poll again and carry on (records processed twice keep their event ids)"
        )
        self.partitions = partitions


class Outage(TrajlakeError):
    """Infrastructure failed, not the model: a server unreachable or refusing every call, a
    sandbox that does not start. Never recorded as data: the runner retries the record for
    `runner.outage_patience_s`, then dead-letters it for `trajlake dlq retry`."""


class OutageOutlasted(Outage):
    """An outage lasted longer than the runner's patience; the record becomes a dead letter
    whose error type is the outage's (`cause`), e.g. TeacherUnavailable."""

    def __init__(self, message: str, cause: Outage):
        super().__init__(message)
        self.cause = cause


class LakeError(TrajlakeError):
    """The lake cannot be read or written as asked."""


class PreflightError(TrajlakeError):
    """A command stopped before consuming anything: something its stages need does not work."""


class SandboxUnavailable(PreflightError):
    """The configured sandbox cannot run commands here (rollout stages would dead-letter all)."""


class TeacherUnreachable(PreflightError):
    """No endpoint of the configured teacher answers (teacher stages would dead-letter all)."""


class TeacherError(TrajlakeError):
    """The teacher endpoint could not answer a chat request."""


class TeacherUnavailable(TeacherError, Outage):
    """The endpoint did not answer the call after the client's retries (unreachable, timeouts,
    5xx, 429), refused the configuration (401/403/404), or answered something that is not a
    chat completion: the infrastructure's failure, never the model's."""


class BudgetExceeded(TeacherError):
    """A teacher call was refused before sending because it could overrun the token budget."""


class SandboxError(TrajlakeError):
    """A sandbox for rollout commands cannot be opened or used as asked."""


class SandboxDown(SandboxError, Outage):
    """A rollout's sandbox did not start (its checkout or its launcher failed)."""


class PatchDoesNotApply(SandboxError):
    """A patch does not apply to a fresh checkout of its commit (`git apply` says why)."""


class RecordRejected(BusError):
    """One record cannot go on the bus (too big, refused by the broker); the bus itself is fine.

    The runner turns the input that produced it into a dead letter and carries on.
    """


class RecordsRejected(BusError):
    """A flush delivered every record but these, which the broker refused for their own sake.

    Attributes:
        rejected: position (in send order since the previous flush) -> why it was refused.
    """

    def __init__(self, rejected: dict[int, str]):
        first = next(iter(rejected.values()), "")
        super().__init__(f"the broker refused {len(rejected)} record(s), e.g.: {first}")
        self.rejected = rejected


class EnvironmentBuildFailed(SandboxError):
    """A repository's environment did not build because of its spec (an install command failed
    for a reason other than the network): the repository's records become dead letters carrying
    the log's tail; fix the spec, then `trajlake dlq retry`."""


class EnvironmentUnavailable(SandboxError, Outage):
    """A repository's environment did not build because a package registry could not be
    reached: an outage, retried like one."""
