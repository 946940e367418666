"""One exception type per kind of user error. Every one is a `UserError`, which the CLI prints
as a one-line message (no traceback) and the server turns into an HTTP 4xx answer."""


class UserError(Exception):
    """Something the user can fix; the message says what was wrong and what to do."""


class AudioError(UserError, ValueError):
    """Audio that is missing, undecodable, empty or of an unsupported kind. Names the input."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class ModelLoadError(UserError):
    """A model that cannot be found or loaded."""


class DataError(UserError):
    """A dataset, manifest or text file that is missing or malformed."""


class BadContext(UserError):
    """A context (prompt, hotwords) the model cannot be given: not valid Unicode text."""

    code = "invalid_context"


class ContextTooLong(BadContext):
    """A context longer than the context limit (`--max-context-tokens`)."""

    code = "context_too_long"


class AlignmentError(UserError):
    """A transcript that cannot be aligned to its audio (too long for it, no speech, unsupported language)."""
