"""Run a helper program (tesseract...) so that it never outlives the tool call that started it.

The child gets its own process group; it is killed with everything it started when its own time
limit passes, when the call's deadline passes, or the moment the call is cancelled or times out
(through the call's stop flag, from the event loop's side, even while this thread is blocked in
`communicate`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from shared import callscope
from shared.errors import TimedOut


def run(args: Sequence[str], *, input: bytes | None = None, timeout: float, env: Mapping[str, str] | None = None,
        what: str = "a helper program") -> subprocess.CompletedProcess[bytes]:
    """`subprocess.run(args, input=..., capture_output=True)` bounded by `timeout` and the current call."""
    limit = callscope.remaining(timeout)
    process = subprocess.Popen(args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env) if env else None,
                               start_new_session=True)
    flag = callscope.current()
    forget = flag.on_stop(lambda: _kill(process)) if flag is not None else (lambda: None)
    try:
        stdout, stderr = process.communicate(input, timeout=limit)
    except subprocess.TimeoutExpired:
        _kill(process)
        process.communicate()
        raise TimedOut(f"{what} took more than {limit:.0f} s") from None
    except BaseException:
        _kill(process)
        process.communicate()
        raise
    finally:
        forget()
    callscope.check(what)  # killed because the call ended: say so rather than parse a killed child's output
    return subprocess.CompletedProcess(list(args), process.returncode, stdout, stderr)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the child's whole process group (it may have started others)."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
