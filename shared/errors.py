"""One way to turn any failure into a message an agent can act on.

Engines raise `ToolFailure` (or a subclass) with a sentence that names the cause and the fix.
Anything else that escapes is unwrapped (ExceptionGroups included), mapped to a plain cause when
its type is known, and otherwise reported as an internal error without its details; the full
traceback goes to the server's stderr log only.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger("toolsuite.errors")


class ToolFailure(Exception):
    """A failure whose message is safe and useful to show to the agent as is."""


class InputError(ToolFailure):
    """The arguments are wrong: a bad path, a refused URL, an out-of-range value."""


class NotConfigured(ToolFailure):
    """A model, engine or optional dependency is missing; the message says how to add it."""


class RemoteError(ToolFailure):
    """A remote model or URL failed after the allowed retries."""


class TimedOut(ToolFailure):
    """The work did not finish within its limit."""


class Cancelled(ToolFailure):
    """The caller stopped waiting (the client cancelled the call): the work was abandoned, not timed out."""


def leaf_exception(exc: BaseException) -> BaseException:
    """The real exception inside (possibly nested) ExceptionGroups.

    Cancellations that come with a real error are skipped: the error is the cause.
    """
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not _is_cancellation(e)] or list(exc.exceptions)
        exc = inner[0]
    return exc


def _is_cancellation(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name in {"CancelledError", "Cancelled"} or isinstance(exc, KeyboardInterrupt)


_SECRET_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._\-]{8,})")


def redact(message: str) -> str:
    """Remove API keys (configured or key-shaped) from a message."""
    from shared import settings  # settings reports bad values with these error types, so it imports this module

    for variable in settings.ALL_VARIABLES:
        if variable.secret:
            value = settings.raw(variable.name)
            if value and len(value) >= 4:
                message = message.replace(value, "[redacted]")
    return _SECRET_PATTERN.sub("[redacted]", message)


# Some hosts (MiroThinker's tool manager) pass a failed result to the model as a success, reading only
# its text; the text must then say it failed, in the words agents trained on the reference servers
# know. tool-python (E2B) and tool-transcribe wrote "[ERROR]: ..."; the others "Error: ..." (their own
# messages or the SDK's "Error executing tool ...").
FAILURE_MARKER = "Error: "
_REFERENCE_MARKERS = {"tool-python": "[ERROR]: ", "tool-transcribe": "[ERROR]: "}


def failure_marker(server: str | None) -> str:
    return _REFERENCE_MARKERS.get(server or "", FAILURE_MARKER)


def mark_failure(message: str, server: str | None = None) -> str:
    """`message` led by the server's failure marker (once)."""
    marker = failure_marker(server)
    return message if message.startswith(marker) else marker + message


def describe(exc: BaseException, *, action: str = "the tool") -> str:
    """A one-paragraph message for `exc`, never a traceback."""
    exc = leaf_exception(exc)
    if isinstance(exc, ToolFailure):
        return redact(str(exc))
    if isinstance(exc, TimeoutError):
        return f"{action} timed out; try a smaller input or raise TOOLSUITE_TOOL_TIMEOUT"
    if isinstance(exc, MemoryError):
        return f"{action} ran out of memory; try a smaller input"
    if isinstance(exc, UnicodeDecodeError):
        return f"{action} could not decode text ({exc.encoding}): the input is not valid text"
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
        # Raw OS messages carry absolute paths; the input policy gives the user-facing ones.
        return f"{action} could not open a file: {type(exc).__name__}"
    log.error("unexpected error in %s", action, exc_info=exc)
    return f"internal error in {action} ({type(exc).__name__}); the server log has the details"
