"""One way to turn any failure into a message an agent can act on.

Engines raise `ToolFailure` (or a subclass) with a sentence that names the cause and the fix.
Anything else that escapes is unwrapped (ExceptionGroups included), mapped to a plain cause when
its type is known, and otherwise reported as an internal error without its details; the full
traceback goes to the server's stderr log only. Every failure text the agent sees is made `public`:
API keys redacted, absolute host paths outside the allowed roots and temporary file names replaced.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
from collections.abc import Iterable, Iterator

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


# ---- host paths and temporary names ------------------------------------------------------------
# Libraries put the file they were given into their messages ("cannot identify image file
# '/tmp/toolsuite-fetch-x1y2'"): an absolute path outside the allowed roots, or the name of a temporary
# file, tells the agent about the host and nothing about its input. Every failure text passes through
# `public` (via `mark_failure`), so this is enforced in one place whatever produced the message.

_FILE_URI = re.compile(r"file://(?:localhost)?(/[^\s'\"`<>|]*)", re.IGNORECASE)
# An absolute path: a "/" not inside a word, a URL or another path, then path characters.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~%-])/[^\s'\"`<>|,;()\[\]{}]+")
_TEMPORARY_NAME = re.compile(r"\b(?:toolsuite-[a-z]+-[\w-]+|tmp[a-z0-9_]{8})\b")
_OPENED_INPUT = re.compile(r"/(?:proc/self|dev)/fd/\d+")
HOST_PATH = "[host path]"
TEMPORARY = "[temporary file]"

# Paths some servers show that are not host paths: tool-python's messages speak of the sandbox's side,
# whose home every sandbox sees as /home/user.
_SERVER_VIEWS: dict[str, tuple[str, ...]] = {"tool-python": ("/home/user",)}

_echoed: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("toolsuite_echoed", default=())


@contextlib.contextmanager
def echoing(arguments: Iterable[object]) -> Iterator[None]:
    """While a tool call runs: the text arguments its caller sent, which messages may quote back
    (naming the path the agent gave, even outside the roots, discloses nothing it does not know)."""
    token = _echoed.set(tuple(value for value in arguments if isinstance(value, str)))
    try:
        yield
    finally:
        _echoed.reset(token)


def _inside_roots(path: str) -> bool:
    from shared import settings

    normal = os.path.normpath(path)
    return any(normal == str(root) or normal.startswith(str(root).rstrip("/") + "/")
               for root in settings.allowed_roots())


def _shown_path(path: str, views: tuple[str, ...]) -> str:
    trailing = ""
    while path and path[-1] in ".:!?":  # sentence punctuation after a path is not part of it
        path, trailing = path[:-1], path[-1] + trailing
    if _OPENED_INPUT.fullmatch(path):
        return "the input" + trailing
    if any(path in argument for argument in _echoed.get()):
        return path + trailing
    if any(path == view or path.startswith(view + "/") for view in views):
        return path + trailing
    if _TEMPORARY_NAME.search(path):
        return TEMPORARY + trailing
    return (path if _inside_roots(path) else HOST_PATH) + trailing


def scrub_paths(message: str, server: str | None = None) -> str:
    """`message` with absolute paths outside the allowed roots and temporary file names replaced
    (`server`'s own view, such as tool-python's sandbox home, is no host path and stays)."""
    views = _SERVER_VIEWS.get(server or "", ())
    message = _FILE_URI.sub(lambda m: "file://" + _shown_path(m.group(1), views), message)
    message = _ABSOLUTE_PATH.sub(lambda m: _shown_path(m.group(0), views), message)
    echoed = _echoed.get()
    return _TEMPORARY_NAME.sub(lambda m: m.group(0) if any(m.group(0) in a for a in echoed) else TEMPORARY, message)


def public(message: str, server: str | None = None) -> str:
    """A failure text as the agent may see it: no API keys, no host paths, no temporary names."""
    return scrub_paths(redact(message), server)


# Some hosts (MiroThinker's tool manager) pass a failed result to the model as a success, reading only
# its text; the text must then say it failed, in the words agents trained on the reference servers
# know. tool-python (E2B) and tool-transcribe wrote "[ERROR]: ..."; the others "Error: ..." (their own
# messages or the SDK's "Error executing tool ...").
FAILURE_MARKER = "Error: "
_REFERENCE_MARKERS = {"tool-python": "[ERROR]: ", "tool-transcribe": "[ERROR]: "}


def failure_marker(server: str | None) -> str:
    return _REFERENCE_MARKERS.get(server or "", FAILURE_MARKER)


def mark_failure(message: str, server: str | None = None) -> str:
    """`message` led by the server's failure marker (once), made `public` (every failure text passes here)."""
    marker = failure_marker(server)
    message = public(message, server)
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
    if isinstance(exc, RecursionError):
        # A parser recursed once per nesting level of its input: the input's fault, not the server's.
        log.warning("%s: input nested too deeply (RecursionError)", action)
        return (f"{action} could not read the input: it is nested too deeply (thousands of levels of JSON, XML "
                "or similar)")
    if isinstance(exc, UnicodeDecodeError):
        return f"{action} could not decode text ({exc.encoding}): the input is not valid text"
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
        # Raw OS messages carry absolute paths; the input policy gives the user-facing ones.
        return f"{action} could not open a file: {type(exc).__name__}"
    log.error("unexpected error in %s", action, exc_info=exc)
    return f"internal error in {action} ({type(exc).__name__}); the server log has the details"
