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


class LakeError(TrajlakeError):
    """The lake cannot be read or written as asked."""
