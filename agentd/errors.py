"""Named exceptions. Only these cross the loop; everything else inside it becomes data for the model."""


class AgentdError(Exception):
    """Base class: a message meant for the user, with what to do about it."""

    exit_code = 1


class ConfigError(AgentdError):
    """Bad configuration or usage; the message names the key or flag."""

    exit_code = 2


class ModelUnavailable(AgentdError):
    """A model could not be loaded or reached (missing file, unreachable endpoint, unknown provider)."""

    exit_code = 2


class RunCancelled(AgentdError):
    """Raised at a safe point when a run's cancel flag is set."""


class RunInterrupted(AgentdError):
    """Raised at a safe point when the daemon shuts down: the run stops where it is and stays resumable."""


class StructuredOutputError(AgentdError):
    """The model's output did not parse or validate after every repair and retry."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class ToolError(Exception):
    """Raise inside a tool for an expected failure: the message (no traceback) goes to the model."""
